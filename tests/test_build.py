"""The compiled extension: what it reports, that it works, and that fastlstm survives without it."""
import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import fastlstm
from fastlstm._cy import load_error, load_extension
from fastlstm.info import collect_info

ROOT = Path(__file__).resolve().parents[1]
ext = load_extension("buildinfo")
needs_ext = pytest.mark.skipif(
    ext is None, reason=f"compiled extension not built here: {load_error('buildinfo')}")


@needs_ext
def test_extension_reports_its_build_and_blas_works():
    info = ext.build_info()
    assert set(info) == {"openmp", "debug"}
    assert collect_info()["extension"]["built"]
    for dt in (np.float32, np.float64):
        x = np.arange(1, 8, dtype=dt)
        assert ext.blas_dot(x, x[::-1].copy()) == pytest.approx(float(x @ x[::-1]))
    with pytest.raises(ValueError, match="y must have length 7"):
        ext.blas_dot(x, x[:3].copy())


@needs_ext
def test_set_num_threads_reaches_openmp():
    if not ext.build_info()["openmp"]:
        pytest.skip("built without OpenMP")
    old = fastlstm.get_num_threads()
    try:
        fastlstm.set_num_threads(1)
        assert ext.threads_used() == 1
        fastlstm.set_num_threads(2)
        assert ext.get_max_threads() == 2 and ext.threads_used() == 2
    finally:
        fastlstm.set_num_threads(old)


BLOCK_EXTENSION = """
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.startswith("fastlstm._cy."):
            raise ImportError("blocked by the test: pretend it was never compiled")
sys.meta_path.insert(0, Block())
"""


def test_without_the_extension_everything_still_works():
    code = BLOCK_EXTENSION + """
import numpy as np, fastlstm
from fastlstm.info import collect_info
info = collect_info()
assert not info["extension"]["built"], info
assert "not built" in info["extension"]["reason"]
assert "cython" not in fastlstm.available_backends()
assert fastlstm.set_num_threads(1) == 1 and fastlstm.get_num_threads() == 1
m = fastlstm.LSTM(3, 4, seed=0)
ref = fastlstm.LSTM(3, 4, backend="numpy", seed=0)
x = np.random.default_rng(0).standard_normal((2, 1, 3)).astype(np.float32)
y, _ = m(x)
assert m.backend_used in ("numba", "numpy"), m.backend_used
y_ref, _ = ref(x)
np.testing.assert_allclose(y, y_ref, rtol=1e-4, atol=1e-4)
dy = np.random.default_rng(1).standard_normal(y.shape).astype(np.float32)
np.testing.assert_allclose(m.backward(dy)[0], ref.backward(dy)[0], rtol=1e-4, atol=1e-4)
from fastlstm.cli import main
assert main(["info"]) == 0
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "compiled extension: not built" in out.stdout


def _copy_source(dest):
    for name in ("setup.py", "pyproject.toml", "README.md", "MANIFEST.in"):
        shutil.copy(ROOT / name, dest / name)
    # build outputs stay behind (Cython's generated C is in build/, never in these folders;
    # src_cython/variants/*.c are sources)
    ignore = shutil.ignore_patterns("*.so", "__pycache__")
    for name in ("fastlstm", "src_cython"):
        shutil.copytree(ROOT / name, dest / name, ignore=ignore)


def install_copy(tmp_path, env, check=True):
    """pip-install a copy of this checkout into tmp_path/site with extra environment
    variables (build switches); returns the target folder (and the pip result)."""
    src, target = tmp_path / "src", tmp_path / "site"
    src.mkdir()
    _copy_source(src)
    result = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-build-isolation", "--no-deps", "-v",
         "--target", str(target), str(src)],
        capture_output=True, text=True, env={**os.environ, **env}, timeout=600)
    if check:
        assert result.returncode == 0, result.stderr[-3000:]
        return target
    return target, result


@pytest.mark.skipif(importlib.util.find_spec("Cython") is None, reason="needs Cython")
@pytest.mark.parametrize("env,warning", [
    ({"CC": "false"}, "Could not compile fastlstm._cy."),  # no working C compiler
    ({"FASTLSTM_NO_EXTENSION": "1"}, "FASTLSTM_NO_EXTENSION is set"),
])
def test_install_without_a_compiler_falls_back_loudly(tmp_path, env, warning):
    target, result = install_copy(tmp_path, env, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    log = result.stdout + result.stderr
    assert "fastlstm build WARNING" in log and warning in log
    assert not list(target.glob("fastlstm/_cy/*.so"))
    # numba's cache goes to the per-user cache folder, here one of the test's own
    home = tmp_path / "home"
    env = {k: v for k, v in os.environ.items()
           if k not in ("FASTLSTM_NUMBA_CACHE_DIR", "NUMBA_CACHE_DIR")}
    env.update(PYTHONPATH=str(target), HOME=str(home), XDG_CACHE_HOME=str(home / ".cache"))
    check = subprocess.run(
        [sys.executable, "-c", "import fastlstm, numpy as np; print(fastlstm.__file__); "
         "print(fastlstm.available_backends()); "
         "print(fastlstm.LSTM(2, 3)(np.zeros((1, 1, 2), np.float32))[0].shape)"],
        capture_output=True, text=True, cwd=tmp_path, env=env)
    assert check.returncode == 0, check.stderr
    assert str(target) in check.stdout and "(1, 1, 3)" in check.stdout
    assert "'cython'" not in check.stdout  # the compiled backend is reported missing
    # the installed (not editable) package has every subpackage and its data: the CLI runs
    cli = subprocess.run([sys.executable, "-m", "fastlstm", "bench", "--quick", "--configs",
                          "seed", "--compare", "none", "--no-first-call"], capture_output=True,
                         text=True, cwd=tmp_path, env=env)
    assert cli.returncode == 0, cli.stderr
    assert "seed" in cli.stdout and "fastlstm[numpy]" in cli.stdout
    assert "fastlstm[numba]" in cli.stdout
    # the package never writes into its install folder: pip uninstall would leave it behind
    assert list(home.rglob("*.nbi")), "numba cached nothing in the per-user cache folder"
    assert not [p for p in target.rglob("*") if p.suffix in (".nbi", ".nbc")]
    data = subprocess.run([sys.executable, "-c", "from fastlstm.data import load_lynx; "
                           "print(len(load_lynx()[1]))"], capture_output=True, text=True,
                          cwd=tmp_path, env=env)
    assert data.stdout.strip() == "114", data.stderr
