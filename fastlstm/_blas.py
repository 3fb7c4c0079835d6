"""Keep the BLAS behind scipy.linalg.cython_blas single-threaded.

The compiled kernels call BLAS from inside their own OpenMP region, each thread on its own
slice: one level of parallelism. A BLAS with its own worker threads would fight them for
the cores: its workers keep spinning after each call, so the kernel's threads wait at every
per-step barrier for a core, which makes a small forward an order of magnitude slower.
With pip wheels scipy has its own copy of OpenBLAS, separate from NumPy's, so pinning it
to one thread leaves NumPy alone; where the two share one library (conda, system BLAS)
it is pinned only for the duration of each kernel call instead.
"""
import os

PINNED = set()  # file paths of BLAS libraries kept at one thread


def _scipy_dirs():
    import scipy
    root = os.path.dirname(os.path.realpath(scipy.__file__))
    return (root + os.sep, root + ".libs" + os.sep)


def _blas_controllers():
    from threadpoolctl import ThreadpoolController
    return [c for c in ThreadpoolController().lib_controllers if c.user_api == "blas"]


class _CallGuard:
    """Pins shared BLAS libraries to one thread around each kernel call."""

    def __init__(self, controllers):
        self.controllers = controllers
        self.saved = []

    def __enter__(self):
        self.saved = [c.get_num_threads() for c in self.controllers]
        for c in self.controllers:
            c.set_num_threads(1)

    def __exit__(self, *exc):
        for c, n in zip(self.controllers, self.saved):
            c.set_num_threads(n)


def pin_scipy_blas():
    """Pin the BLAS behind ``scipy.linalg.cython_blas`` to one thread.

    Loads that library first (threadpoolctl only sees loaded libraries) and records the
    pinned file paths in `PINNED`, which :func:`fastlstm.set_num_threads` then leaves at one
    thread.

    Returns
    -------
    _CallGuard or None
        None when scipy has its own BLAS (now pinned for good) or when threadpoolctl is
        not installed (nothing can be controlled). Where scipy shares its BLAS with NumPy,
        a context manager that pins it to one thread for the duration of one kernel call
        and restores it afterwards; every kernel call must run under it.
    """
    try:
        import scipy.linalg.cython_blas  # noqa: F401  (loads the library to be pinned)
        controllers = _blas_controllers()
        dirs = _scipy_dirs()
    except ImportError:  # no threadpoolctl: nothing can be controlled
        return None
    own = [c for c in controllers if os.path.realpath(c.filepath).startswith(dirs)]
    if own:
        for c in own:
            c.set_num_threads(1)
            PINNED.add(c.filepath)
        return None
    return _CallGuard(controllers)
