"""How the numba kernels are compiled, and where their machine code is cached.

JIT: the options every kernel and helper shares. error_model="numpy" because numba's
default ("python") guards every float division with a ZeroDivisionError check, which
stops the loop vectoriser; IEEE division (inf/NaN) is what the reference does anyway.
The only fast-math flag is "contract" (a * b + c as one fused multiply-add: one rounding
fewer, gate math 25% faster, measured); none that assumes no NaN or inf, which must
propagate exactly as in the reference.

The cache: compiling forward+backward takes seconds, so the entry points are cached on
disk. numba by default writes next to the source (site-packages/.../__pycache__) or
into ~/.cache/numba, and raises at import when neither is writable (a read-only
site-packages and HOME, as on some edge images). We pick the folder ourselves, first
writable of:
  $FASTLSTM_NUMBA_CACHE_DIR (empty or "0": no disk cache at all)
  $NUMBA_CACHE_DIR
  <this folder>/__pycache__
  $XDG_CACHE_HOME/fastlstm or ~/.cache/fastlstm
  <temp dir>/fastlstm-numba-<uid>
and fall back to compiling in memory with a warning. Cached code of one version of the
kernel sources lives in its own subfolder (a hash of every file here): numba only
checks the file a cached function is defined in, not the helpers it inlined.
"""
import contextlib
import hashlib
import os
import tempfile
import warnings
from pathlib import Path

import numba
from numba.core import config as numba_config

JIT = dict(error_model="numpy", nogil=True, fastmath={"contract"})
HERE = Path(__file__).resolve().parent


def _source_hash():
    digest = hashlib.sha256(numba.__version__.encode())
    for path in sorted(HERE.glob("*.py")):
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def _writable(folder):
    try:
        os.makedirs(folder, exist_ok=True)
        tempfile.TemporaryFile(dir=folder).close()
        return True
    except OSError:
        return False


def _user_cache_home():
    xdg = os.environ.get("XDG_CACHE_HOME")
    return Path(xdg) if xdg else Path.home() / ".cache"


def _candidates():
    own = os.environ.get("FASTLSTM_NUMBA_CACHE_DIR")
    if own is not None:
        return [own] if own not in ("", "0") else []
    found = [numba_config.CACHE_DIR] if numba_config.CACHE_DIR else []
    found.append(HERE / "__pycache__")
    try:
        found.append(_user_cache_home() / "fastlstm")
    except RuntimeError:  # no home directory
        pass
    uid = os.getuid() if hasattr(os, "getuid") else "user"
    found.append(Path(tempfile.gettempdir()) / f"fastlstm-numba-{uid}")
    return found


def choose_cache_dir():
    """The folder kernels are cached in, or None for no disk cache."""
    candidates = _candidates()  # none: FASTLSTM_NUMBA_CACHE_DIR turned the cache off
    name = f"fastlstm-numba-{_source_hash()}"
    for base in candidates:
        folder = Path(base) / name
        if _writable(folder):
            return str(folder)
    if candidates:
        warnings.warn("fastlstm: no writable folder for numba's cache (tried "
                      f"{', '.join(map(str, candidates))}); kernels are compiled in every "
                      "process. Set FASTLSTM_NUMBA_CACHE_DIR to a writable folder.",
                      RuntimeWarning, stacklevel=2)
    return None


CACHE_DIR = choose_cache_dir()

# LLVM settings while our kernels compile: -O2 instead of numba's -O3, the SLP vectoriser
# off (numba's default; the kernels rely on the loop vectoriser, which stays on). Measured
# with copies not force-inlined: a cold forward+backward of the parallel build in 18.6-22.4 s
# instead of 23.6-25.9 s, same run times within this machine's noise (mid 15.0 vs 14.7 ms
# forward, large 139 vs 133 ms).
COMPILE_SETTINGS = {"OPT": 2, "SLP_VECTORIZE": False}


def _codegen():
    from numba.core.registry import cpu_target
    return cpu_target.target_context.codegen()


@contextlib.contextmanager
def compile_settings():
    """numba reads these when it builds each LLVM pass pipeline, so they apply to what
    compiles inside the block (only the first call of a kernel per dtype compiles; a
    cached kernel just loads). Below -O3 numba also runs its first, "cheap" module pass
    at -O0 without the loop vectoriser, as NUMBA_OPT=2 at start-up would."""
    saved = {k: getattr(numba_config, k) for k in COMPILE_SETTINGS}
    codegen = _codegen()
    cheap = (getattr(codegen, "_opt_level", None), getattr(codegen, "_loopvect", None))
    for k, v in COMPILE_SETTINGS.items():
        setattr(numba_config, k, type(saved[k])(v) if k == "OPT" else v)
    if None not in cheap:
        codegen._opt_level, codegen._loopvect = 0, False
    try:
        yield
    finally:
        for k, v in saved.items():
            setattr(numba_config, k, v)
        if None not in cheap:
            codegen._opt_level, codegen._loopvect = cheap


def kernel(parallel=False):
    """@kernel(): an entry point compiled with JIT options, cached in CACHE_DIR."""
    def decorate(func):
        if CACHE_DIR is None:
            return numba.njit(parallel=parallel, **JIT)(func)
        saved = numba_config.CACHE_DIR
        numba_config.CACHE_DIR = CACHE_DIR  # read once, when the cache is attached
        try:
            return numba.njit(parallel=parallel, cache=True, **JIT)(func)
        finally:
            numba_config.CACHE_DIR = saved
    return decorate
