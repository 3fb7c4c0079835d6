"""Backend registry: which kernel modules exist, which can run here, and "auto".

Every backend is a module exposing `forward_layer` and `backward_layer` (see
contract.py). Availability is probed cheaply (no numba import, no GPU
initialisation) the first time it is asked for, then cached. The API imports
only this registry, never a particular backend.
"""
import importlib
import importlib.util

# name -> (module, one-line description, module it needs or None); AUTO_ORDER lists them
# fastest first.
BACKENDS = {
    "cython": ("fastlstm.backends.cython_cpu", "compiled kernels: SIMD + own thread pool + BLAS",
               "fastlstm._cy.lstm_cpu"),
    "numba": ("fastlstm.backends.numba_cpu", "numba JIT kernels: BLAS + parallel loops",
              "numba"),
    "numpy": ("fastlstm.backends.reference", "NumPy reference (the oracle; always available)",
              None),
}
AUTO_ORDER = ["cython", "numba", "numpy"]

_status_cache = None
_module_cache = {}


def _probe(name):
    """'' when backend `name` can run here, else the reason it cannot."""
    module_path, _, needs = BACKENDS[name]
    for path in filter(None, (module_path, needs)):
        try:
            found = importlib.util.find_spec(path) is not None
        except ImportError as exc:
            return f"{path} cannot be imported: {exc}"
        if not found:
            return f"{path} is not installed" + (
                " (the compiled extension was not built: see `fastlstm info`)"
                if path.startswith("fastlstm._cy") else "")
    return ""


def backend_status():
    """{name: reason}; an empty reason means the backend is available."""
    global _status_cache
    if _status_cache is None:
        _status_cache = {name: _probe(name) for name in BACKENDS}
    return dict(_status_cache)


def available_backends():
    """The backends that can run here, in the order ``backend="auto"`` tries them.

    Returns
    -------
    list of str
        From "cython" (the compiled kernels, when the extension was built), "numba"
        (when numba imports) and "numpy" (the reference, always there), fastest first.
        ``fastlstm info`` says why any other is unavailable.
    """
    status = backend_status()
    return [name for name in AUTO_ORDER if not status[name]]


def load(name):
    """The kernel module of one available backend."""
    module = _module_cache.get(name)
    if module is None:
        module = importlib.import_module(BACKENDS[name][0])
        _module_cache[name] = module
    return module


class _Kernels:
    """The kernel modules of some backends, in order, each imported only when iteration
    reaches it: "auto" must not import numba while the compiled backend handles every
    call."""

    def __init__(self, names, fallback):
        self.names = tuple(names)
        self.fallback = fallback  # "auto": a backend that fails to import is skipped

    def __iter__(self):
        for name in self.names:
            try:
                module = load(name)
            except ImportError as exc:  # e.g. a numba built for another NumPy
                if not self.fallback:
                    raise ImportError(f"backend {name!r} failed to load: {exc}") from exc
                backend_status()
                _status_cache[name] = f"{BACKENDS[name][0]} failed to import: {exc}"
                continue
            yield module

    def __repr__(self):
        return f"_Kernels({list(self.names)})"


def resolve(name):
    """Kernel modules to try for a requested backend name, in order (loaded lazily).

    "auto" gives every available backend, fastest first; a named backend gives
    just that one, or a ValueError saying why not and what is available.
    """
    if not isinstance(name, str):
        raise TypeError(f"backend must be a str, got {type(name).__name__}")
    if name == "auto":
        return _Kernels(available_backends(), fallback=True)
    if name not in BACKENDS:
        raise ValueError(f"backend must be 'auto' or one of {sorted(BACKENDS)}, got {name!r}")
    reason = backend_status()[name]
    if reason:
        raise ValueError(f"backend {name!r} is not available here ({reason}); "
                         f"available: {available_backends()}")
    return _Kernels([name], fallback=False)
