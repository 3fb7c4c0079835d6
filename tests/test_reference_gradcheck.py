"""The reference's backward proven by central finite differences in float64.

loss = sum(dy * y) + sum(dh_n * h_n) + sum(dc_n * c_n) with random weights, so
backward(dy, dh_n, dc_n) must equal d loss / d (x, h0, c0, every parameter).
"""
import numpy as np
import pytest

import fastlstm
from conftest import random_problem

EPS = 1e-6
REL_TOL = 1e-6


def loss_of(model, x, hx, lengths, weights):
    dy, dh_n, dc_n = weights
    model._dropout_rng = np.random.default_rng(123)  # same dropout mask every evaluation
    model._weights_changed()  # the test edits parameters in place: rebuild what derives from them
    y, (h, c) = model(x, hx, lengths)
    return np.sum(y * dy) + np.sum(h * dh_n) + np.sum(c * dc_n)


def numeric_grad(f, arr):
    """Central differences of scalar f() with respect to every entry of arr (in place)."""
    grad = np.zeros_like(arr)
    flat, gflat = arr.reshape(-1), grad.reshape(-1)
    for i in range(flat.size):
        old = flat[i]
        flat[i] = old + EPS
        up = f()
        flat[i] = old - EPS
        down = f()
        flat[i] = old
        gflat[i] = (up - down) / (2 * EPS)
    return grad


def rel_error(a, b):
    return np.max(np.abs(a - b)) / max(np.max(np.abs(a)), np.max(np.abs(b)), 1e-12)


CASES = [
    # layers, bidirectional, lengths, with_hx, dropout, bias, batch_first
    (1, False, None, False, 0.0, True, False),
    (1, False, None, True, 0.0, False, True),
    (2, False, [5, 2, 4], True, 0.0, True, False),
    (1, True, None, True, 0.0, True, True),
    (2, True, [3, 5, 1], True, 0.0, True, False),
    (2, True, [4, 5, 2], False, 0.3, True, True),
    (3, False, None, False, 0.5, True, False),
]


@pytest.mark.parametrize("layers,bidir,lengths,with_hx,dropout,bias,batch_first", CASES)
def test_every_gradient_matches_finite_differences(layers, bidir, lengths, with_hx, dropout,
                                                   bias, batch_first):
    T, B = 5, 3
    m = fastlstm.LSTM(3, 4, num_layers=layers, bidirectional=bidir, dropout=dropout, bias=bias,
                      batch_first=batch_first, dtype="float64", backend="numpy", seed=1)
    x, hx, weights = random_problem(m, T, B, seed=2, with_hx=with_hx, lengths=lengths)
    loss_of(m, x, hx, lengths, weights)
    dx, (dh0, dc0) = m.backward(*weights)

    f = lambda: loss_of(m, x, hx, lengths, weights)  # noqa: E731
    assert rel_error(dx, numeric_grad(f, x)) < REL_TOL
    if with_hx:
        assert rel_error(dh0, numeric_grad(f, hx[0])) < REL_TOL
        assert rel_error(dc0, numeric_grad(f, hx[1])) < REL_TOL
    analytic = m.grads
    for name, p in m._params.items():
        assert rel_error(analytic[name], numeric_grad(f, p)) < REL_TOL, name


def test_unbatched_gradients_match_finite_differences():
    m = fastlstm.LSTM(2, 3, num_layers=2, dtype="float64", backend="numpy", seed=3)
    x, hx, weights = random_problem(m, 4, 1, seed=4, with_hx=True, unbatched=True)
    loss_of(m, x, hx, None, weights)
    dx, (dh0, dc0) = m.backward(*weights)
    f = lambda: loss_of(m, x, hx, None, weights)  # noqa: E731
    assert dx.shape == x.shape and dh0.shape == hx[0].shape
    assert rel_error(dx, numeric_grad(f, x)) < REL_TOL
    assert rel_error(dh0, numeric_grad(f, hx[0])) < REL_TOL
    assert rel_error(dc0, numeric_grad(f, hx[1])) < REL_TOL
