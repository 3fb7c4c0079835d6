"""How the compiled kernels reach BLAS on first need (fastlstm/_blas.py): straight from
the OpenBLAS file scipy's wheel bundles (4 ms, nothing of scipy imported), pinned to one
thread, else through scipy.linalg.cython_blas; the two give the same bits."""
import subprocess
import sys

import pytest

from conftest import require_backend

TRAIN = """
import sys, hashlib
import numpy as np
import fastlstm
from fastlstm import _blas
if sys.argv[1] == "scipy":  # as where no bundled library is found
    _blas.bundled_openblas = lambda: None
fastlstm.set_num_threads(2)
m = fastlstm.LSTM(200, 64, num_layers=2, bidirectional=True, backend="cython", seed=4)
rng = np.random.default_rng(4)
x = rng.standard_normal((30, 12, 200)).astype(np.float32)  # 360 rows: hoisted forward
y, _ = m(x)
dx, _ = m.backward(rng.standard_normal(y.shape).astype(np.float32))
digest = hashlib.sha256()
for a in [y, dx, *m.grads.values()]:
    digest.update(np.ascontiguousarray(a).tobytes())
from threadpoolctl import threadpool_info
pinned = [lib["num_threads"] for lib in threadpool_info() if lib["filepath"] in _blas.PINNED]
print(digest.hexdigest(), "scipy.linalg" in sys.modules, pinned)
"""


def _train(path):
    run = subprocess.run([sys.executable, "-c", TRAIN, path], capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    digest, linalg, pinned = run.stdout.split(maxsplit=2)
    return digest, linalg == "True", pinned.strip()


@pytest.fixture(autouse=True)
def _needs():
    require_backend("cython")
    pytest.importorskip("threadpoolctl")


def _bundled_here():
    from fastlstm import _blas
    return _blas.bundled_openblas() is not None


def test_the_bundled_library_and_scipy_linalg_give_the_same_bits():
    if not _bundled_here():
        pytest.skip("scipy here bundles no OpenBLAS file of its own")
    direct, direct_linalg, direct_pinned = _train("bundled")
    through, through_linalg, _ = _train("scipy")
    assert direct == through
    assert not direct_linalg and through_linalg  # the direct way imports nothing of it
    assert direct_pinned == "[1]"  # scipy's copy at one thread, NumPy's left alone


def test_no_bundled_library_means_none(monkeypatch, tmp_path):
    from fastlstm import _blas
    monkeypatch.setattr(_blas, "_BUNDLED", (str(tmp_path / "nothing-*.so"),))
    assert _blas.bundled_openblas() is None


def test_scipy_linalg_loaded_later_shares_the_pinned_library():
    """A program that imports scipy.linalg after fastlstm loaded the library gets the same
    one (one copy in the process), and its own BLAS calls still work."""
    if not _bundled_here():
        pytest.skip("scipy here bundles no OpenBLAS file of its own")
    probe = """
import numpy as np
import fastlstm
from fastlstm.backends import cython_cpu
cython_cpu._blas()
import scipy.linalg.blas as b
a = np.arange(6, dtype=np.float32).reshape(2, 3)
np.testing.assert_allclose(b.sgemm(1.0, a, a.T), a @ a.T)
from threadpoolctl import threadpool_info
print(sum("libscipy_openblas-" in lib["filepath"] for lib in threadpool_info()))
"""
    run = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         timeout=120)
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.strip() == "1"
