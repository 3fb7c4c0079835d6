"""Shared test helpers: tolerance tables, random problems, loss weights."""
import numpy as np
import pytest

import fastlstm

# Forward and gradient tolerances per dtype (rtol = atol), explicit and in one place.
TOL = {"float64": 1e-8, "float32": 1e-4}


def random_problem(model, T, B, seed=0, with_hx=False, lengths=None, unbatched=False):
    """x, hx, and loss weights (dy, dh_n, dc_n) shaped for `model`."""
    rng = np.random.default_rng(seed)
    H, LD = model.hidden_size, model.num_layers * model.num_directions
    dt = model.dtype
    if unbatched:
        x_shape, s_shape = (T, model.input_size), (LD, H)
        y_shape = (T, model.num_directions * H)
    else:
        x_shape = (B, T, model.input_size) if model.batch_first else (T, B, model.input_size)
        s_shape = (LD, B, H)
        y_shape = x_shape[:2] + (model.num_directions * H,)
    x = rng.standard_normal(x_shape).astype(dt)
    hx = None
    if with_hx:
        hx = (0.5 * rng.standard_normal(s_shape).astype(dt),
              0.5 * rng.standard_normal(s_shape).astype(dt))
    dy = rng.standard_normal(y_shape).astype(dt)
    if lengths is not None and not unbatched:  # the loss ignores padding, as torch's does
        mask = np.arange(T)[:, None] < np.asarray(lengths)[None, :]
        dy *= (mask.T if model.batch_first else mask)[..., None]
    dh_n = rng.standard_normal(s_shape).astype(dt)
    dc_n = rng.standard_normal(s_shape).astype(dt)
    return x, hx, (dy, dh_n, dc_n)


def assert_backend_matches_reference(backend, dtype, T, B, I, H, layers=1, bidir=False,
                                     lengths=None, seed=0):
    """Forward (y, h_n, c_n) and every gradient of `backend` against the NumPy reference."""
    kw = dict(num_layers=layers, bidirectional=bidir, dtype=dtype)
    fast = fastlstm.LSTM(I, H, backend=backend, seed=seed, **kw)
    ref = fastlstm.LSTM(I, H, backend="numpy", **kw)
    ref.load_state_dict(fast.state_dict())
    x, hx, weights = random_problem(fast, T, B, seed=seed + 1, with_hx=True, lengths=lengths)
    out = []
    for m in (fast, ref):
        y, (h, c) = m(x, hx, lengths)
        dx, (dh0, dc0) = m.backward(*weights)
        out.append([y, h, c, dx, dh0, dc0] + [m.grads[k] for k in sorted(m.grads)])
    assert fast.backend_used == backend
    tol = TOL[dtype]
    for a, b in zip(*out):
        np.testing.assert_allclose(a, b, rtol=tol, atol=tol)


def run_in_threads(models, inputs, rounds, same):
    """Call every model on its input from its own Python thread, all at once, `rounds`
    times; returns the indices of calls whose output was not `same` as a lone call's."""
    import threading
    expected = [m(x)[0] for m, x in zip(models, inputs)]
    errors, barrier = [], threading.Barrier(len(models))

    def work(i):
        barrier.wait()
        for _ in range(rounds):
            if not same(models[i](inputs[i])[0], expected[i]):
                errors.append(i)
    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(models))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not any(t.is_alive() for t in threads), "a thread hung"
    return errors


@pytest.fixture
def small_model():
    return fastlstm.LSTM(3, 4, seed=0, dtype="float64")
