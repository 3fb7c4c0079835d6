"""`fastlstm bench`: forward and forward+backward of the standard configs on every backend.

Warm-up and allocation stay outside the timed calls; each figure is the median of
`repeat` runs; a fast backend's output is checked against the NumPy reference
before it is timed. Speedups are reference time / backend time, so > 1 is faster.
"""
import sys
import time
from dataclasses import dataclass

import numpy as np

from .api import LSTM


@dataclass(frozen=True)
class Config:
    name: str
    B: int
    T: int
    I: int  # noqa: E741 (the shape letter used throughout)
    H: int
    layers: int = 1

    def flops(self, backward=False):
        """Multiply-adds x 2 of the GEMMs; backward costs about twice the forward."""
        fwd = 2.0 * self.T * self.B * 4 * self.H * (self.I + self.H) * self.layers
        return fwd * (3.0 if backward else 1.0)


CONFIGS = {c.name: c for c in [
    Config("edge", B=1, T=100, I=32, H=128),
    Config("single", B=1, T=100, I=256, H=256),
    Config("mid", B=16, T=100, I=64, H=256),
    Config("large", B=64, T=50, I=512, H=512),
]}


def median_time(fn, repeat, warmup=1):
    """Median wall time of fn() in seconds, after `warmup` untimed calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def _problem(cfg, backend, dtype, seed=0):
    model = LSTM(cfg.I, cfg.H, num_layers=cfg.layers, dtype=dtype, backend=backend, seed=seed)
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((cfg.T, cfg.B, cfg.I)).astype(dtype)
    dy = rng.standard_normal((cfg.T, cfg.B, cfg.H)).astype(dtype)
    return model, x, dy


def check_against_reference(cfg, backend, dtype="float32"):
    """Raise AssertionError when `backend` disagrees with the reference on this config."""
    model, x, _ = _problem(cfg, backend, dtype)
    ref, _, _ = _problem(cfg, "numpy", dtype)
    y = model.eval()(x)[0]
    y_ref = ref.eval()(x)[0]
    tol = 1e-4 if dtype == "float32" else 1e-10
    err = float(np.max(np.abs(y - y_ref)))
    if not err <= tol:
        raise AssertionError(f"{backend} disagrees with the reference on {cfg.name}: "
                             f"max |y - y_ref| = {err:.3g} > {tol}")


def bench_one(cfg, backend, repeat, dtype="float32"):
    """{'forward_ms', 'train_ms'} medians for one config on one backend."""
    model, x, dy = _problem(cfg, backend, dtype)
    model.eval()
    fwd = median_time(lambda: model(x), repeat)
    model.train()

    def step():
        model(x)
        model.backward(dy)
    train = median_time(step, repeat)
    return {"forward_ms": fwd * 1e3, "train_ms": train * 1e3}


def run(config_names, backend_names, repeat, progress=None):
    """Rows of results, one per (config, backend); progress(msg) is told about each step."""
    progress = progress or (lambda msg: None)
    rows = []
    total = len(config_names) * len(backend_names)
    for cfg_name in config_names:
        cfg = CONFIGS[cfg_name]
        for backend in backend_names:
            progress(f"[{len(rows) + 1}/{total}] {cfg.name} on {backend} "
                     f"(B={cfg.B} T={cfg.T} I={cfg.I} H={cfg.H}) ...")
            if backend != "numpy":
                check_against_reference(cfg, backend)
            r = bench_one(cfg, backend, repeat)
            r.update(config=cfg.name, backend=backend,
                     forward_gflops=cfg.flops() / r["forward_ms"] / 1e6,
                     train_gflops=cfg.flops(backward=True) / r["train_ms"] / 1e6)
            rows.append(r)
    ref = {r["config"]: r for r in rows if r["backend"] == "numpy"}
    for r in rows:
        base = ref.get(r["config"])
        r["forward_speedup"] = base["forward_ms"] / r["forward_ms"] if base else None
        r["train_speedup"] = base["train_ms"] / r["train_ms"] if base else None
    return rows


def format_table(rows):
    """Aligned text table of run()'s rows."""
    head = ["config", "backend", "fwd ms", "fwd GFLOP/s", "fwd speedup",
            "fwd+bwd ms", "fwd+bwd GFLOP/s", "fwd+bwd speedup"]

    def speed(v):
        return "-" if v is None else f"{v:.2f}x"
    body = [[r["config"], r["backend"], f"{r['forward_ms']:.3f}", f"{r['forward_gflops']:.2f}",
             speed(r["forward_speedup"]), f"{r['train_ms']:.3f}", f"{r['train_gflops']:.2f}",
             speed(r["train_speedup"])] for r in rows]
    widths = [max(len(str(row[i])) for row in [head] + body) for i in range(len(head))]
    lines = ["  ".join(h.rjust(w) if i > 1 else h.ljust(w) for i, (h, w) in
                       enumerate(zip(row, widths))) for row in [head] + body]
    lines.insert(1, "  ".join("-" * w for w in widths))
    note = "speedup = NumPy reference time / backend time (> 1 is faster)"
    return "\n".join(lines + ["", note])


def stderr_progress(msg):
    print(msg, file=sys.stderr, flush=True)

