"""One thread count for every level of parallelism fastlstm uses.

set_num_threads(n) governs BLAS (through threadpoolctl), the compiled kernels'
team (the calls read get_num_threads()) and numba's thread pool together, so that only
one level runs parallel at a time and nothing is oversubscribed.

Every thread count, from the API or the command line, goes through check_num_threads:
a positive int, at most the cores this process may run on. More is refused with a
ValueError, as numba refuses a count above its pool (NUMBA_NUM_THREADS), rather than
capped: the kernels synchronise every time step, so a thread without a core of its own
stalls all the others (slower, never faster), and a count beyond the machine is a
mistake to report, not to paper over; a silent or merely warned cap would also make a
benchmark print one count and measure another. Uncapped, such a count went on to BLAS,
OpenMP and the benchmark's peers: `fastlstm bench --threads 100000` crashed in PyTorch.
"""
import os
import sys

from . import _blas
from . import _validate as check

_num_threads = None


def default_num_threads():
    """The number of cores this process may run on.

    Returns
    -------
    int
        The size of the process's CPU affinity set (``os.sched_getaffinity``) where the
        platform has one, else ``os.cpu_count()``; at least 1.
    """
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def check_num_threads(n, name="n"):
    """`n` as an int if it is a thread count fastlstm accepts.

    Parameters
    ----------
    n : int
        The count to check.
    name : str
        The argument's name, for the error message.

    Returns
    -------
    int
        `n`, as an int.

    Raises
    ------
    TypeError
        If `n` is not an int (bools are refused too).
    ValueError
        If `n` is less than 1 or more than :func:`default_num_threads`.
    """
    n = check.positive_int(n, name)
    cores = default_num_threads()
    if n > cores:
        raise ValueError(f"{name} must be at most {cores}, the cores this process may run on "
                         f"(more threads than cores only slow the kernels down), got {n}")
    return n


def get_num_threads():
    """The number of threads fastlstm's kernels run on.

    Returns
    -------
    int
        The last ``n`` given to :func:`set_num_threads`, else every core this process
        may use (:func:`default_num_threads`, asked once and remembered, because every
        kernel call reads it).

    See Also
    --------
    set_num_threads
    """
    global _num_threads
    if _num_threads is None:
        _num_threads = default_num_threads()
    return _num_threads


def set_num_threads(n):
    """Run every kernel, BLAS call and JIT-compiled loop of fastlstm on `n` threads.

    One count governs every level of parallelism, so that only one level runs parallel
    at a time: the compiled kernels' team, numba's thread pool (when a numba
    backend has been loaded) and every pool threadpoolctl finds (NumPy's BLAS, OpenMP
    runtimes) are set to `n`; the BLAS that SciPy ships, which the compiled kernels call
    from their own threads, stays at one thread.

    Parameters
    ----------
    n : int
        Number of threads, from 1 to the number of cores this process may run on
        (:func:`default_num_threads`). numba's share is capped at the size of the pool
        numba started with (``NUMBA_NUM_THREADS``).

    Returns
    -------
    int
        `n`, as an int.

    Raises
    ------
    TypeError
        If `n` is not an int (bools are refused too).
    ValueError
        If `n` is less than 1 or more than the cores this process may run on; nothing
        is changed then.

    See Also
    --------
    get_num_threads
    """
    global _num_threads
    n = check_num_threads(n, "n")
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
    # buildinfo's OpenMP check, where it is loaded (the kernels read get_num_threads();
    # loading buildinfo just for this would import scipy.linalg, 0.2 s)
    ext = sys.modules.get("fastlstm._cy.buildinfo")
    if ext is not None:
        ext.set_threads(n)
    return n
