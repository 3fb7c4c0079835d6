"""Reach the BLAS the compiled kernels call, and keep it single-threaded.

The kernels call BLAS from their own thread pool, each thread on its own slice: one level
of parallelism. A BLAS with its own worker threads would fight them for the cores (its
workers keep spinning after each call). With pip wheels scipy has its own copy of
OpenBLAS, separate from NumPy's: it is loaded straight from its file (bundled_openblas)
and pinned to one thread, which leaves NumPy alone. Elsewhere it is reached through
scipy.linalg.cython_blas (pin_scipy_blas); where scipy and NumPy share one library
(conda, system BLAS) it is pinned only for the duration of each kernel call.
"""
import glob
import importlib.util
import os

PINNED = set()  # file paths of BLAS libraries kept at one thread

# Where scipy's wheels put the OpenBLAS they bundle, beside the scipy package, and the
# prefix of its symbols (scipy-openblas32: 32-bit integers, as the kernels' ?gemm takes).
_BUNDLED = ("scipy.libs/libscipy_openblas-*.so*", "scipy/.dylibs/libscipy_openblas*.dylib",
            "scipy.libs/libscipy_openblas-*.dll")
_PREFIX = "scipy_"


def bundled_openblas():
    """Load the OpenBLAS that scipy's wheel bundles directly, pinned to one thread.

    Importing ``scipy.linalg`` to reach the same library through ``cython_blas`` costs a
    fresh process 0.12 s (scipy's own imports), a fifth of the classic Keras program's
    whole fit; loading the library itself costs 4 ms. Nothing of scipy is imported.

    Returns
    -------
    (int, int) or None
        The addresses of sgemm and dgemm, or None when there is no such library (scipy
        from conda, a system BLAS, a wheel laid out otherwise): the caller then goes
        through ``scipy.linalg.cython_blas``.
    """
    import ctypes
    spec = importlib.util.find_spec("scipy")
    if spec is None or not spec.origin:
        return None
    site = os.path.dirname(os.path.dirname(os.path.realpath(spec.origin)))
    found = [f for pattern in _BUNDLED for f in glob.glob(os.path.join(site, pattern))]
    if len(found) != 1:  # none, or several we cannot tell apart: the general way
        return None
    path = os.path.realpath(found[0])
    try:
        lib = ctypes.CDLL(path)
        sgemm, dgemm = lib[_PREFIX + "sgemm_"], lib[_PREFIX + "dgemm_"]
        set_threads = lib[_PREFIX + "openblas_set_num_threads"]
    except (OSError, AttributeError):
        return None
    set_threads.argtypes, set_threads.restype = [ctypes.c_int], None
    set_threads(1)  # scipy's own copy (NumPy has another): it stays at one thread
    PINNED.add(path)
    PINNED.add(found[0])
    addr = ctypes.cast(sgemm, ctypes.c_void_p).value, ctypes.cast(dgemm, ctypes.c_void_p).value
    return addr


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
