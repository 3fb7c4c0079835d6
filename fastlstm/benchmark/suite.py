"""The benchmark suite: check every implementation against the reference, then time them
side by side (interleaved), and work out GFLOP/s, % of GEMM peak and ratios."""
import time

import numpy as np

from .configs import CONFIGS
from .first_call import JIT_BACKENDS, first_calls, pick_configs
from .peers import make_peer, peer_status
from .runners import FastlstmRunner, make_workload
from .timing import BLAS_SETTLE_S, gemm_peak_gflops, interleaved_medians

REFERENCE = "fastlstm[numpy]"


class CheckFailed(AssertionError):
    """An implementation's result disagrees with the reference: nothing is timed."""


def check_close(label, what, ours, ref, cfg_name, tol=1e-4):
    """Raise CheckFailed unless ours matches ref (float32: |a - b| <= tol * (1 + |b|))."""
    ours = np.asarray(ours, np.float64).reshape(np.shape(ref))
    err = np.abs(ours - ref) / (1.0 + np.abs(ref))
    worst = float(np.nanmax(err)) if err.size else 0.0
    if not worst <= tol or np.isnan(ours).any() != np.isnan(ref).any():
        raise CheckFailed(f"{label} disagrees with the NumPy reference on {cfg_name} ({what}): "
                          f"max relative error {worst:.3g} > {tol}")


def run_suite(config_names, backends, peers, repeat, threads, progress=print, gemm_n=2048,
              first_call=True):
    """Every figure of one `fastlstm bench` run, as a JSON-friendly dict.

    backends: fastlstm backend names (the NumPy reference is added when missing);
    peers: names from peers.PEERS; ones that cannot run here are listed, with the
    reason, under "skipped_peers";
    first_call: also time the first call of JIT backends in fresh processes.
    """
    backends = ["numpy"] + [b for b in backends if b != "numpy"]  # the reference comes first
    skipped = {}
    runnable_peers = []
    for p in peers:
        reason = peer_status(p)
        if reason:
            skipped[p] = reason
            progress(f"{p} skipped: {reason}")
        else:
            runnable_peers.append(p)
    progress(f"measuring the float32 GEMM peak ({gemm_n}^3) ...")
    peak = gemm_peak_gflops(gemm_n)
    rows = []
    for i, name in enumerate(config_names, 1):
        cfg = CONFIGS[name]
        wl = make_workload(cfg)
        runners = [FastlstmRunner(wl, b) for b in backends]
        runners += [make_peer(p, wl, threads) for p in runnable_peers]
        progress(f"[{i}/{len(config_names)}] {cfg.name} ({cfg.shape_text()}): checking "
                 f"{len(runners) - 1} implementations against the reference ...")
        ref = runners[0]
        y_ref, dx_ref = ref.output(), ref.input_grad()
        for r in runners[1:]:
            check_close(r.label, "forward output", r.output(), y_ref, cfg.name)
            if r.train is not None:
                check_close(r.label, "input gradient", r.input_grad(), dx_ref, cfg.name)
        progress(f"[{i}/{len(config_names)}] {cfg.name}: timing forward "
                 f"({repeat} interleaved runs each) ...")
        fwd, train = _time_all(runners, repeat)
        for r in runners:
            rows.append(_row(cfg, r, fwd[r.label], train.get(r.label), peak))
    _add_ratios(rows, runnable_peers)
    firsts = []
    for b in (b for b in backends if first_call and b in JIT_BACKENDS):
        for name in pick_configs(config_names):
            progress(f"first call of {b} on {name} in fresh processes (compiling, then "
                     "cached) ...")
            firsts.append(first_calls(b, name, threads))
    return {"gemm_peak_gflops": peak, "repeat": repeat, "threads": threads, "rows": rows,
            "peers_requested": list(peers), "peers": runnable_peers, "skipped_peers": skipped,
            "backends": backends,
            "first_calls": firsts}


def _time_all(runners, repeat):
    """Forward and train medians of every runner: the NumPy reference in a block of its
    own (its BLAS workers spin long after each call and would slow whoever came next),
    then everything else interleaved."""
    ref, others = runners[0], runners[1:]
    fwd = interleaved_medians({ref.label: ref.forward}, repeat)
    train = interleaved_medians({ref.label: ref.train}, repeat)
    time.sleep(BLAS_SETTLE_S)
    fwd.update(interleaved_medians({r.label: r.forward for r in others}, repeat))
    train.update(interleaved_medians({r.label: r.train for r in others if r.train}, repeat))
    return fwd, train


def _row(cfg, runner, fwd_s, train_s, peak):
    kind = "fastlstm" if runner.label.startswith("fastlstm") else "peer"
    row = {"config": cfg.name, "group": cfg.group or cfg.name, "impl": runner.label,
           "kind": kind, "B": cfg.B, "T": cfg.T, "I": cfg.I, "H": cfg.H, "layers": cfg.layers}
    for mode, seconds, flops in (("forward", fwd_s, cfg.flops()),
                                 ("train", train_s, cfg.flops(backward=True))):
        if seconds is None:
            row.update({f"{mode}_ms": None, f"{mode}_gflops": None, f"{mode}_pct_peak": None})
            continue
        gflops = flops / seconds / 1e9
        row.update({f"{mode}_ms": seconds * 1e3, f"{mode}_gflops": gflops,
                    f"{mode}_pct_peak": 100.0 * gflops / peak})
        if cfg.stream:
            row[f"{mode}_us_per_call"] = seconds * 1e6 / cfg.T
    return row


def _add_ratios(rows, peers):
    """For each fastlstm row: reference time / its time, and peer time / its time (> 1: we win)."""
    by_key = {(r["config"], r["impl"]): r for r in rows}
    for r in rows:
        if r["kind"] != "fastlstm":
            continue
        ratios = {}
        others = [("numpy", REFERENCE)] + [(p, p) for p in peers]
        for short, label in others:
            other = by_key.get((r["config"], label))
            for mode in ("forward", "train"):
                if other and other[f"{mode}_ms"] and r[f"{mode}_ms"]:
                    ratios[f"{short}/{mode}"] = other[f"{mode}_ms"] / r[f"{mode}_ms"]
        r["ratios"] = ratios
