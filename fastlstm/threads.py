"""One thread count for every level of parallelism fastlstm uses.

set_num_threads(n) governs BLAS (through threadpoolctl), the compiled kernels'
OpenMP regions and numba's thread pool together, so that only one level runs
parallel at a time and nothing is oversubscribed.
"""
import os
import sys

from . import _blas
from . import _validate as check

_num_threads = None


def default_num_threads():
    """Cores this process may run on (its CPU affinity), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def get_num_threads():
    """The thread count kernels use: the last set_num_threads(n), else every usable core
    (asked once: it is read on every kernel call)."""
    global _num_threads
    if _num_threads is None:
        _num_threads = default_num_threads()
    return _num_threads


def set_num_threads(n):
    """Use n threads in every kernel, BLAS call and JIT-compiled loop of fastlstm."""
    global _num_threads
    n = check.positive_int(n, "n")
    _num_threads = n
    try:
        from threadpoolctl import ThreadpoolController
        for lib in ThreadpoolController().lib_controllers:
            # the BLAS the compiled kernels call from their own threads stays at one
            lib.set_num_threads(1 if lib.filepath in _blas.PINNED else n)
    except ImportError:
        pass
    if "numba" in sys.modules:  # only when a numba backend already loaded it
        # first: starting numba's OpenMP pool resets the calling thread's OpenMP team size
        numba = sys.modules["numba"]
        numba.set_num_threads(min(n, numba.config.NUMBA_NUM_THREADS))
    from ._cy import load_extension
    ext = load_extension("buildinfo")
    if ext is not None:
        ext.set_threads(n)
    return n
