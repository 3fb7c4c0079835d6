"""Builds fastlstm's compiled kernels (src_cython/*.pyx -> fastlstm._cy.*).

Metadata lives in pyproject.toml; this file only builds the extensions. Every
failure here is survivable: without a C compiler, Cython or OpenMP the package
still installs and imports, prints a loud warning at build time, and
`fastlstm info` says what is missing.

Build switches (environment variables, "1" to enable):
  FASTLSTM_NO_EXTENSION  skip the compiled kernels entirely (pure-Python install)
  FASTLSTM_NO_OPENMP     build without OpenMP (serial kernels)
  FASTLSTM_DEBUG         Cython bounds/wraparound checks on, -O1 -g (for tests)
  FASTLSTM_PORTABLE      no -march=native: a binary that runs on any x86-64/arm64
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


class BuildExt(build_ext):
    """build_ext that probes OpenMP / -march=native and never fails the install."""

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
        with tempfile.TemporaryDirectory() as tmp:
            openmp = False
            if _flag("FASTLSTM_NO_OPENMP"):
                _loud("FASTLSTM_NO_OPENMP is set: building serial (single-thread) kernels.")
            elif _compiles(cc, OPENMP_PROBE, ["-fopenmp"], tmp):
                openmp = True
                args.append("-fopenmp")
                links.append("-fopenmp")
            else:
                _loud("OpenMP was not found (compiling with -fopenmp failed).\n"
                      "The compiled kernels are built SERIAL: they will use one core.\n"
                      "Install an OpenMP-capable compiler (e.g. gcc with libgomp) and reinstall.")
            native = False
            if not _flag("FASTLSTM_PORTABLE"):
                native = _compiles(cc, "int main(void){return 0;}", ["-march=native"], tmp)
                if native:
                    args.append("-march=native")
        macros += [("FASTLSTM_OPENMP", int(openmp)), ("FASTLSTM_DEBUG", int(debug)),
                   ("FASTLSTM_NATIVE", int(native))]
        for ext in self.extensions:
            ext.extra_compile_args += args
            ext.extra_link_args += links
            ext.define_macros += macros
        super().build_extensions()

    def build_extension(self, ext):
        try:
            super().build_extension(ext)
        except Exception as exc:  # compiler missing or broken: keep the install alive
            _loud(f"Could not compile {ext.name}: {exc}\n"
                  "fastlstm installs without it and falls back to its other backends.\n"
                  "`fastlstm info` reports what is missing.")


def extensions():
    if _flag("FASTLSTM_NO_EXTENSION"):
        _loud("FASTLSTM_NO_EXTENSION is set: the compiled kernels are NOT built.")
        return []
    headers = [f"{SRC}/{h.name}" for h in sorted((HERE / SRC).glob("*.h"))]
    return [Extension(f"fastlstm._cy.{p.stem}", [f"{SRC}/{p.name}"], include_dirs=[SRC],
                      depends=headers)
            for p in sorted((HERE / SRC).glob("*.pyx"))]


setup(ext_modules=extensions(), cmdclass={"build_ext": BuildExt})
