"""`fastlstm bench --scaling`: how each backend's time grows with threads and with B, T, H."""
from dataclasses import replace

from ..threads import get_num_threads, set_num_threads
from .configs import Config
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


def run_scaling(backends, repeat, max_threads, progress=print):
    """Rows: one per (backend, what varied, value) with times and time relative to the base."""
    rows = []
    saved = get_num_threads()
    try:
        base_times = None
        for n in range(1, max_threads + 1):
            progress(f"scaling: {BASE.shape_text()} on {n} thread(s) ...")
            set_num_threads(n)
            times = _time(BASE, backends, repeat)
            base_times = base_times or times
            rows += _rows(backends, "threads", n, times, base_times, BASE)
    finally:
        set_num_threads(saved)
    base_times = _time(BASE, backends, repeat)
    for dim, values in GRID.items():
        for v in values:
            cfg = replace(BASE, **{dim: v})
            progress(f"scaling: {cfg.shape_text()} ...")
            rows += _rows(backends, dim, v, _time(cfg, backends, repeat), base_times, cfg)
    return rows


def _rows(backends, varied, value, times, base, cfg):
    return [{"backend": b, "varied": varied, "value": value, "shape": cfg.shape_text(),
             "forward_ms": times[b][0] * 1e3, "train_ms": times[b][1] * 1e3,
             "forward_rel": times[b][0] / base[b][0], "train_rel": times[b][1] / base[b][1],
             "work_rel": cfg.flops() / BASE.flops()} for b in backends]


def format_scaling(rows):
    head = ["backend", "varied", "value", "shape", "fwd ms", "fwd x base", "fwd+bwd ms",
            "fwd+bwd x base", "work x base"]
    body = [[r["backend"], r["varied"], r["value"], r["shape"], f"{r['forward_ms']:.3f}",
             f"{r['forward_rel']:.2f}", f"{r['train_ms']:.3f}", f"{r['train_rel']:.2f}",
             f"{r['work_rel']:.2f}"] for r in rows]
    note = (f"base: {BASE.shape_text()}; for threads the base is 1 thread (x base < 1 = faster),"
            " for B, T, H the base is the default thread count; 'work x base' is the FLOP ratio")
    return _table(head, body, right_from=4) + "\n" + note
