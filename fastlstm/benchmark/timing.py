"""Timing that survives noisy shared machines: batches of calls in two modes, medians and
90th percentiles, waiting for a process's threads to go quiet, and one GEMM peak."""
import time

import numpy as np

# Pauses that let spinning worker threads go idle before the next timed run: OpenMP teams
# spin ~20 ms after a region; NumPy's OpenBLAS workers spin ~150 ms after a call (both
# measured here from /proc/self/task CPU times). Used where several implementations share
# one process (--scaling); `fastlstm bench` itself gives each a process (worker.py).
SETTLE_S = 0.03
BLAS_SETTLE_S = 0.3

# The two ways of calling: "b2b" (back-to-back: a training loop, a busy server) and "idle"
# (a sporadic caller: a pause before each call, in which thread pools fall asleep and, on
# a VM, idle vCPUs may be descheduled).
MODES = ("b2b", "idle")
MODE_TITLES = {"b2b": "back-to-back calls", "idle": "idle caller (a 50 ms pause before each call)"}
IDLE_S = 0.05


def time_calls(fn, mode, n, warmup=1, idle_s=IDLE_S):
    """Seconds of each of `n` calls of fn in `mode` ("b2b" or "idle").

    b2b: `warmup` untimed calls, then n calls one right after the other. idle: before
    each call an untimed pause of `idle_s` (no warm-up: the pause would undo it).
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    if mode == "b2b":
        for _ in range(warmup):
            fn()
    times = []
    for _ in range(n):
        if mode == "idle":
            time.sleep(idle_s)
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return times


def summarize(times):
    """{"median": s, "p90": s} of a list of seconds (p90 by linear interpolation)."""
    t = np.asarray(times, dtype=np.float64)
    return {"median": float(np.median(t)), "p90": float(np.percentile(t, 90))}


def quiesce(limit_s=1.0, window_s=0.005, busy=0.1):
    """Wait until this process's threads stop using the CPU (at most `limit_s`); the
    seconds waited.

    Thread pools spin after their work (OpenMP teams for milliseconds, OpenBLAS for
    ~150 ms): quiet means the whole process used under `busy` of one core over a
    `window_s` window. Called before handing the machine to another implementation.
    """
    start = time.perf_counter()
    while time.perf_counter() - start < limit_s:
        cpu0, wall0 = time.process_time(), time.perf_counter()
        time.sleep(window_s)
        if time.process_time() - cpu0 < busy * (time.perf_counter() - wall0):
            break
    return time.perf_counter() - start


def interleaved_medians(fns, repeat, warmup=1, settle=SETTLE_S):
    """{label: median seconds} of each fn in `fns`, run A B C A B C ... after warm-up.

    Interleaving spreads the machine's slow moments over every implementation
    instead of handing them to whichever ran during them. The untimed `settle`
    pause before each run lets the previous implementation's worker threads (an
    OpenMP team spins for milliseconds after its region) go idle, so that no
    implementation is timed while another one's threads still hold the cores.
    """
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times = {label: [] for label in fns}
    for _ in range(repeat):
        for label, fn in fns.items():
            time.sleep(settle)
            t0 = time.perf_counter()
            fn()
            times[label].append(time.perf_counter() - t0)
    return {label: float(np.median(t)) for label, t in times.items()}


def gemm_peak_gflops(n=2048, repeat=3):
    """float32 GEMM throughput of NumPy's BLAS (n x n x n), the machine's practical peak."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    t = interleaved_medians({"gemm": lambda: a @ b}, repeat)["gemm"]
    return 2.0 * n ** 3 / t / 1e9
