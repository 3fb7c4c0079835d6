"""Every fast backend against the NumPy reference on one matrix, forward and every gradient.

dtype x (layers, directions) x batch_first x lengths x shapes (B=1, T=1, odd sizes,
I != H). Backends that are not registered or not available here show as skips.
"""
import itertools

import numpy as np
import pytest

import fastlstm
from fastlstm import backends
from conftest import TOL, random_problem

FAST = [name for name in backends.BACKENDS if name != "numpy"]
BACKEND_PARAMS = FAST or [pytest.param("none", marks=pytest.mark.skip(
    reason="no fast backend is registered yet"))]

SHAPES = [  # T, B, I, H
    (1, 1, 3, 5),
    (7, 1, 4, 3),
    (1, 5, 2, 7),
    (9, 3, 13, 6),
]
MATRIX = list(itertools.product(
    ["float32", "float64"], [(1, False), (2, False), (1, True), (2, True)], [False, True],
    [False, True], SHAPES))


def ragged_lengths(T, B):
    lengths = np.random.default_rng(T * 31 + B).integers(1, T + 1, size=B)
    lengths[0] = T
    return lengths


@pytest.mark.parametrize("backend", BACKEND_PARAMS)
@pytest.mark.parametrize("dtype,shape,batch_first,use_lengths,sizes", MATRIX)
def test_backend_matches_reference(backend, dtype, shape, batch_first, use_lengths, sizes):
    if backend not in fastlstm.available_backends():
        pytest.skip(f"backend {backend} unavailable: {backends.backend_status()[backend]}")
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
    tol = TOL[dtype]
    for key, ours in results[0].items():
        np.testing.assert_allclose(ours, results[1][key], rtol=tol, atol=tol, err_msg=key)
