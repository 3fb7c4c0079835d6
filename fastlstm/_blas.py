"""Keep the BLAS behind scipy.linalg.cython_blas single-threaded.

The compiled kernels call BLAS from inside their own OpenMP region, each thread on its own
slice: one level of parallelism. A BLAS with its own worker threads would fight them for
the cores (its workers spin after each call: measured here, the edge forward went from
0.46 ms to 8 ms). With pip wheels scipy has its own copy of OpenBLAS, separate from
NumPy's, so pinning it to one thread leaves NumPy alone; where the two share one library
(conda, system BLAS) it is pinned only for the duration of each kernel call instead.
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
    """Pin scipy's own BLAS to one thread. Returns None, or, where scipy shares its BLAS,
    the guard every kernel call must run under."""
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
