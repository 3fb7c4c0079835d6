"""First-call times of the backends that compile at run time (numba): what a user waits
for before the first result, in a fresh process, with an empty on-disk cache (the JIT
compiles) and then with the cache that run left (it only loads).

Each measurement is its own Python process, so nothing compiled or imported by the
benchmark itself can hide the cost.
"""
import json
import subprocess
import sys
import tempfile
import textwrap

from .pool import child_env

JIT_BACKENDS = ("numba",)

_SCRIPT = """
import json, sys, time
t0 = time.perf_counter()
import numpy as np
import fastlstm
from fastlstm.benchmark.configs import CONFIGS
backend, name, threads = sys.argv[1], sys.argv[2], int(sys.argv[3])
fastlstm.set_num_threads(threads)
cfg = CONFIGS[name]
m = fastlstm.LSTM(cfg.I, cfg.H, num_layers=cfg.layers, backend=backend)
x = np.ones((1 if cfg.stream else cfg.T, cfg.B, cfg.I), np.float32)
lengths = None if cfg.stream else cfg.lengths()
t1 = time.perf_counter()
y, _ = m(x, lengths=lengths)
t2 = time.perf_counter()
m.backward(np.ones_like(y))
t3 = time.perf_counter()
print(json.dumps({"import_s": t1 - t0, "forward_s": t2 - t1, "backward_s": t3 - t2}))
"""


def _one_process(backend, config, threads, cache_dir):
    env = {**child_env(), "FASTLSTM_NUMBA_CACHE_DIR": cache_dir}
    run = subprocess.run([sys.executable, "-c", _SCRIPT, backend, config, str(threads)],
                         capture_output=True, text=True, env=env, timeout=900)
    if run.returncode != 0:
        raise RuntimeError(f"first-call run of {backend} on {config} failed:\n"
                           f"{run.stderr[-2000:]}")
    times = json.loads(run.stdout.strip().splitlines()[-1])
    times["total_s"] = times["import_s"] + times["forward_s"] + times["backward_s"]
    return times


def first_calls(backend, config, threads):
    """{"cold": times, "warm": times} for one forward+backward of `config` in fresh
    processes: cold with an empty cache folder, warm with the one cold filled."""
    with tempfile.TemporaryDirectory(prefix="fastlstm-first-call-") as cache_dir:
        cold = _one_process(backend, config, threads, cache_dir)
        warm = _one_process(backend, config, threads, cache_dir)
    return {"backend": backend, "config": config, "threads": threads, "cold": cold,
            "warm": warm}


def pick_configs(config_names):
    """The configs worth a first-call figure: one per kernel build a run uses (a small
    one, run serially, and a batch one, run in parallel), at most two."""
    wanted = [c for c in ("edge", "mid") if c in config_names]
    return wanted or list(config_names[:1])


def format_first_calls(rows):
    lines = ["First call in a fresh process (forward + backward; compile = empty cache, "
             "cached = warm cache; s):"]
    for r in rows:
        c, w = r["cold"], r["warm"]
        lines.append(f"{r['backend']} {r['config']}: compile {c['total_s']:.1f} "
                     f"(import {c['import_s']:.1f} + fwd {c['forward_s']:.1f} + bwd "
                     f"{c['backward_s']:.1f}), cached {w['total_s']:.2f} (import "
                     f"{w['import_s']:.2f} + fwd {w['forward_s']:.2f} + bwd "
                     f"{w['backward_s']:.2f})")
    # wrapped to 100 columns like the rest of the report
    return "\n".join([lines[0]] + [textwrap.fill(line, width=100, initial_indent="  ",
                                                  subsequent_indent="    ")
                                    for line in lines[1:]])
