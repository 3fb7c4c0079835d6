"""`fastlstm bench --scaling`: how each backend's time grows with threads and with B, T, H."""
from dataclasses import replace

import numpy as np

from ..threads import get_num_threads, set_num_threads
from .configs import CONFIGS, Config
from .report import _table
from .runners import FastlstmRunner, make_workload
from .timing import interleaved_medians

BASE = Config("scaling", B=16, T=50, I=64, H=128)
GRID = {"B": [1, 4, 16, 64], "T": [25, 50, 100, 200], "H": [64, 128, 256, 512]}


def _time(cfg, backends, repeat):
    """{backend: (forward s, train s)} for one config, backends interleaved."""
    wl = make_workload(cfg)
    runners = {b: FastlstmRunner(wl, b) for b in backends}
    fwd = interleaved_medians({b: r.forward for b, r in runners.items()}, repeat)
    train = interleaved_medians({b: r.train for b, r in runners.items()}, repeat)
    return {b: (fwd[b], train[b]) for b in backends}


def _time_threads(cfg, backends, repeat, max_threads):
    """{(backend, threads): (forward s, train s)}, thread counts interleaved round by round
    (set, time every backend, next count), so a slow moment of the machine is shared."""
    wl = make_workload(cfg)
    runners = {b: FastlstmRunner(wl, b) for b in backends}
    times = {}
    for _ in range(repeat):
        for n in range(1, max_threads + 1):
            set_num_threads(n)
            once = _time_once(runners)
            for b, t in once.items():
                times.setdefault((b, n), []).append(t)
    return {k: tuple(float(np.median([t[i] for t in v])) for i in (0, 1))
            for k, v in times.items()}


def _time_once(runners):
    fwd = interleaved_medians({b: r.forward for b, r in runners.items()}, 1)
    train = interleaved_medians({b: r.train for b, r in runners.items()}, 1)
    return {b: (fwd[b], train[b]) for b in runners}


def run_scaling(backends, repeat, max_threads, configs=("mid", "large"), progress=print):
    """Rows: one per (backend, what varied, value) with times and time relative to a base:
    threads 1..max_threads on each of `configs` (base: 1 thread), then B, T and H around
    BASE one at a time (base: BASE, all threads)."""
    rows = []
    saved = get_num_threads()
    try:
        for name in configs:
            cfg = CONFIGS[name]
            progress(f"scaling: {name} ({cfg.shape_text()}) on 1..{max_threads} threads ...")
            times = _time_threads(cfg, backends, repeat, max_threads)
            for n in range(1, max_threads + 1):
                rows += _rows(backends, f"threads ({name})", n,
                              {b: times[(b, n)] for b in backends},
                              {b: times[(b, 1)] for b in backends}, cfg, cfg)
    finally:
        set_num_threads(saved)
    base_times = _time(BASE, backends, repeat)
    for dim, values in GRID.items():
        for v in values:
            cfg = replace(BASE, **{dim: v})
            progress(f"scaling: {cfg.shape_text()} ...")
            rows += _rows(backends, dim, v, _time(cfg, backends, repeat), base_times, cfg, BASE)
    return rows


def _rows(backends, varied, value, times, base, cfg, base_cfg):
    return [{"backend": b, "varied": varied, "value": value, "shape": cfg.shape_text(),
             "forward_ms": times[b][0] * 1e3, "train_ms": times[b][1] * 1e3,
             "forward_rel": times[b][0] / base[b][0], "train_rel": times[b][1] / base[b][1],
             "work_rel": cfg.flops() / base_cfg.flops()} for b in backends]


def format_scaling(rows):
    head = ["backend", "varied", "value", "shape", "fwd ms", "fwd x base", "fwd+bwd ms",
            "fwd+bwd x base", "work x base"]
    body = [[r["backend"], r["varied"], r["value"], r["shape"], f"{r['forward_ms']:.3f}",
             f"{r['forward_rel']:.2f}", f"{r['train_ms']:.3f}", f"{r['train_rel']:.2f}",
             f"{r['work_rel']:.2f}"] for r in rows]
    note = ("x base: time / the base's time. For threads the base is 1 thread on the same "
            f"config (0.50 = twice as fast); for B, T, H it is {BASE.shape_text()} on every "
            "thread. 'work x base' is the FLOP ratio.")
    return _table(head, body, right_from=4) + "\n" + note
