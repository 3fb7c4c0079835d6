"""Keras and torch converters: gate orders, bias splitting, round trips, the real frameworks."""
import os

import numpy as np
import pytest

import fastlstm


def keras_formula_forward(x, kernel, recurrent_kernel, bias):
    """Keras' own equations (batch-major, gates i, f, c, o, one bias), written independently."""
    B, T, _ = x.shape
    units = recurrent_kernel.shape[0]
    h = np.zeros((B, units))
    c = np.zeros((B, units))
    ys = []
    sig = lambda z: 1 / (1 + np.exp(-z))  # noqa: E731
    for t in range(T):
        z = x[:, t] @ kernel + h @ recurrent_kernel + bias
        i, f, cc, o = np.split(z, 4, axis=1)
        c = sig(f) * c + sig(i) * np.tanh(cc)
        h = sig(o) * np.tanh(c)
        ys.append(h)
    return np.stack(ys, axis=1), h, c


def random_keras_weights(I, units, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.uniform(-0.5, 0.5, (I, 4 * units)), rng.uniform(-0.5, 0.5, (units, 4 * units)),
            rng.uniform(-0.5, 0.5, 4 * units))


def test_from_keras_matches_keras_equations():
    kernel, rk, bias = random_keras_weights(3, 5)
    m = fastlstm.from_keras(kernel, rk, bias, dtype="float64")
    assert m.batch_first and (m.input_size, m.hidden_size) == (3, 5)
    x = np.random.default_rng(1).standard_normal((2, 6, 3))
    y, (h, c) = m(x)
    ky, kh, kc = keras_formula_forward(x, kernel, rk, bias)
    np.testing.assert_allclose(y, ky, atol=1e-12)
    np.testing.assert_allclose(h[0], kh, atol=1e-12)
    np.testing.assert_allclose(c[0], kc, atol=1e-12)


def test_to_keras_round_trip_and_bias_sum():
    m = fastlstm.LSTM(3, 4, num_layers=2, bidirectional=True, dtype="float64", seed=0)
    kernel, rk, bias = fastlstm.to_keras(m, layer=1, reverse=True)
    sd = m.state_dict()
    assert kernel.shape == (8, 16) and rk.shape == (4, 16)
    np.testing.assert_array_equal(kernel, sd["weight_ih_l1_reverse"].T)
    np.testing.assert_allclose(bias, sd["bias_ih_l1_reverse"] + sd["bias_hh_l1_reverse"])
    m1 = fastlstm.LSTM(3, 4, dtype="float64", seed=1)
    back = fastlstm.from_keras(*fastlstm.to_keras(m1), batch_first=False, dtype="float64")
    x = np.random.default_rng(0).standard_normal((5, 2, 3))
    np.testing.assert_allclose(back(x)[0], m1(x)[0], atol=1e-12)


def test_keras_without_bias():
    m = fastlstm.LSTM(3, 4, bias=False, dtype="float64", seed=0)
    weights = fastlstm.to_keras(m)
    assert len(weights) == 2
    back = fastlstm.from_keras(*weights, batch_first=False, dtype="float64")
    assert not back.bias and set(back.state_dict()) == set(m.state_dict())
    x = np.random.default_rng(0).standard_normal((5, 2, 3))
    np.testing.assert_allclose(back(x)[0], m(x)[0], atol=1e-12)


@pytest.mark.parametrize("args,exc,match", [
    ((np.zeros((3, 15)), np.zeros((4, 16))), ValueError, r"kernel must have shape \(input_size"),
    ((np.zeros((3, 16)), np.zeros((4, 12))), ValueError, "recurrent_kernel must have shape"),
    ((np.zeros((3, 16)), np.zeros((4, 16)), np.zeros(15)), ValueError, "bias must have shape"),
    ((np.zeros(16), np.zeros((4, 16))), ValueError, "kernel must have shape"),
    (("k", np.zeros((4, 16))), TypeError, "kernel must hold real numbers"),
])
def test_from_keras_bad_weights(args, exc, match):
    with pytest.raises(exc, match=match):
        fastlstm.from_keras(*args)


def test_to_keras_bad_arguments():
    m = fastlstm.LSTM(3, 4)
    with pytest.raises(ValueError, match="layer must be an int in 0..0"):
        fastlstm.to_keras(m, layer=1)
    with pytest.raises(ValueError, match="reverse=True needs a bidirectional"):
        fastlstm.to_keras(m, reverse=True)
    with pytest.raises(TypeError, match="model must be a fastlstm.LSTM"):
        fastlstm.to_keras("model")


def test_from_state_dict_infers_the_configuration():
    src = fastlstm.LSTM(3, 5, num_layers=3, bidirectional=True, bias=False, seed=0)
    m = fastlstm.LSTM.from_state_dict(src.state_dict(), batch_first=True)
    assert (m.input_size, m.hidden_size, m.num_layers, m.bidirectional, m.bias,
            m.batch_first) == (3, 5, 3, True, False, True)
    for name, w in src.state_dict().items():
        np.testing.assert_array_equal(m.state_dict()[name], w, err_msg=name)
    with pytest.raises(ValueError, match="must hold torch.nn.LSTM weights"):
        fastlstm.LSTM.from_state_dict({"w": np.zeros(3)})
    with pytest.raises(TypeError, match="module must be a torch.nn.LSTM"):
        fastlstm.from_torch(object())


@pytest.fixture(scope="module")
def keras():
    pytest.importorskip("torch")  # Keras 3 needs a backend; CI has torch
    os.environ.setdefault("KERAS_BACKEND", "torch")
    return pytest.importorskip("keras")


def _keras_run(keras, layer, x):
    y, h, c = layer(x.astype("float32"))
    return [keras.ops.convert_to_numpy(a) for a in (y, h, c)]


def test_from_keras_matches_real_keras(keras):
    layer = keras.layers.LSTM(5, return_sequences=True, return_state=True)
    x = np.random.default_rng(0).standard_normal((2, 7, 3)).astype("float32")
    layer(x)  # build
    layer.set_weights([w.astype("float32") for w in random_keras_weights(3, 5, seed=3)])
    ky, kh, kc = _keras_run(keras, layer, x)
    m = fastlstm.from_keras(*layer.get_weights())
    y, (h, c) = m(x)
    np.testing.assert_allclose(y, ky, atol=1e-5)
    np.testing.assert_allclose(h[0], kh, atol=1e-5)
    np.testing.assert_allclose(c[0], kc, atol=1e-5)


def test_to_keras_drives_real_keras(keras):
    m = fastlstm.LSTM(3, 4, batch_first=True, seed=2)
    layer = keras.layers.LSTM(4, return_sequences=True, return_state=True)
    x = np.random.default_rng(1).standard_normal((3, 6, 3)).astype("float32")
    layer(x)
    layer.set_weights(fastlstm.to_keras(m))
    ky, kh, kc = _keras_run(keras, layer, x)
    y, (h, c) = m(x)
    np.testing.assert_allclose(y, ky, atol=1e-5)
    np.testing.assert_allclose(h[0], kh, atol=1e-5)
    np.testing.assert_allclose(c[0], kc, atol=1e-5)


def test_to_keras_takes_numpy_ints_for_layer():
    m = fastlstm.LSTM(3, 4, num_layers=2, seed=0)
    for a, b in zip(fastlstm.to_keras(m, layer=np.int64(1)), fastlstm.to_keras(m, layer=1)):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="layer must be an int"):
        fastlstm.to_keras(m, layer=True)


def test_a_gru_state_dict_is_not_an_lstm():
    rng = np.random.default_rng(0)
    gru = {"weight_ih_l0": rng.standard_normal((15, 3)),
           "weight_hh_l0": rng.standard_normal((15, 5)),
           "bias_ih_l0": np.zeros(15), "bias_hh_l0": np.zeros(15)}
    with pytest.raises(ValueError, match="not an LSTM's weights"):
        fastlstm.LSTM.from_state_dict(gru)
