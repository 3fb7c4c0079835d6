"""What only the compiled backend has: its two work splits, thread counts, concurrent
Python threads, fork, denormal flushing, and a bounds-checked build. (Its thread pool's
promises, results independent of the team and no wait for a late helper, are in
test_thread_pool.py.)"""
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import fastlstm
from conftest import (assert_backend_matches_reference, flushed_cell_state,
                      output_in_forked_child, require_backend, run_in_threads)


@pytest.fixture(autouse=True)
def _cython_available():
    require_backend("cython")


ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def cy():
    from fastlstm.backends import cython_cpu
    saved = fastlstm.get_num_threads()
    isa = cython_cpu.ISA
    yield cython_cpu
    cython_cpu.FORCE_PATH = cython_cpu.FORCE_HOIST = None
    cython_cpu.select_isa(isa)
    fastlstm.set_num_threads(saved)


def compare_with_reference(*args, **kwargs):
    assert_backend_matches_reference("cython", *args, **kwargs)


@pytest.mark.parametrize("path", ["steps", "rows"])
@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("T,B,H", [(1, 1, 20), (6, 1, 33), (5, 13, 40), (7, 9, 16)])
def test_both_paths_on_one_and_two_threads(cy, path, threads, dtype, T, B, H):
    cy.FORCE_PATH = path
    fastlstm.set_num_threads(threads)
    lengths = None if B == 1 else np.random.default_rng(B).integers(1, T + 1, B)
    compare_with_reference(dtype, T, B, 7, H, layers=2, bidir=True, lengths=lengths)


def _runnable():
    from fastlstm.backends import cython_cpu
    return cython_cpu.runnable_isas()


@pytest.mark.parametrize("isa", _runnable())
@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("T,B,I,H,lengths", [(1, 1, 3, 20, None), (6, 7, 9, 33, [6, 2, 5, 6, 1, 3, 4]),
                                             (4, 13, 5, 40, None), (40, 7, 5, 33, None)])
def test_hoisted_input_matches_the_reference(cy, isa, threads, dtype, T, B, I, H, lengths):
    """The forward with x W_ih^T as one GEMM before the loop (what large inputs run),
    forced on small shapes: every variant, 1 and 2 threads, lengths, two layers both ways;
    the GEMM split by columns (fewer than 256 rows) and by rows (40 x 7)."""
    cy.select_isa(isa)
    cy.FORCE_HOIST = True
    fastlstm.set_num_threads(threads)
    compare_with_reference(dtype, T, B, I, H, layers=2, bidir=True, lengths=lengths)


def test_large_inputs_hoist_their_projection(cy):
    # the large config: M = 64 x 50 rows of I = 512 inputs
    for isa in ("avx512", "avx2", "baseline"):
        assert cy.hoists_input(isa, 3200, 512, 512)
    assert not cy.hoists_input("avx2", 1600, 64, 256)  # mid: I = 64
    # one sequence: too few rows for two threads, whose halves of the weights stay in
    # their own caches; one thread alone streams W_ih and W_hh (2 MB) every step unless
    # W_ih goes into one GEMM first
    assert not cy.hoists_input("avx2", 100, 256, 256, threads=2)
    assert cy.hoists_input("avx2", 100, 256, 256, threads=1)
    assert not cy.hoists_input("avx2", 100, 128, 128, threads=1)  # 512 KB: they fit
    assert cy.hoists_input("avx2", 100, 256, 256, threads=1, itemsize=8)


def test_plan_picks_the_split_by_shape(cy):
    fastlstm.set_num_threads(2)
    rows, steps = cy._k.MODE_ROWS, cy._k.MODE_STEPS
    for isa in cy.runnable_isas():
        # one row: hidden units are split, a phase per step
        assert cy.plan(100, 1, 32, 128, isa, 4) == (2, steps)
        # a batch of a small model (the seed model): chunks of rows, no wait per step
        assert cy.plan(10, 32, 50, 50, isa, 4) == (2, rows)
        # a batch with weights too big for a core's cache each: hidden units again
        assert cy.plan(100, 16, 64, 256, isa, 4) == (2, steps)
        assert cy.plan(1, 1, 32, 128, isa, 4)[0] == 1   # one small step: a helper costs more
        assert cy.plan(100, 1, 1, 8, isa, 4)[0] == 1    # too little work per step for two
        assert cy.plan(3, 7, 1, 8, isa, 4)[0] == 1      # too little work in the whole call
        # small batches of small models: two threads meeting every step lost to one
        assert cy.plan(100, 4, 32, 32, isa, 4)[0] == 1
        assert cy.plan(100, 2, 48, 48, isa, 4)[0] == 1
        assert cy.plan(10, 4, 1, 50, isa, 4)[0] == 1    # the seed-fit's last batch of 4
        assert cy.plan(100, 1, 96, 96, isa, 4) == (2, steps)
    fastlstm.set_num_threads(1)
    assert cy.plan(10, 32, 50, 50, cy.ISA, 4) == (1, rows)  # the split is the shape's alone


def test_thread_count_changes_between_calls(cy):
    m = fastlstm.LSTM(5, 48, num_layers=2, backend="cython", seed=1)
    x = np.random.default_rng(2).standard_normal((9, 4, 5)).astype(np.float32)
    results = []
    for n in (1, 2, 1, 2):
        fastlstm.set_num_threads(n)
        results.append(m.eval()(x)[0])
    for r in results[1:]:
        np.testing.assert_array_equal(r, results[0])  # the team never changes a bit


def test_concurrent_python_threads_get_their_own_results(cy):
    models = [fastlstm.LSTM(6, 24 + 8 * i, backend="cython", seed=i).eval() for i in range(4)]
    rng = np.random.default_rng(0)
    inputs = [rng.standard_normal((12, 3, 6)).astype(np.float32) for _ in models]
    assert run_in_threads(models, inputs, 30, np.array_equal) == []


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_works_in_a_forked_child(cy):
    fastlstm.set_num_threads(2)
    x = np.ones((20, 4, 8), np.float32)
    expected = fastlstm.LSTM(8, 64, backend="cython", seed=3).eval()(x)[0]  # team exists now
    np.testing.assert_array_equal(output_in_forked_child("cython", x, timeout=60), expected)


@pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64"), reason="x86 MXCSR only")
def test_denormals_are_flushed_inside_and_only_inside():
    c, hx = flushed_cell_state("cython", T=1, B=1)
    ref = fastlstm.LSTM(1, 16, backend="numpy", seed=0).eval()
    ref.load_state_dict({k: np.zeros_like(v) for k, v in ref.state_dict().items()})
    _, (_, c_ref) = ref(np.zeros((1, 1, 1), np.float32), hx)
    assert np.all(c_ref != 0) and np.all(np.abs(c_ref) < 1e-38)  # NumPy keeps subnormals
    assert np.all(c == 0)                                        # the kernel flushed them


def test_bad_internal_arguments_raise_instead_of_crashing(cy):
    from fastlstm._cy import lstm_cpu
    from fastlstm.backends.sequences import packed_sequences
    f32 = np.float32
    rng = np.random.default_rng(0)
    w_ih = rng.standard_normal((32, 3)).astype(f32)
    w_hh = rng.standard_normal((32, 8)).astype(f32)
    packed = cy.pack_weights(w_ih, w_hh, np.zeros(32, f32))
    dense, ragged = packed_sequences(4, 2), packed_sequences(4, 2, [4, 2])
    ws = cy._workspace(np.dtype(f32), 4, 2, 3, 8, 8, False)
    x, h = np.zeros((4, 2, 3), f32), np.zeros((2, 8), f32)
    y = np.zeros((4, 2, 8), f32)
    h_n, c_n = np.full((2, 8), np.nan, f32), np.full((2, 8), np.nan, f32)
    lstm_cpu.forward(x, h, h, dense, y, h_n, c_n, None, None, None, packed.k, ws, 1, 1)
    np.testing.assert_array_equal(h_n, y[-1])  # everything fits: it ran and wrote its outputs
    assert np.isfinite(c_n).all()
    with pytest.raises(ValueError, match="buffer shapes"):
        lstm_cpu.forward(x, h, h, dense, np.zeros((4, 2, 7), f32), h, h, None, None, None,
                         packed.k, ws, 1, 1)
    with pytest.raises(ValueError, match="workspace was made for another"):
        lstm_cpu.forward(x, h, h, dense, y, h, h, None, None, None, packed.k,
                         cy._workspace(np.dtype(f32), 5, 2, 3, 8, 10, False), 1, 1)
    with pytest.raises(ValueError, match="workspace was made for another"):  # no xp rows
        lstm_cpu.forward(x, h, h, ragged, y, h, h, None, None, None, packed.k, ws, 1, 1)
    with pytest.raises(ValueError, match="packed sequences are for T=5"):
        lstm_cpu.forward(x, h, h, packed_sequences(5, 2), y, h, h, None, None, None,
                         packed.k, ws, 1, 1)
    with pytest.raises(ValueError, match="tape shapes"):
        lstm_cpu.forward(x, h, h, dense, y, h, h, np.zeros((4, 2, 31), f32), y, y, packed.k,
                         ws, 1, 1)
    with pytest.raises(ValueError, match="wfi must be a C-contiguous float array"):
        lstm_cpu.PackedWeights(packed.k.w_ih, packed.k.wfi[:-1], packed.k.wf, packed.k.bf, 8,
                               packed.isa)
    with pytest.raises(ValueError, match="no 'sse9' kernels in this build"):
        lstm_cpu.PackedWeights(packed.k.w_ih, packed.k.wfi, packed.k.wf, packed.k.bf, 8, "sse9")


@pytest.mark.skipif(shutil.which("cc") is None and shutil.which("gcc") is None,
                    reason="needs a C compiler")
@pytest.mark.parametrize("switch,flag,value", [
    ("FASTLSTM_DEBUG", "debug", True),      # Cython bounds checks + the kernels' own checks
    ("FASTLSTM_NO_OPENMP", "openmp", False),  # what a compiler without OpenMP builds
])
def test_other_builds_pass_the_parity_matrix(tmp_path, switch, flag, value):
    from test_build import install_copy
    target = install_copy(tmp_path, {switch: "1"})
    env = {**os.environ, "PYTHONPATH": str(target)}
    probe = subprocess.run(
        [sys.executable, "-c", "import fastlstm, fastlstm._cy.buildinfo as b; "
         f"print(fastlstm.__file__, b.build_info()[{flag!r}], fastlstm.available_backends())"],
        capture_output=True, text=True, cwd=tmp_path, env=env)
    assert str(target) in probe.stdout and str(value) in probe.stdout, probe.stderr
    assert "cython" in probe.stdout
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
         str(ROOT / "tests" / "test_backend_parity.py"), str(Path(__file__)),
         "-k", "cython and not other_builds"],
        capture_output=True, text=True, cwd=tmp_path, env=env, timeout=900)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    assert " passed" in run.stdout


def test_info_reports_the_pinned_blas(cy):
    from fastlstm import _blas
    from fastlstm.info import collect_info
    if not _blas.PINNED:
        pytest.skip("scipy shares its BLAS here: it is pinned per call, not for good")
    pinned = [lib for lib in collect_info()["blas"] if "use" in lib]
    assert pinned and all(lib["num_threads"] == 1 for lib in pinned)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("H,K", [(1, 1), (7, 3), (33, 50), (16, 2)])
@pytest.mark.parametrize("vl,gp", [(2, 1), (4, 2), (8, 4), (16, 4)])
def test_gate_block_packing_is_the_documented_layout(cy, dtype, H, K, vl, gp):
    """lstm_cpu.h: out[u][p][k][j][l] = w[(p gp + j) H + u vl + l][k], 0 past H, every
    item written (the buffer starts as NaN)."""
    w = np.random.default_rng(H * K).standard_normal((4 * H, K)).astype(dtype)
    nub = -(-H // vl)
    out = np.full(nub * 4 * K * vl, np.nan, dtype)
    cy._k.pack_gate_blocks(w, out, H, vl, gp)
    expected = np.zeros((nub, 4 // gp, K, gp, vl), dtype)
    for u in range(nub):
        for p in range(4 // gp):
            for j in range(gp):
                units = np.arange(u * vl, min(H, (u + 1) * vl))
                expected[u, p, :, j, :len(units)] = w[(p * gp + j) * H + units, :].T
    np.testing.assert_array_equal(out, expected.ravel())
