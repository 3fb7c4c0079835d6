"""The reference's backward proven by central finite differences in float64.

loss = sum(dy * y) + sum(dh_n * h_n) + sum(dc_n * c_n) with random weights, so
backward(dy, dh_n, dc_n) must equal d loss / d (x, h0, c0, every parameter).
Weights are nudged through the public update_weights(), so the check also proves
that an in-place update reaches the next forward.
"""
import numpy as np
import pytest

import fastlstm
from conftest import random_problem

EPS = 1e-6
REL_TOL = 1e-6


def loss_of(model, x, hx, lengths, weights):
    dy, dh_n, dc_n = weights
    # the same dropout masks in every evaluation: no public knob reseeds them mid-life
    model._dropout_rng = np.random.default_rng(123)
    y, (h, c) = model(x, hx, lengths)
    return np.sum(y * dy) + np.sum(h * dh_n) + np.sum(c * dc_n)


def central_differences(f, size, get, put):
    """(f(v_i + EPS) - f(v_i - EPS)) / 2 EPS for every entry i < size, where get(i) reads
    entry i and put(i, value) writes it; every entry is put back afterwards."""
    grad = np.zeros(size)
    for i in range(size):
        old = get(i)
        put(i, old + EPS)
        up = f()
        put(i, old - EPS)
        down = f()
        put(i, old)
        grad[i] = (up - down) / (2 * EPS)
    return grad


def array_grad(f, arr):
    """Central differences of f() in every entry of arr, edited in place."""
    flat = arr.reshape(-1)

    def put(i, value):
        flat[i] = value
    return central_differences(f, flat.size, flat.__getitem__, put).reshape(arr.shape)


def weight_grads(f, model):
    """{name: central differences of f() in that parameter}, each weight nudged with
    model.update_weights()."""
    def put(i, value):
        with model.update_weights() as w:
            w.flat[i] = value
    flat = central_differences(f, model.flat_weights.size, model.flat_weights.__getitem__,
                               put)
    out, start = {}, 0
    for name, p in model.state_dict().items():  # flat_weights is state_dict's order
        out[name] = flat[start:start + p.size].reshape(p.shape)
        start += p.size
    assert start == flat.size
    return out


def assert_gradient(analytic, numeric, what):
    """analytic equals numeric, and they are not all zero (a forward that ignored the
    variable would match a backward that returned zeros)."""
    assert np.max(np.abs(numeric)) > 1e-6, f"{what}: the loss does not depend on it"
    scale = max(np.max(np.abs(analytic)), np.max(np.abs(numeric)))
    err = np.max(np.abs(analytic - numeric)) / scale
    assert err < REL_TOL, f"{what}: relative error {err:.2e}"


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
    analytic = {name: g.copy() for name, g in m.grads.items()}

    f = lambda: loss_of(m, x, hx, lengths, weights)  # noqa: E731
    assert_gradient(dx, array_grad(f, x), "dx")
    if with_hx:
        assert_gradient(dh0, array_grad(f, hx[0]), "dh0")
        assert_gradient(dc0, array_grad(f, hx[1]), "dc0")
    numeric = weight_grads(f, m)
    assert analytic.keys() == numeric.keys()
    for name in numeric:
        assert_gradient(analytic[name], numeric[name], name)


def test_unbatched_gradients_match_finite_differences():
    m = fastlstm.LSTM(2, 3, num_layers=2, dtype="float64", backend="numpy", seed=3)
    x, hx, weights = random_problem(m, 4, 1, seed=4, with_hx=True, unbatched=True)
    loss_of(m, x, hx, None, weights)
    dx, (dh0, dc0) = m.backward(*weights)
    f = lambda: loss_of(m, x, hx, None, weights)  # noqa: E731
    assert dx.shape == x.shape and dh0.shape == hx[0].shape
    assert_gradient(dx, array_grad(f, x), "dx")
    assert_gradient(dh0, array_grad(f, hx[0]), "dh0")
    assert_gradient(dc0, array_grad(f, hx[1]), "dc0")
