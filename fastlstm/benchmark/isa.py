"""`fastlstm bench --isa NAME`: the bench with the compiled kernels forced to one variant
and, on x86-64, the other libraries held to the same instruction sets, as on a CPU that
has no more: a comparison of the variants (and of the peers on such a CPU) on one machine.

The libraries read their settings once, when they load (numpy's OpenBLAS as soon as numpy
is imported), so the bench runs again in a child process with the environment set.
"""
import os
import platform
import shlex
import subprocess
import sys

# Per variant on x86-64, the settings that hold the other libraries to its instruction sets
# (each checked to be a name its library accepts: an unknown one is ignored, silently for
# OpenBLAS). NUMBA_CPU_NAME alone keeps the host's features (AVX-512 included): the empty
# NUMBA_CPU_FEATURES makes LLVM take the named CPU's own. "baseline" is a CPU without AVX;
# the oldest x86-64 the peers still tell apart is Nehalem (SSE4.2), a little more than
# the kernels' own baseline (SSE2).
RESTRICTIONS = {
    "avx2": {"OPENBLAS_CORETYPE": "Haswell", "NUMBA_CPU_NAME": "haswell",
             "NUMBA_CPU_FEATURES": "", "ATEN_CPU_CAPABILITY": "avx2",
             "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_ENABLE_INSTRUCTIONS": "AVX2"},
    "baseline": {"OPENBLAS_CORETYPE": "Nehalem", "NUMBA_CPU_NAME": "nehalem",
                 "NUMBA_CPU_FEATURES": "", "ATEN_CPU_CAPABILITY": "default",
                 "ONEDNN_MAX_CPU_ISA": "SSE41", "MKL_ENABLE_INSTRUCTIONS": "SSE4_2"},
}
ISA_ENV = "FASTLSTM_ISA"
VARIABLES = [ISA_ENV] + list(RESTRICTIONS["avx2"])
# ONNX Runtime's kernels (MLAS) are picked from cpuid, with no setting to hold them back.
UNRESTRICTED = {"onnxruntime": "picks its kernels from the CPU, with no setting to limit them"}


def _x86_64():
    return platform.machine().lower() in ("x86_64", "amd64")


def environment(isa):
    """The variables `--isa isa` sets: FASTLSTM_ISA, and on x86-64 the restrictions."""
    return {ISA_ENV: isa, **(RESTRICTIONS.get(isa, {}) if _x86_64() else {})}


def check(isa):
    """'' when this build and CPU run kernel variant `isa`, else why not (naming the
    variants this CPU runs)."""
    from .._cy import load_error, load_extension
    ext = load_extension("lstm_cpu")
    if ext is None:
        return f"needs the compiled extension, which does not load: {load_error('lstm_cpu')}"
    variants = ext.variants()
    runnable = ", ".join(v["name"] for v in variants if v["runs_here"])
    built = [v["name"] for v in variants]
    if isa not in built:
        return f"this build has no {isa!r} kernels (built: {', '.join(built)}); " \
               f"this CPU can run: {runnable}"
    if not next(v for v in variants if v["name"] == isa)["runs_here"]:
        return f"this CPU cannot run the {isa} kernels; it can run: {runnable}"
    return ""


def in_place(isa):
    """Whether this process already runs with everything `--isa isa` sets."""
    return all(os.environ.get(k) == v for k, v in environment(isa).items())


def shell_text(env):
    return " ".join(f"{k}={shlex.quote(v)}" for k, v in env.items())


def run_in_child(isa, argv, progress):
    """`fastlstm <argv>` again in a child process with `--isa isa`'s environment; its exit
    status."""
    env = environment(isa)
    note = "".join(f"; {p} is not restricted: it {why}" for p, why in UNRESTRICTED.items())
    progress(f"fastlstm bench --isa {isa}: running in a child process with "
             f"{shell_text(env)}{note}")
    sys.stdout.flush()
    sys.stderr.flush()
    from .pool import child_env  # the same fastlstm as this process
    return subprocess.run([sys.executable, "-m", "fastlstm", *argv],
                          env={**child_env(), **env}).returncode


def record():
    """What the JSON output says about instruction sets: the kernel variant in use, and
    the restricting variables set in this process (whoever set them), with what the
    libraries loaded so far report they use."""
    from ..backends import backend_status
    out = {"kernels": None, "forced": os.environ.get(ISA_ENV) or None,
           "environment": {k: os.environ[k] for k in VARIABLES if k in os.environ},
           "not_restricted": dict(UNRESTRICTED)}
    if not backend_status().get("cython"):
        try:
            from ..backends import cython_cpu
            out["kernels"] = cython_cpu.ISA
        except ValueError as exc:  # a FASTLSTM_ISA that cannot run: nothing ran on it
            out["error"] = str(exc)
    in_effect = {}
    if "numba" in sys.modules:
        from numba.core import config
        in_effect["numba_cpu_name"] = config.CPU_NAME
    if "torch" in sys.modules:
        in_effect["torch_cpu_capability"] = sys.modules["torch"].backends.cpu.get_cpu_capability()
    out["in_effect"] = in_effect
    return out


def describe(rec):
    """One line for the report, or '' when nothing is forced or restricted."""
    restricted = {k: v for k, v in rec["environment"].items() if k != ISA_ENV}
    if not rec["forced"] and not restricted:
        return ""
    text = f"instruction sets: fastlstm's kernels {rec['kernels'] or 'not loaded'}"
    text += f" (forced by {ISA_ENV}={rec['forced']})" if rec["forced"] else ""
    if restricted:
        text += f"; others held back by {shell_text(restricted)}"
        text += "".join(f"; {p} not restricted" for p in rec["not_restricted"])
    return text
