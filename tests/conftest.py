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


@pytest.fixture
def small_model():
    return fastlstm.LSTM(3, 4, seed=0, dtype="float64")
