"""The benchmark suite: every implementation in a worker process of its own (worker.py),
checked against the NumPy reference, then timed in rounds, one worker at a time, in two
modes; medians, 90th percentiles, GFLOP/s, % of GEMM peak and ratios."""
import os
import tempfile
import time

import numpy as np

from .cold_start import cold_starts
from .configs import CONFIGS
from .first_call import JIT_BACKENDS, first_calls, pick_configs
from .peers import peer_status
from .pool import SETUP_TIMEOUT_S, WorkerPool
from .timing import BLAS_SETTLE_S, MODES, gemm_peak_gflops, summarize

REFERENCE = "fastlstm[numpy]"
WHATS = ("forward", "train")


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
              first_call=True, rounds=3, modes=MODES, cold_start_runs=5):
    """Every figure of one `fastlstm bench` run, as a JSON-friendly dict.

    Each implementation runs in a worker process of its own (worker.py); all are checked
    against the NumPy reference, then timed in rounds, one worker at a time.

    Parameters
    ----------
    config_names : list of str or Config
        Names from configs.CONFIGS, or Config objects (tests use tiny ones).
    backends : list of str
        fastlstm backends; the NumPy reference ("numpy") is added when missing.
    peers : list of str
        Names from peers.PEERS; one that cannot run here is listed, with the reason,
        under "skipped_peers".
    repeat : int
        Timed calls per implementation, config, mode and round (back-to-back one-step
        calls: at least a whole pass of T steps).
    threads : int
        Threads for fastlstm and the peers.
    progress : callable
        Called with one line of text at each stage.
    gemm_n : int
        Size of the float32 GEMM that measures the machine's peak.
    first_call : bool
        Also time the first call of JIT backends (numba) in fresh processes.
    rounds : int
        How many times every worker takes its turn on every config and mode; the first
        worker of a round rotates.
    modes : sequence of str
        "b2b" (back-to-back calls) and/or "idle" (a 50 ms pause before each call).
    cold_start_runs : int
        Fresh processes timed from start to a first edge forward (0: none).

    Returns
    -------
    dict
        "rows": one per config, implementation and mode with the median ("forward_ms",
        "train_ms"), 90th percentile ("forward_p90_ms", ...), every time
        ("forward_times_ms", ...), GFLOP/s, % of peak, the worker's "pid", and for
        fastlstm rows "ratios" (other median / its median); "stream_step" (the one-step
        latency, us), "cold_start", "workers" ({label: pid, version}), "parent_pid",
        "first_calls", "gemm_peak_gflops", the settings, and the peers run and skipped.

    Raises
    ------
    CheckFailed
        When an implementation's output or input gradient disagrees with the reference.
    WorkerError
        When a worker process crashes, hangs past its time limit or fails a command.
    """
    backends = ["numpy"] + [b for b in backends if b != "numpy"]  # the reference comes first
    skipped, runnable_peers = {}, []
    for p in peers:
        reason = peer_status(p)
        if reason:
            skipped[p] = reason
            progress(f"{p} skipped: {reason}")
        else:
            runnable_peers.append(p)
    configs = [CONFIGS[c] if isinstance(c, str) else c for c in config_names]
    labels = [f"fastlstm[{b}]" for b in backends] + runnable_peers
    progress(f"measuring the float32 GEMM peak ({gemm_n}^3) ...")
    peak = gemm_peak_gflops(gemm_n)
    time.sleep(BLAS_SETTLE_S)  # NumPy's BLAS threads spin on after the peak probe
    progress(f"starting {len(labels)} worker processes: {', '.join(labels)} ...")
    with WorkerPool(labels, threads) as pool:
        workers = pool.setup(configs)
        _check_all(pool, configs, labels, progress)
        samples = _time_rounds(pool, configs, labels, workers, modes, rounds, repeat,
                               progress)
    rows = [_row(cfg, label, mode, samples, workers[label], peak)
            for cfg in configs for mode in modes for label in labels]
    _add_ratios(rows, runnable_peers)
    firsts = []
    for b in (b for b in backends if first_call and b in JIT_BACKENDS):
        for name in pick_configs([c.name for c in configs if c.name in CONFIGS]):
            progress(f"first call of {b} on {name} in fresh processes (compiling, then "
                     "cached) ...")
            firsts.append(first_calls(b, name, threads))
    cold = None
    if cold_start_runs:
        progress(f"cold start: {cold_start_runs} fresh processes ...")
        cold = cold_starts(cold_start_runs, threads)
    return {"gemm_peak_gflops": peak, "repeat": repeat, "rounds": rounds,
            "modes": list(modes), "threads": threads, "rows": rows,
            "stream_step": stream_step(rows), "cold_start": cold,
            "peers_requested": list(peers), "peers": runnable_peers, "skipped_peers": skipped,
            "backends": backends, "parent_pid": os.getpid(),
            "workers": {label: {"pid": w["pid"], "version": w["version"]}
                        for label, w in workers.items()},
            "first_calls": firsts}


def _check_all(pool, configs, labels, progress):
    """Every worker's y (and dx) against the NumPy reference's, config by config, before
    anything is timed; CheckFailed names the first that disagrees."""
    with tempfile.TemporaryDirectory(prefix="fastlstm-bench-") as tmp:
        for i, cfg in enumerate(configs, 1):
            progress(f"[{i}/{len(configs)}] {cfg.name} ({cfg.shape_text()}): checking "
                     f"{len(labels) - 1} implementations against the reference ...")
            outputs = {}
            for j, label in enumerate(labels):
                path = os.path.join(tmp, f"{i}-{j}.npz")
                pool[label].request("check", timeout=SETUP_TIMEOUT_S, config=cfg.name,
                                    path=path)
                with np.load(path) as f:
                    outputs[label] = dict(f)
            ref = outputs[REFERENCE]
            for label, out in outputs.items():
                # the reference's own one-step path too: the oracle is one whole-sequence call
                check_close(label, "forward output", out["y"], ref["y_whole"], cfg.name)
                if "dx" in out:
                    check_close(label, "input gradient", out["dx"], ref["dx"], cfg.name)


def calls_per_turn(cfg, mode, repeat):
    """Timed calls in one worker's turn: `repeat`, except for back-to-back one-step calls
    (the stream config), which take a whole pass through the sequence (T steps)."""
    return max(repeat, cfg.T) if cfg.stream and mode == "b2b" else repeat


def _time_rounds(pool, configs, labels, workers, modes, rounds, repeat, progress):
    """{(config, label, mode, what): [seconds, ...]}: in each round, for each config and
    mode, every worker in turn (the first one rotating from round to round) times its
    calls while the others wait."""
    samples = {}
    for r in range(rounds):
        order = labels[r % len(labels):] + labels[:r % len(labels)]
        for cfg in configs:
            progress(f"round {r + 1}/{rounds}: {cfg.name} ({', '.join(modes)}) ...")
            for mode in modes:
                n = calls_per_turn(cfg, mode, repeat)
                for label in order:
                    for what in WHATS:
                        if what == "train" and not workers[label]["configs"][cfg.name]["train"]:
                            continue
                        answer = pool[label].request("time", config=cfg.name, mode=mode,
                                                     what=what, n=n)
                        samples.setdefault((cfg.name, label, mode, what), []).extend(
                            answer["times"])
    return samples


def _row(cfg, label, mode, samples, worker, peak):
    kind = "fastlstm" if label.startswith("fastlstm") else "peer"
    unit = "step" if cfg.stream else "call"
    row = {"config": cfg.name, "group": cfg.group or cfg.name, "impl": label, "kind": kind,
           "mode": mode, "pid": worker["pid"], "unit": unit, "B": cfg.B, "T": cfg.T,
           "I": cfg.I, "H": cfg.H, "layers": cfg.layers}
    if cfg.stream:
        row["step_api"] = worker["configs"][cfg.name]["step_api"]
    for what in WHATS:
        times = samples.get((cfg.name, label, mode, what))
        if not times:
            row.update({f"{what}_ms": None, f"{what}_p90_ms": None, f"{what}_gflops": None,
                        f"{what}_pct_peak": None, f"{what}_samples": 0,
                        f"{what}_times_ms": []})
            continue
        stats = summarize(times)
        flops = cfg.flops(backward=what == "train") / (cfg.T if cfg.stream else 1)
        gflops = flops / stats["median"] / 1e9
        row.update({f"{what}_ms": stats["median"] * 1e3, f"{what}_p90_ms": stats["p90"] * 1e3,
                    f"{what}_gflops": gflops, f"{what}_pct_peak": 100.0 * gflops / peak,
                    f"{what}_samples": len(times),
                    f"{what}_times_ms": [round(t * 1e3, 4) for t in times]})
        if cfg.stream:
            row[f"{what}_us"] = stats["median"] * 1e6
            row[f"{what}_p90_us"] = stats["p90"] * 1e6
    return row


def _add_ratios(rows, peers):
    """For each fastlstm row: reference time / its time, and peer time / its time (> 1: we
    win), medians of the same config and mode."""
    by_key = {(r["config"], r["impl"], r["mode"]): r for r in rows}
    for r in rows:
        if r["kind"] != "fastlstm":
            continue
        ratios = {}
        others = [("numpy", REFERENCE)] + [(p, p) for p in peers]
        for short, label in others:
            other = by_key.get((r["config"], label, r["mode"]))
            for what in WHATS:
                if other and other[f"{what}_ms"] and r[f"{what}_ms"]:
                    ratios[f"{short}/{what}"] = other[f"{what}_ms"] / r[f"{what}_ms"]
        r["ratios"] = ratios


def stream_step(rows):
    """The one-step streaming latency of each implementation and mode, from the stream
    config's rows: [{"impl", "mode", "api", "us", "p90_us", "train_us", "train_p90_us"}]."""
    return [{"impl": r["impl"], "mode": r["mode"], "api": r.get("step_api"),
             "config": r["config"], "us": r["forward_us"], "p90_us": r["forward_p90_us"],
             "train_us": r.get("train_us"), "train_p90_us": r.get("train_p90_us")}
            for r in rows if r["unit"] == "step" and r.get("forward_us")]
