"""Timing that survives noisy shared machines: interleaved runs, medians, one GEMM peak."""
import time

import numpy as np

# Pauses that let spinning worker threads go idle before the next timed run: OpenMP teams
# spin ~20 ms after a region; NumPy's OpenBLAS workers spin ~150 ms after a call (both
# measured here from /proc/self/task CPU times).
SETTLE_S = 0.03
BLAS_SETTLE_S = 0.3


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
