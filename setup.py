"""Builds fastlstm's compiled kernels (src_cython/*.pyx -> fastlstm._cy.*).

Metadata lives in pyproject.toml; this file only builds the extensions. Every
failure here is survivable: without a C compiler or Cython the package still
installs and imports, prints a loud warning at build time, and `fastlstm info`
says what is missing. The kernels need no OpenMP (they run their own thread pool,
src_cython/pool.c); only buildinfo's OpenMP check uses it when it is there.

Build switches (environment variables, "1" to enable):
  FASTLSTM_NO_EXTENSION  skip the compiled kernels entirely (pure-Python install)
  FASTLSTM_NO_OPENMP     build without OpenMP, as a compiler without it does (the
                         kernels keep their own threads)
  FASTLSTM_DEBUG         Cython bounds/wraparound checks on, -O1 -g (for tests)

The kernels are built once per instruction set of the target CPU family (VARIANTS), and
the extension picks the best one the running CPU has when it loads: a build or wheel made
on one machine runs at full speed on any other of its architecture. No -march=native.
"""
import os
import sys
import tempfile
import textwrap
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

HERE = Path(__file__).parent
SRC = "src_cython"
KERNELS = "fastlstm._cy.lstm_cpu"  # the extension that holds the kernel variants

# Instruction-set variants of the kernels, per target architecture: the file
# src_cython/variants/<name>.c compiled with these flags. kernels.h's fl_cpu_supports checks
# the same features at run time before any variant's code runs.
VARIANTS = {
    "x86_64": {"avx512": ["-mavx512f", "-mavx512dq", "-mavx512bw", "-mavx512vl", "-mavx2",
                          "-mfma"],
               "avx2": ["-mavx2", "-mfma"],
               "baseline": []},
    "aarch64": {"neon": []},
    "other": {"baseline": []},
}
ARCH_PROBES = {  # the compiler's target, not the machine running setup.py (cross builds)
    "x86_64": "#ifndef __x86_64__\n#error not x86-64\n#endif\nint main(void){return 0;}\n",
    "aarch64": "#ifndef __aarch64__\n#error not aarch64\n#endif\nint main(void){return 0;}\n",
}


def _flag(name):
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def _loud(msg):
    bar = "*" * 78
    sys.stderr.write(f"\n{bar}\n* fastlstm build WARNING\n{textwrap.indent(msg, '* ')}\n{bar}\n\n")


def _compiles(compiler, code, extra_args, tmp):
    """True when `code` compiles and links with `extra_args` (probe for a flag)."""
    src = Path(tmp) / "probe.c"
    src.write_text(code)
    try:
        objs = compiler.compile([str(src)], output_dir=tmp, extra_postargs=extra_args)
        compiler.link_executable(objs, str(Path(tmp) / "probe"), extra_postargs=extra_args)
        return True
    except Exception:
        return False


OPENMP_PROBE = """
#include <omp.h>
int main(void) { int n = 0;
#pragma omp parallel reduction(+:n)
  n += 1;
  return n > 0 ? 0 : 1; }
"""


def _target_arch(compiler, tmp):
    for arch, probe in ARCH_PROBES.items():
        if _compiles(compiler, probe, [], tmp):
            return arch
    return "other"


class BuildExt(build_ext):
    """build_ext that probes OpenMP, builds the kernel variants, never fails the install."""

    def finalize_options(self):
        # cythonize before setuptools' own finalize_options, which annotates the extensions
        self.distribution.ext_modules = self._cythonize(self.distribution.ext_modules or [])
        super().finalize_options()

    @staticmethod
    def _cythonize(exts):
        if not exts:
            return exts
        try:
            from Cython.Build import cythonize
        except ImportError:
            _loud("Cython is not installed: the compiled kernels are NOT built.\n"
                  "fastlstm will run on its NumPy/Numba backends only.")
            return []
        debug = _flag("FASTLSTM_DEBUG")
        directives = {
            "language_level": "3",
            "boundscheck": debug,
            "wraparound": debug,
            "initializedcheck": debug,
            "cdivision": True,
            "nonecheck": debug,
        }
        return cythonize(exts, compiler_directives=directives, build_dir="build/cython")

    def build_extensions(self):
        cc = self.compiler
        args, links, macros = [], [], []
        debug = _flag("FASTLSTM_DEBUG")
        args += ["-O1", "-g"] if debug else ["-O3"]
        if os.name != "nt":  # the kernels' thread pool (src_cython/pool.c)
            args.append("-pthread")
            links.append("-pthread")
        omp_args = []  # buildinfo's OpenMP check only: the kernels run their own pool
        with tempfile.TemporaryDirectory() as tmp:
            openmp = False
            if _flag("FASTLSTM_NO_OPENMP"):
                sys.stderr.write("fastlstm: FASTLSTM_NO_OPENMP is set: building without "
                                 "OpenMP (the kernels keep their own threads)\n")
            elif _compiles(cc, OPENMP_PROBE, ["-fopenmp"], tmp):
                openmp = True
                omp_args = ["-fopenmp"]
            else:
                sys.stderr.write("fastlstm: OpenMP was not found: only `fastlstm info`'s "
                                 "OpenMP check is off; the kernels run their own threads\n")
            self.arch = _target_arch(cc, tmp)
        macros += [("FASTLSTM_OPENMP", int(openmp)), ("FASTLSTM_DEBUG", int(debug))]
        for ext in self.extensions:
            extra = [] if ext.name == KERNELS else omp_args
            ext.extra_compile_args += args + extra
            ext.extra_link_args += links + extra
            ext.define_macros += macros
            if ext.name == "fastlstm._cy.optim":  # NumPy's result to the bit: no fused FMAs
                ext.extra_compile_args += ["-ffp-contract=off", "-fno-math-errno"]
        super().build_extensions()

    def build_extension(self, ext):
        try:
            if ext.name == KERNELS and not self._up_to_date(ext):
                self._build_variants(ext)
            super().build_extension(ext)
        except Exception as exc:  # compiler missing or broken: keep the install alive
            _loud(f"Could not compile {ext.name}: {exc}\n"
                  "fastlstm installs without it and falls back to its other backends.\n"
                  "`fastlstm info` reports what is missing.")

    def _up_to_date(self, ext):
        """setuptools skips an extension newer than its sources: skip its variants too."""
        target = Path(self.get_ext_fullpath(ext.name))
        if self.force or not target.exists():
            return False
        newest = max(Path(f).stat().st_mtime for f in list(ext.sources) + list(ext.depends))
        return newest <= target.stat().st_mtime

    def _build_variants(self, ext):
        """Compile src_cython/variants/<isa>.c with each variant's flags into objects the
        extension links; a variant the compiler cannot build is left out, loudly."""
        built = []
        for name, flags in VARIANTS[self.arch].items():
            try:
                objs = self.compiler.compile(
                    [f"{SRC}/variants/{name}.c"], output_dir=self.build_temp,
                    macros=ext.define_macros, include_dirs=ext.include_dirs,
                    extra_postargs=ext.extra_compile_args + flags, depends=ext.depends)
            except Exception as exc:
                _loud(f"The {name} kernels could not be compiled ({exc}).\n"
                      f"CPUs with {name} will run a slower variant.")
                continue
            ext.extra_objects += objs
            ext.define_macros.append((f"FL_HAVE_{name.upper()}", 1))
            built.append(name)
        if not built:
            raise RuntimeError("no kernel variant could be compiled")
        # the thread pool every variant runs its calls on, with the baseline flags
        ext.extra_objects += self.compiler.compile(
            [f"{SRC}/pool.c"], output_dir=self.build_temp, macros=ext.define_macros,
            include_dirs=ext.include_dirs, extra_postargs=ext.extra_compile_args,
            depends=ext.depends)


def extensions():
    if _flag("FASTLSTM_NO_EXTENSION"):
        _loud("FASTLSTM_NO_EXTENSION is set: the compiled kernels are NOT built.")
        return []
    headers = [f"{SRC}/{h.relative_to(HERE / SRC)}"
               for pattern in ("*.h", "*.c", "variants/*.c") for h in sorted((HERE / SRC).glob(pattern))]
    import numpy  # its C API: the one-step path reads arrays without Python-level calls
    return [Extension(f"fastlstm._cy.{p.stem}", [f"{SRC}/{p.name}"],
                      include_dirs=[SRC, numpy.get_include()], depends=headers,
                      define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")])
            for p in sorted((HERE / SRC).glob("*.pyx"))]


setup(ext_modules=extensions(), cmdclass={"build_ext": BuildExt})
