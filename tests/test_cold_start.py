"""A fresh process's first result: inference on the compiled backend's fused path loads
no BLAS (scipy.linalg: 0.12-0.2 s of imports), even after set_num_threads; the first call
that needs BLAS (a backward, or a forward that hoists its input projection) loads and pins
it then (tests/test_blas_loading.py: how)."""
import subprocess
import sys

from conftest import require_backend

PROBE = """
import sys
import numpy as np
import fastlstm
fastlstm.set_num_threads(fastlstm.get_num_threads())  # as a benchmark or server would
m = fastlstm.LSTM(32, 128, backend="cython")
m.eval()(np.zeros((100, 1, 32), np.float32))
m.step(np.zeros(32, np.float32))
print("after inference:", "scipy.linalg" in sys.modules)
m.train()
y, _ = m(np.ones((5, 2, 32), np.float32))
dx, _ = m.backward(np.ones_like(y))
from fastlstm import _blas
from fastlstm.backends import cython_cpu
print("after backward:", cython_cpu._blas_ready, bool(np.isfinite(dx).all()),
      len(_blas.PINNED) > 0 or "no pin")
"""


def test_inference_loads_no_blas_and_training_loads_it_when_needed():
    require_backend("cython")
    run = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True,
                         timeout=120)
    assert run.returncode == 0, run.stderr
    lines = run.stdout.strip().splitlines()
    assert lines[0] == "after inference: False", run.stdout
    assert lines[1].startswith("after backward: True True"), run.stdout
