"""What fastlstm is running with: versions, backends, the compiled extension, threads, BLAS."""
import os
import platform
import sys

import numpy as np

from . import backends
from ._cy import load_error, load_extension
from ._version import __version__
from .threads import get_num_threads


def collect_info():
    """Everything `fastlstm info` reports, as a JSON-friendly dict.

    Loading the compiled backend (when it is available) is the only side effect: it pins
    SciPy's BLAS to one thread, and the report shows the state the kernels run with.

    Returns
    -------
    dict
        Keys ``fastlstm``, ``python``, ``numpy`` (versions), ``platform``, ``machine``,
        ``cpu``, ``threads`` (fastlstm's thread count), ``backends`` (name -> available,
        reason it is not, description), ``auto_order`` (the available backends in the
        order ``backend="auto"`` tries them), ``extension`` (whether the compiled
        extension is built and with what: OpenMP, debug, ``pool`` (the kernels' thread
        pool: ``spin_us``, ``helpers_started``), and under ``isa`` its kernel
        variants: ``chosen``, ``forced`` (FASTLSTM_ISA or None), ``available`` (those
        this CPU runs), ``built``, ``error`` (a FASTLSTM_ISA that cannot be used)), ``numba``
        (version, threads, threading layer, cache folder) and ``blas`` (one dict per BLAS
        library loaded, from threadpoolctl).
    """
    isa = _isa_info()
    ext = load_extension("buildinfo")
    extension = {"built": ext is not None}
    if ext is None:
        extension["reason"] = ("not built (no C compiler or Cython at install time, or "
                               f"FASTLSTM_NO_EXTENSION=1): {load_error('buildinfo')}")
    else:
        extension.update(ext.build_info())
        extension["openmp_threads"] = ext.get_max_threads()
        extension["isa"] = isa
        kernels = load_extension("lstm_cpu")
        if kernels is not None:  # the kernels' own thread pool (src_cython/pool.h)
            extension["pool"] = {"spin_us": kernels.pool_spin_us(),
                                 "helpers_started": kernels.pool_stats()["started"]}
    return {
        "fastlstm": __version__,
        "python": sys.version.split()[0],
        "numpy": np.__version__,
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu": _cpu_model(),
        "threads": get_num_threads(),
        "backends": {name: {"available": not reason, "reason": reason,
                            "description": backends.BACKENDS[name][1]}
                     for name, reason in _status(isa).items()},
        "auto_order": backends.available_backends(),
        "extension": extension,
        "numba": _numba_info(),
        "blas": _blas_info(),
    }


def _status(isa):
    """backend_status(), with the compiled backend unusable under a FASTLSTM_ISA it cannot
    honour (it loads, but every call raises, "auto" included)."""
    status = backends.backend_status()
    if isa and isa["error"]:
        status["cython"] = f"every call raises: {isa['error']}"
    return status


def _isa_info():
    """The compiled kernels' instruction-set variants: chosen, forced, available, built."""
    if "cython" not in backends.available_backends():
        return None
    import os
    forced = os.environ.get("FASTLSTM_ISA", "").strip().lower() or None
    try:
        cy = backends.load("cython")  # it pins scipy's BLAS: report the state it runs with
    except ValueError as exc:  # a FASTLSTM_ISA this CPU or build cannot honour
        built = load_extension("lstm_cpu").variants()
        return {"chosen": None, "forced": forced, "error": str(exc),
                "available": [v["name"] for v in built if v["runs_here"]],
                "built": [v["name"] for v in built]}
    except ImportError:
        return None
    return {"chosen": cy.ISA, "forced": cy.FORCED, "error": None,
            "available": cy.runnable_isas(), "built": list(cy.VARIANTS)}


def _numba_info():
    """The numba backend's JIT: version, threads, threading layer, where it caches."""
    if "numba" not in backends.available_backends():
        return {"available": False}
    try:
        numba_cpu = backends.load("numba")
    except ImportError as exc:
        return {"available": False, "reason": str(exc)}
    import numba
    try:
        layer = numba.threading_layer()
    except ValueError:  # chosen at the first parallel call: say what numba will try
        layer = f"not chosen yet (config: {numba.config.THREADING_LAYER})"
    return {"available": True, "version": numba.__version__,
            "threads": numba.config.NUMBA_NUM_THREADS, "threading_layer": layer,
            "cache_dir": numba_cpu.CACHE_DIR}


def _cpu_model():
    """The processor's name (Linux), else what platform knows."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _blas_info():
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return [{"note": "threadpoolctl not installed; BLAS unknown"}]
    from ._blas import PINNED
    try:  # the kernels load scipy's BLAS on first need: load it now, to report it
        from .backends import cython_cpu
        cython_cpu._blas()
    except (ImportError, ValueError):  # no compiled backend (or FASTLSTM_ISA refused, said
        pass                            # elsewhere): whatever is loaded is what there is
    keep = ("internal_api", "version", "num_threads", "architecture", "threading_layer")
    out = []
    for lib in threadpool_info():
        if lib.get("user_api") != "blas":
            continue
        entry = {k: lib.get(k) for k in keep if lib.get(k) is not None}
        entry["file"] = os.path.basename(lib.get("filepath", ""))
        if lib.get("filepath") in PINNED:
            entry["use"] = ("compiled and numba kernels (one thread: they parallelise "
                            "themselves)")
        out.append(entry)
    return out


def format_info(info):
    """The report of `fastlstm info` as text.

    Parameters
    ----------
    info : dict
        What `collect_info` returns.

    Returns
    -------
    str
        One line per item (version, CPU, threads, each backend and why it is unavailable,
        the compiled extension, numba, each BLAS), without a trailing newline.
    """
    lines = [f"fastlstm {info['fastlstm']}  (Python {info['python']}, NumPy {info['numpy']}, "
             f"{info['machine']})", f"cpu: {info['cpu']}", f"threads: {info['threads']}",
             "backends:"]
    for name, b in info["backends"].items():
        state = "available" if b["available"] else f"unavailable: {b['reason']}"
        lines.append(f"  {name:<8} {state}  — {b['description']}")
    lines.append(f"auto tries: {', '.join(info['auto_order'])}")
    ext = info["extension"]
    if ext["built"]:
        lines.append(f"compiled extension: built  openmp={ext['openmp']} "
                     f"(threads {ext['openmp_threads']})  debug={ext['debug']}")
        lines.append(format_isa(ext.get("isa")))
        if ext.get("pool"):
            lines.append(f"kernel threads: own pool, helpers look for work "
                         f"{ext['pool']['spin_us']} us before they sleep "
                         "(FASTLSTM_SPIN_US)")
    else:
        lines.append(f"compiled extension: {ext['reason']}")
    nb = info["numba"]
    if nb.get("available"):
        cache = nb["cache_dir"] or "none (compiled in memory)"
        lines.append(f"numba: {nb['version']}  threads={nb['threads']}  "
                     f"layer={nb['threading_layer']}  cache={cache}")
    for lib in info["blas"]:
        lines.append("blas: " + "  ".join(f"{k}={v}" for k, v in lib.items()))
    return "\n".join(lines)


def format_isa(isa):
    """The `isa: <chosen> (available here: ...)` line of the report."""
    if not isa:
        return "isa: unknown (the compiled backend does not load)"
    here = f"available here: {', '.join(isa['available'])}"
    if isa["error"]:
        return f"isa: none usable: {isa['error']} ({here})"
    how = f", forced by FASTLSTM_ISA={isa['forced']}" if isa["forced"] else ""
    return f"isa: {isa['chosen']}{how} ({here})"


def show_config(mode="stdout"):
    """Show what fastlstm is running with: the same report as `fastlstm info`.

    Versions, CPU, threads, which backends can run here (and why any cannot), the
    order ``backend="auto"`` tries them in, how the compiled extension was built,
    numba's threads and cache folder, and the BLAS libraries loaded.

    Parameters
    ----------
    mode : {"stdout", "dicts"}, optional
        "stdout" (the default) prints the report; "dicts" returns it as a dict
        instead, as `numpy.show_config` does.

    Returns
    -------
    dict or None
        With ``mode="dicts"``, the report (see `collect_info` for its keys);
        otherwise None.

    Raises
    ------
    ValueError
        For any other `mode`.
    """
    if mode not in ("stdout", "dicts"):
        raise ValueError(f"mode must be 'stdout' or 'dicts', got {mode!r}")
    info = collect_info()
    if mode == "dicts":
        return info
    print(format_info(info))
    return None
