"""How the numba kernels are compiled, and where their machine code is cached.

JIT: the options every kernel and helper shares. error_model="numpy" because numba's
default ("python") guards every float division with a ZeroDivisionError check, which
stops the loop vectoriser; IEEE division (inf/NaN) is what the reference does anyway.
The only fast-math flag is "contract" (a * b + c as one fused multiply-add: one rounding
fewer and faster gate math); none that assumes no NaN or inf, which must propagate
exactly as in the reference.

The cache: compiling forward+backward takes seconds, so the entry points are cached on
disk. numba by default writes next to the source, i.e. into the installed package, and
a package must never write into its own install folder: it is read-only on many edge
images and system installs, and what is written there outlives `pip uninstall` (a later
`pip install -e .` then finds a site-packages/fastlstm/ holding only the cache, which
Python imports as a namespace package that shadows the real one). So we pick the folder
ourselves, the first writable of:
  $FASTLSTM_NUMBA_CACHE_DIR (alone when set; empty or "0": no disk cache at all)
  $NUMBA_CACHE_DIR
  the per-user cache folder (user_cache_dir(): ~/.cache/fastlstm and the like)
  <temp dir>/fastlstm-numba-<uid>, when it is ours and only we can write to it
and fall back to compiling in memory with a warning. Cached code of one version of the
kernel sources lives in its own subfolder (a hash of every file here): numba only
checks the file a cached function is defined in, not the helpers it inlined.
"""
import contextlib
import hashlib
import os
import stat
import sys
import tempfile
import threading
import warnings
from pathlib import Path

import numba
from numba.core import config as numba_config

JIT = dict(error_model="numpy", nogil=True, fastmath={"contract"})
HERE = Path(__file__).resolve().parent  # read (hashed), never written


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


def user_cache_dir(app="fastlstm"):
    """The per-user cache folder of `app` by the platform's convention.

    Linux and other Unix: $XDG_CACHE_HOME/app, else ~/.cache/app (the XDG base directory
    spec, which ignores a relative $XDG_CACHE_HOME); macOS: ~/Library/Caches/app;
    Windows: %LOCALAPPDATA%\\app\\Cache. The same answers as platformdirs, without the
    dependency. Raises RuntimeError when there is no home folder to put it in.
    """
    if sys.platform == "win32":
        local = os.environ.get("LOCALAPPDATA")
        base = Path(local) if local else Path.home() / "AppData" / "Local"
        return base / app / "Cache"
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Caches" / app
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    return (Path(xdg) if os.path.isabs(xdg) else Path.home() / ".cache") / app


def _private_temp_dir():
    """<temp dir>/fastlstm-numba-<uid>, or None when another user owns it or can write to
    it: numba runs the machine code it finds in its cache, so a folder someone else
    controls in a shared /tmp would run their code."""
    if not hasattr(os, "getuid"):  # Windows: the temp folder is per user already
        return Path(tempfile.gettempdir()) / "fastlstm-numba"
    folder = Path(tempfile.gettempdir()) / f"fastlstm-numba-{os.getuid()}"
    try:
        os.makedirs(folder, mode=0o700, exist_ok=True)
        st = os.lstat(folder)
    except OSError:
        return None
    if (not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid()
            or st.st_mode & (stat.S_IWGRP | stat.S_IWOTH)):
        return None
    return folder


def _candidates():
    """Cache folders in order of preference (lazily: the temp folder is made only when
    it is needed)."""
    own = os.environ.get("FASTLSTM_NUMBA_CACHE_DIR")
    if own is not None:
        if own not in ("", "0"):
            yield own
        return
    if numba_config.CACHE_DIR:
        yield numba_config.CACHE_DIR
    try:
        yield user_cache_dir()
    except RuntimeError:  # no home folder
        pass
    temp = _private_temp_dir()
    if temp is not None:
        yield temp


def choose_cache_dir():
    """The folder kernels are cached in, or None for no disk cache."""
    name = f"fastlstm-numba-{_source_hash()}"
    tried = []
    for base in _candidates():
        folder = Path(base) / name
        if _writable(folder):
            return str(folder)
        tried.append(str(base))
    if os.environ.get("FASTLSTM_NUMBA_CACHE_DIR") not in ("", "0"):  # not turned off
        warnings.warn("fastlstm: no writable folder for numba's cache (tried "
                      f"{', '.join(tried) or 'none'}); kernels are compiled in every "
                      "process. Set FASTLSTM_NUMBA_CACHE_DIR to a writable folder.",
                      RuntimeWarning, stacklevel=2)
    return None


CACHE_DIR = choose_cache_dir()

# LLVM settings while our kernels compile: -O2 instead of numba's -O3 and the SLP
# vectoriser off (numba's default). The kernels' speed comes from the loop vectoriser,
# which -O2 keeps; -O3's extra passes cost a quarter of the compile time and buy nothing
# on these loops.
COMPILE_SETTINGS = {"OPT": 2, "SLP_VECTORIZE": False}


def _codegen():
    from numba.core.registry import cpu_target
    return cpu_target.target_context.codegen()


# compile_settings() is entered by every thread whose call is a kernel's first (per
# dtype), and several may be inside at once. The settings are global, so they are shared
# too: the first thread in saves numba's own and lowers them, the last one out puts the
# saved ones back (a thread that saved and restored on its own would save another
# thread's lowered values and restore those last, lowering numba's level for good). A
# count rather than a lock held across the compile: first calls of different kernels are
# not serialised behind each other's run, and the lock is never held while a kernel runs
# (no ordering to get wrong against the adapter's other locks).
_settings_lock = threading.Lock()
_inside = 0      # threads inside compile_settings(), under _settings_lock
_saved = None    # numba's own settings while _inside > 0


def _lower():
    """Set COMPILE_SETTINGS; return what was there before, for _restore()."""
    saved = {k: getattr(numba_config, k) for k in COMPILE_SETTINGS}
    codegen = _codegen()
    cheap = (getattr(codegen, "_opt_level", None), getattr(codegen, "_loopvect", None))
    for k, v in COMPILE_SETTINGS.items():
        setattr(numba_config, k, type(saved[k])(v) if k == "OPT" else v)
    if None not in cheap:
        codegen._opt_level, codegen._loopvect = 0, False
    return saved, codegen, cheap


def _restore(state):
    saved, codegen, cheap = state
    for k, v in saved.items():
        setattr(numba_config, k, v)
    if None not in cheap:
        codegen._opt_level, codegen._loopvect = cheap


@contextlib.contextmanager
def compile_settings():
    """numba reads these when it builds each LLVM pass pipeline, so they apply to what
    compiles inside the block (only the first call of a kernel per dtype compiles; a
    cached kernel just loads). Below -O3 numba also runs its first, "cheap" module pass
    at -O0 without the loop vectoriser, as NUMBA_OPT=2 at start-up would. Safe to enter
    from several threads at once and nested: numba's own settings come back when the
    last one leaves. While any thread is inside, the settings are lowered for the whole
    process (numba has no per-compile setting for them)."""
    global _inside, _saved
    with _settings_lock:
        if _inside == 0:
            _saved = _lower()
        _inside += 1
    try:
        yield
    finally:
        with _settings_lock:
            _inside -= 1
            if _inside == 0:
                state, _saved = _saved, None
                _restore(state)


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
