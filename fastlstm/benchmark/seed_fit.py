"""The `seed-fit` benchmark: the classic Keras program, whole, in fastlstm.keras and side by
side in PyTorch and in real Keras (when installed).

    model = Sequential([LSTM(50, return_sequences=True, input_shape=(10, 1)), LSTM(50),
                        Dense(1)])
    model.compile(optimizer="adam", loss="mse")
    model.fit(X, y, epochs=100, batch_size=32)          # 100 samples of 10 steps

PyTorch runs the same model and loop written out (nn.LSTM x 2 + nn.Linear, Adam with
Keras's defaults, MSE, a fresh shuffle every epoch). Every run is a fresh process (imports,
data, model building and one warm-up prediction on one sample, which loads what each
framework loads lazily, are excluded from the time: the figure is `fit`), one implementation
after another in rounds (A B C, A B C, ...) so the machine's slow moments are shared and no
thread pool spins into another's time. Each run reports its first and last epoch's loss, and
the benchmark refuses a run that did not learn (the last loss must be under half the first).
"""
import json
import subprocess
import sys

import numpy as np

SAMPLES, STEPS, UNITS, EPOCHS, BATCH = 100, 10, 50, 100, 32
IMPLS = ("fastlstm", "torch", "keras")

# The data: windows of a noisy sine, the same in every process.
_DATA = f"""
import numpy as np
rng = np.random.default_rng(0)
t = np.arange({SAMPLES} + {STEPS} + 1, dtype=np.float64)
s = (np.sin(0.3 * t) + 0.1 * rng.standard_normal(t.shape)).astype(np.float32)
X = np.stack([s[i:i + {STEPS}] for i in range({SAMPLES})])[..., None]
y = s[{STEPS}:{STEPS} + {SAMPLES}, None].copy()
"""

_FASTLSTM = _DATA + f"""
import sys, time, json
import fastlstm
from fastlstm.keras import Sequential, LSTM, Dense
from fastlstm.keras.utils import set_random_seed
fastlstm.set_num_threads(int(sys.argv[1]))
set_random_seed(0)
model = Sequential()
model.add(LSTM({UNITS}, input_shape=({STEPS}, 1), return_sequences=True))
model.add(LSTM({UNITS}))
model.add(Dense(1))
model.compile(optimizer="adam", loss="mse")
model.predict(X[:1], verbose=0)  # warm-up: loads what the first call loads lazily
t0 = time.perf_counter()
h = model.fit(X, y, epochs={EPOCHS}, batch_size={BATCH}, verbose=0)
fit_s = time.perf_counter() - t0
print(json.dumps({{"fit_s": fit_s, "first_loss": h.history["loss"][0],
                  "last_loss": h.history["loss"][-1], "version": fastlstm.__version__}}))
"""

_TORCH = _DATA + f"""
import sys, time, json
import torch
torch.set_num_threads(int(sys.argv[1]))
torch.manual_seed(0)

class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.l1 = torch.nn.LSTM(1, {UNITS}, batch_first=True)
        self.l2 = torch.nn.LSTM({UNITS}, {UNITS}, batch_first=True)
        self.head = torch.nn.Linear({UNITS}, 1)

    def forward(self, x):
        x, _ = self.l1(x)
        _, (h, _) = self.l2(x)
        return self.head(h[-1])

net = Net()
opt = torch.optim.Adam(net.parameters(), lr=1e-3, eps=1e-7)  # Keras's defaults
loss_fn = torch.nn.MSELoss()
Xt, yt = torch.from_numpy(X), torch.from_numpy(y)
with torch.no_grad():
    net(Xt[:1])  # warm-up, as in the other implementations
losses = []
t0 = time.perf_counter()
for epoch in range({EPOCHS}):
    order = torch.randperm({SAMPLES})
    total = 0.0
    for i in range(0, {SAMPLES}, {BATCH}):
        idx = order[i:i + {BATCH}]
        opt.zero_grad()
        loss = loss_fn(net(Xt[idx]), yt[idx])
        loss.backward()
        opt.step()
        total += loss.item() * len(idx)
    losses.append(total / {SAMPLES})
fit_s = time.perf_counter() - t0
print(json.dumps({{"fit_s": fit_s, "first_loss": losses[0], "last_loss": losses[-1],
                  "version": torch.__version__}}))
"""

_KERAS = _DATA + f"""
import sys, time, json
import keras
keras.utils.set_random_seed(0)
model = keras.Sequential([keras.Input(({STEPS}, 1)),
                          keras.layers.LSTM({UNITS}, return_sequences=True),
                          keras.layers.LSTM({UNITS}), keras.layers.Dense(1)])
model.compile(optimizer="adam", loss="mse")
model.predict(X[:1], verbose=0)  # warm-up, as in the other implementations
t0 = time.perf_counter()
h = model.fit(X, y, epochs={EPOCHS}, batch_size={BATCH}, verbose=0)
fit_s = time.perf_counter() - t0
print(json.dumps({{"fit_s": fit_s, "first_loss": h.history["loss"][0],
                  "last_loss": h.history["loss"][-1],
                  "version": keras.__version__ + " on " + keras.backend.backend()}}))
"""

_SCRIPTS = {"fastlstm": _FASTLSTM, "torch": _TORCH, "keras": _KERAS}


def keras_backend():
    """The backend real Keras would run on here: TensorFlow when installed, else torch,
    else None (Keras cannot run)."""
    import importlib.util
    for name in ("tensorflow", "torch", "jax"):
        if importlib.util.find_spec(name) is not None:
            return name
    return None


def impl_status(impl):
    """Why `impl` cannot run here, or None."""
    import importlib.util
    if impl == "fastlstm":
        return None
    if importlib.util.find_spec(impl) is None:
        return f"{impl} is not installed (pip install 'fastlstm[compare]')"
    if impl == "keras" and keras_backend() is None:
        return "keras has no backend here (tensorflow, torch or jax)"
    return None


def _one_run(impl, threads, timeout=600):
    from .pool import child_env  # the same fastlstm as this process
    env = child_env()
    if impl == "keras":
        env.setdefault("KERAS_BACKEND", keras_backend())
        env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    run = subprocess.run([sys.executable, "-c", _SCRIPTS[impl], str(threads)],
                         capture_output=True, text=True, env=env, timeout=timeout)
    if run.returncode != 0:
        raise RuntimeError(f"seed-fit run of {impl} failed:\n{run.stderr[-2000:]}")
    out = json.loads(run.stdout.strip().splitlines()[-1])
    if not out["last_loss"] < 0.5 * out["first_loss"]:
        raise RuntimeError(f"seed-fit run of {impl} did not learn: loss "
                           f"{out['first_loss']:.4g} in the first epoch, "
                           f"{out['last_loss']:.4g} in the last")
    return out


def run_seed_fit(rounds, threads, impls=IMPLS, progress=print):
    """{"impls": {name: {"fit_s": median, "runs": [...], "version", "last_loss"}},
    "skipped": {name: reason}, "ratios": {"<peer>/fastlstm": peer time / ours}}."""
    skipped = {i: impl_status(i) for i in impls if impl_status(i)}
    runnable = [i for i in impls if i not in skipped]
    runs = {i: [] for i in runnable}
    for r in range(rounds):
        for impl in runnable:
            progress(f"seed-fit round {r + 1}/{rounds}: {impl} ...")
            runs[impl].append(_one_run(impl, threads))
    out = {}
    for impl, rs in runs.items():
        out[impl] = {"fit_s": float(np.median([x["fit_s"] for x in rs])),
                     "runs_s": [x["fit_s"] for x in rs], "version": rs[0]["version"],
                     "last_loss": float(np.median([x["last_loss"] for x in rs]))}
    ratios = {f"{p}/fastlstm": out[p]["fit_s"] / out["fastlstm"]["fit_s"]
              for p in out if p != "fastlstm" and "fastlstm" in out}
    return {"program": {"samples": SAMPLES, "steps": STEPS, "units": UNITS,
                        "epochs": EPOCHS, "batch": BATCH},
            "rounds": rounds, "threads": threads, "impls": out, "skipped": skipped,
            "ratios": ratios}


def format_seed_fit(result):
    p = result["program"]
    lines = [f"seed-fit: LSTM({p['units']}, return_sequences) -> LSTM({p['units']}) -> "
             f"Dense(1), adam, mse, {p['samples']} samples x {p['steps']} steps, "
             f"{p['epochs']} epochs, batch {p['batch']}; fit time, median of "
             f"{result['rounds']} fresh processes per implementation (s):"]
    for impl, r in result["impls"].items():
        ratio = result["ratios"].get(f"{impl}/fastlstm")
        vs = f"   fastlstm is {ratio:.1f}x faster" if ratio else ""
        lines.append(f"  {impl:<9} {r['fit_s']:7.2f}   (final loss {r['last_loss']:.4f}; "
                     f"{r['version']}){vs}")
    for impl, why in result["skipped"].items():
        lines.append(f"  {impl:<9} skipped: {why}")
    return "\n".join(lines)
