"""Every fast backend against the NumPy reference on one matrix, forward and every gradient.

dtype x (layers, directions) x batch_first x lengths x shapes (B=1, T=1, odd sizes,
I != H), through the API; and the kernel contract itself, each backend's forward_layer
and backward_layer called directly. Backends not available here show as skips (in CI,
with CI=true, as failures).

The compiled backend runs once per kernel variant (instruction set): "cython" with the
one it chose (the best this CPU runs, or FASTLSTM_ISA's), "cython-<isa>" with each other
variant setup.py builds for this architecture. A variant this CPU cannot run is a skip,
even in CI; one the build should have but lacks fails in CI.
"""
import itertools
import os
import platform

import numpy as np
import pytest

import fastlstm
from fastlstm import backends
from fastlstm.backends import reference
from fastlstm.backends.contract import Tape
from fastlstm.backends.sequences import packed_sequences
from conftest import TOL, random_problem, require_backend

FAST = [name for name in backends.BACKENDS if name != "numpy"]
# The variants setup.py's VARIANTS builds per architecture, best first; the first is what
# plain "cython" runs on a CPU that has it.
BUILT_FOR = {"x86_64": ["avx512", "avx2", "baseline"], "aarch64": ["neon"]}
ARCH = {"amd64": "x86_64", "arm64": "aarch64"}.get(platform.machine().lower(),
                                                   platform.machine().lower())
ISAS = BUILT_FOR.get(ARCH, ["baseline"])
BACKENDS = FAST + [f"cython-{isa}" for isa in ISAS[1:] if "cython" in FAST]

SHAPES = [  # T, B, I, H
    (1, 1, 3, 5),
    (7, 1, 4, 3),
    (1, 5, 2, 7),
    (9, 3, 13, 6),
    (4, 13, 5, 20),  # two 6-row blocks and a partial one; a partial block of units
]
MATRIX = list(itertools.product(
    ["float32", "float64"], [(1, False), (2, False), (1, True), (2, True)], [False, True],
    [False, True], SHAPES))


def ragged_lengths(T, B):
    lengths = np.random.default_rng(T * 31 + B).integers(1, T + 1, size=B)
    lengths[0] = T
    return lengths


@pytest.fixture(params=BACKENDS)
def backend_isa(request):
    """(backend name, kernel variant in force: None for numba), for "numba", "cython"
    and "cython-<isa>"; the variant chosen before is back afterwards."""
    name, _, isa = request.param.partition("-")
    require_backend(name)
    if name != "cython":
        yield name, None
        return
    from fastlstm.backends import cython_cpu
    if not isa:
        yield name, cython_cpu.ISA
        return
    variant = cython_cpu.VARIANTS.get(isa)
    if variant is None:
        why = f"this {ARCH} build has no {isa} kernels (built: {', '.join(cython_cpu.VARIANTS)})"
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true: {why}", pytrace=False)
        pytest.skip(why)
    if not variant["runs_here"]:
        pytest.skip(f"this CPU cannot run the {isa} kernels")
    before = cython_cpu.ISA
    cython_cpu.select_isa(isa)
    try:
        yield name, isa
    finally:
        cython_cpu.select_isa(before)


@pytest.mark.parametrize("dtype,shape,batch_first,use_lengths,sizes", MATRIX)
def test_backend_matches_reference(backend_isa, dtype, shape, batch_first, use_lengths, sizes):
    backend, isa = backend_isa
    (layers, bidir), (T, B, I, H) = shape, sizes
    lengths = ragged_lengths(T, B) if use_lengths else None
    kwargs = dict(num_layers=layers, bidirectional=bidir, batch_first=batch_first, dtype=dtype)
    fast = fastlstm.LSTM(I, H, backend=backend, seed=3, **kwargs)
    ref = fastlstm.LSTM(I, H, backend="numpy", **kwargs)
    ref.load_state_dict(fast.state_dict())
    x, hx, weights = random_problem(fast, T, B, seed=4, with_hx=True, lengths=lengths)

    results = []
    for m in (fast, ref):
        y, (h, c) = m(x, hx, lengths)
        dx, (dh0, dc0) = m.backward(*weights)
        y_eval, (h_eval, _) = m.eval()(x, hx, lengths)
        m.train()
        results.append(dict(y=y, h=h, c=c, dx=dx, dh0=dh0, dc0=dc0, y_eval=y_eval,
                            h_eval=h_eval, **{f"grad {k}": v for k, v in m.grads.items()}))
    assert fast.backend_used == backend
    if isa:  # every layer-direction was packed for, and so ran, the variant under test
        assert {p.isa for p in fast._w._packed.values()} == {isa}
    tol = TOL[dtype]
    for key, ours in results[0].items():
        np.testing.assert_allclose(ours, results[1][key], rtol=tol, atol=tol, err_msg=key)


def run_contract(kernel, seq, inputs, dy, dh_n, dc_n):
    """forward_layer (training and inference) and backward_layer of one kernel module on
    NaN-filled outputs: everything the contract says it writes must be written."""
    x, w_ih, w_hh, b, h0, c0 = inputs
    T, B, I = x.shape
    H = w_hh.shape[1]

    def out(*shape):
        return np.full(shape, np.nan, x.dtype)
    y, h_n, c_n, tape = out(T, B, H), out(B, H), out(B, H), Tape.empty(T, B, H, x.dtype)
    kernel.forward_layer(x, w_ih, w_hh, b, h0, c0, seq, y, h_n, c_n, tape)
    y_eval, h_eval, c_eval = out(T, B, H), out(B, H), out(B, H)
    kernel.forward_layer(x, w_ih, w_hh, b, h0, c0, seq, y_eval, h_eval, c_eval, None)
    grads = [out(T, B, I), out(4 * H, I), out(4 * H, H), out(4 * H), out(B, H), out(B, H)]
    kernel.backward_layer(tape, x, w_ih, w_hh, dy, dh_n, dc_n, seq, *grads)
    return dict(zip(["y", "h_n", "c_n", "y_eval", "h_eval", "c_eval",
                     "dx", "dw_ih", "dw_hh", "db", "dh0", "dc0"],
                    [y, h_n, c_n, y_eval, h_eval, c_eval, *grads]))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("T,B,I,H,lengths", [
    (1, 1, 3, 5, None),
    (6, 4, 5, 7, [6, 2, 6, 1]),
    (5, 3, 4, 16, [5, 5, 5]),         # every length T: the dense layout
    (8, 5, 3, 33, [3, 8, 1, 8, 5]),
    (4, 13, 5, 20, [4, 1, 3, 4, 2, 4, 4, 1, 3, 2, 4, 4, 3]),  # partial row and unit blocks
])
def test_kernel_contract_called_directly(backend_isa, dtype, T, B, I, H, lengths):
    """One PackedSequences for forward, inference and backward, as the API passes it; dy
    past a length is ignored (not masked here), y and dx are 0 there."""
    backend, isa = backend_isa
    rng = np.random.default_rng(T * 100 + H)
    seq = packed_sequences(T, B, lengths)
    inputs = [rng.standard_normal(s).astype(dtype) for s in
              [(T, B, I), (4 * H, I), (4 * H, H), (4 * H,), (B, H), (B, H)]]
    dy, dh_n, dc_n = (rng.standard_normal(s).astype(dtype) for s in [(T, B, H), (B, H), (B, H)])
    kernel = backends.load(backend)
    if isa:  # forward_layer packs the weights itself: for the variant under test
        assert kernel.Packed(*inputs[1:4]).isa == isa
    ours = run_contract(kernel, seq, inputs, dy, dh_n, dc_n)
    theirs = run_contract(reference, seq, inputs, dy, dh_n, dc_n)
    tol = TOL[dtype]
    for key, want in theirs.items():
        np.testing.assert_allclose(ours[key], want, rtol=tol, atol=tol, err_msg=key)
    if lengths is not None:
        for b, n in enumerate(lengths):
            assert not ours["y"][n:, b].any() and not ours["dx"][n:, b].any()
