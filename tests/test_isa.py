"""The compiled kernels' instruction-set variants: which one is chosen, forcing one with
FASTLSTM_ISA (and a clear error for one that cannot run, never a quiet fallback), what
`fastlstm info` says, and weights packed for one variant after another was selected.

Parity of every variant with the NumPy reference is in test_backend_parity.py.
"""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from conftest import TOL, require_backend

import fastlstm

# numpy's own run-time CPU detection (cpuid and the OS's register saving): a check of
# fl_cpu_supports that does not share its code. Its names per variant, as setup.py
# compiles them.
NUMPY_FEATURES = {"avx512": ["AVX512F", "AVX512DQ", "AVX512BW", "AVX512VL", "AVX2", "FMA3"],
                  "avx2": ["AVX2", "FMA3"], "baseline": [], "neon": []}


@pytest.fixture
def cy():
    require_backend("cython")
    from fastlstm.backends import cython_cpu
    before = cython_cpu.ISA
    yield cython_cpu
    cython_cpu.select_isa(before)


def run_python(args, isa, cwd):
    """`python args` in a fresh process with FASTLSTM_ISA=isa, from a folder that is not
    the checkout (the installed fastlstm is the one imported)."""
    env = {**os.environ, "FASTLSTM_ISA": isa}
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, env=env,
                          cwd=cwd, timeout=120)


def test_default_is_the_best_variant_this_cpu_runs(cy):
    runnable = cy.runnable_isas()
    assert runnable == [n for n in cy.VARIANTS if cy.VARIANTS[n]["runs_here"]] and runnable
    forced = os.environ.get("FASTLSTM_ISA")
    assert cy.FORCED == forced
    assert cy.select_isa() == runnable[0] == cy.ISA
    cy.select_isa(cy.FORCED)  # the suite may run with one forced: report what is in force
    isa = fastlstm.show_config(mode="dicts")["extension"]["isa"]
    assert isa == {"chosen": forced or runnable[0], "forced": forced, "error": None,
                   "available": runnable, "built": list(cy.VARIANTS)}


def test_cpu_detection_agrees_with_numpys(cy):
    try:
        from numpy._core._multiarray_umath import __cpu_features__
    except ImportError:
        pytest.skip("this NumPy does not expose its CPU features")
    for name, variant in cy.VARIANTS.items():
        expected = all(__cpu_features__.get(f) for f in NUMPY_FEATURES[name])
        assert variant["runs_here"] == expected, name
    assert {v["vector_bytes"] for v in cy.VARIANTS.values()} <= {16, 32, 64}


def test_select_isa_refuses_what_cannot_run(cy):
    before = cy.ISA
    missing = "neon" if "neon" not in cy.VARIANTS else "avx512"
    runnable = ", ".join(cy.runnable_isas())
    with pytest.raises(ValueError, match=f"this build has no '{missing}' kernels .*"
                                         f"it can run: {runnable}$"):
        cy.select_isa(missing)
    for name in (n for n, v in cy.VARIANTS.items() if not v["runs_here"]):
        with pytest.raises(ValueError, match=f"this CPU cannot run the {name} kernels"):
            cy.select_isa(name)
    assert cy.ISA == before  # a refused name changes nothing


def test_weights_packed_before_a_switch_keep_their_variant(cy):
    runnable = cy.runnable_isas()
    if len(runnable) < 2:
        pytest.skip(f"this CPU runs one variant only ({runnable[0]})")
    first, other = runnable[0], runnable[-1]
    assert cy.VARIANTS[first]["vector_bytes"] != cy.VARIANTS[other]["vector_bytes"]
    cy.select_isa(first)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((6, 13, 5)).astype(np.float32)
    dy = rng.standard_normal((6, 13, 20)).astype(np.float32)
    before = fastlstm.LSTM(5, 20, num_layers=2, backend="cython", seed=1)
    y0 = before(x)[0]
    dx0 = before.backward(dy)[0]
    grads0 = {k: v.copy() for k, v in before.grads.items()}
    packed = fastlstm.LSTM(5, 20, num_layers=2, backend="cython", seed=1)
    packed.eval()(x)  # packed now; backward's own layout is not built yet
    packed.train()

    cy.select_isa(other)
    after = fastlstm.LSTM(5, 20, num_layers=2, backend="cython", seed=1)
    y_other = after(x)[0]
    y1 = packed(x)[0]
    dx1 = packed.backward(dy)[0]  # backward's layout, built now, is for `first` too
    assert {p.isa for p in packed._w._packed.values()} == {first}
    assert {p.isa for p in after._w._packed.values()} == {other}
    np.testing.assert_array_equal(y1, y0)
    np.testing.assert_allclose(dx1, dx0, rtol=1e-6, atol=1e-6)
    for k, g in grads0.items():
        np.testing.assert_allclose(packed.grads[k], g, rtol=1e-6, atol=1e-6, err_msg=k)
    tol = TOL["float32"]
    np.testing.assert_allclose(y_other, y0, rtol=tol, atol=tol)


_FORWARD = """
import json, sys
import numpy as np
import fastlstm
x = np.random.default_rng(2).standard_normal((5, 13, 5)).astype(np.float32)
m = fastlstm.LSTM(5, 20, bidirectional=True, seed=3)
ref = fastlstm.LSTM(5, 20, bidirectional=True, backend="numpy")
ref.load_state_dict(m.state_dict())
y, (h, c) = m(x)
y_ref, (h_ref, c_ref) = ref(x)
err = max(float(np.abs(a - b).max()) for a, b in ((y, y_ref), (h, h_ref), (c, c_ref)))
print(json.dumps({"backend": m.backend_used, "err": err,
                  "packed": sorted({p.isa for p in m._w._packed.values()})}))
"""


def test_forced_variant_runs_and_info_says_so(cy, tmp_path):
    lowest = cy.runnable_isas()[-1]  # baseline on x86-64
    run = run_python(["-c", _FORWARD], lowest, tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    out = json.loads(run.stdout.splitlines()[-1])
    assert out["backend"] == "cython" and out["packed"] == [lowest]
    assert out["err"] < TOL["float32"]
    info = run_python(["-m", "fastlstm", "info"], lowest.upper(), tmp_path)
    assert info.returncode == 0, info.stderr[-3000:]
    available = ", ".join(cy.runnable_isas())
    assert (f"isa: {lowest}, forced by FASTLSTM_ISA={lowest} (available here: {available})"
            in info.stdout.splitlines())


_BOGUS = """
import json, sys
import numpy as np
import fastlstm
m = fastlstm.LSTM(3, 4)  # backend="auto"
errors = []
for _ in range(2):  # the second call must not have fallen back either
    try:
        m(np.ones((2, 1, 3), np.float32))
        errors.append("ran on " + m.backend_used)
    except ValueError as exc:
        errors.append(str(exc))
print(json.dumps({"errors": errors, "numba_imported": "numba" in sys.modules}))
"""


def test_a_variant_that_cannot_run_is_an_error_not_a_fallback(cy, tmp_path):
    available = ", ".join(cy.runnable_isas())
    run = run_python(["-c", _BOGUS], "bogus", tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    out = json.loads(run.stdout.splitlines()[-1])
    for error in out["errors"]:
        assert error.startswith("FASTLSTM_ISA=bogus: this build has no 'bogus' kernels")
        assert f"it can run: {available}." in error and "Unset FASTLSTM_ISA" in error
    assert not out["numba_imported"]
    info = run_python(["-m", "fastlstm", "info"], "bogus", tmp_path)
    assert info.returncode == 0, info.stderr[-3000:]
    (line,) = [x for x in info.stdout.splitlines() if x.startswith("isa:")]
    assert line.startswith("isa: none usable: FASTLSTM_ISA=bogus: this build has no 'bogus'")
    assert line.endswith(f"(available here: {available})")
    (cython,) = [x for x in info.stdout.splitlines() if x.strip().startswith("cython ")]
    assert "unavailable: every call raises: FASTLSTM_ISA=bogus" in cython
