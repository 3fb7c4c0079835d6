"""Compiled kernels, built from src_cython/ by setup.py. Any of them may be absent
(no compiler, FASTLSTM_NO_EXTENSION=1): load_extension says so instead of failing."""
import importlib

_loaded = {}
_errors = {}


def load_extension(name):
    """The compiled module fastlstm._cy.<name>, or None when it was not built."""
    if name not in _loaded:
        try:
            _loaded[name] = importlib.import_module(f"{__name__}.{name}")
        except ImportError as exc:
            _loaded[name] = None
            _errors[name] = str(exc)
    return _loaded[name]


def load_error(name):
    """Why load_extension(name) returned None ('' when it loaded)."""
    load_extension(name)
    return _errors.get(name, "")
