"""fastlstm.keras.layers: Keras 3 semantics (equations written out here, and real Keras when
installed), finite-difference gradients in float64, weights, configs and bad input."""
import copy
import os
import pickle
import sys
import types

os.environ.setdefault("KERAS_BACKEND", "torch")  # before anything imports keras

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from fastlstm.keras import layers as L  # noqa: E402
from fastlstm.keras import random as krandom  # noqa: E402

ACTIVATIONS = ["linear", "relu", "sigmoid", "tanh", "softmax"]


def _standin_activations():
    """A minimal activations module (the contract's interface), used only while
    fastlstm/keras/activations.py does not exist yet."""
    mod = types.ModuleType("fastlstm.keras.activations")

    class Act:
        def __init__(self, name, fwd, bwd):
            self.name, self.forward, self._bwd = name, fwd, bwd

        def backward(self, z, a, da):
            return self._bwd(z, a, da)

    def softmax(z):
        e = np.exp(z - z.max(-1, keepdims=True))
        return e / e.sum(-1, keepdims=True)

    table = {
        "linear": Act("linear", lambda z: z, lambda z, a, da: da),
        "relu": Act("relu", lambda z: np.maximum(z, 0), lambda z, a, da: da * (z > 0)),
        "sigmoid": Act("sigmoid", lambda z: 1 / (1 + np.exp(-z)),
                       lambda z, a, da: da * a * (1 - a)),
        "tanh": Act("tanh", np.tanh, lambda z, a, da: da * (1 - a * a)),
        "softmax": Act("softmax", softmax,
                       lambda z, a, da: a * (da - (da * a).sum(-1, keepdims=True))),
    }

    def get(identifier):
        if identifier is None:
            return table["linear"]
        if isinstance(identifier, Act):
            return identifier
        if identifier not in table:
            raise ValueError(f"unknown activation {identifier!r}; known: {sorted(table)}")
        return table[identifier]

    mod.get = get
    return mod


@pytest.fixture(autouse=True)
def activations_module(monkeypatch):
    try:
        import fastlstm.keras.activations  # noqa: F401
    except ImportError:
        monkeypatch.setitem(sys.modules, "fastlstm.keras.activations", _standin_activations())


@pytest.fixture
def keras():
    return pytest.importorskip("keras")


def rng(seed=0):
    return np.random.default_rng(seed)


# --------------------------------------------------------------------------- references

def sigmoid(z):
    return 1 / (1 + np.exp(-z))


def keras_lstm_reference(x, kernel, recurrent, bias, mask=None, go_backwards=False,
                         zero_output_for_mask=False, h0=None, c0=None):
    """Keras 3's LSTM written out: backend.rnn's loop with the mask (a masked step keeps
    the state; its output is the previous output, or 0 with zero_output_for_mask).
    Returns (outputs in processing order, last output, h, c)."""
    B, T, _ = x.shape
    H = recurrent.shape[0]
    h = np.zeros((B, H)) if h0 is None else h0.copy()
    c = np.zeros((B, H)) if c0 is None else c0.copy()
    prev = np.zeros((B, H))
    outs = []
    for t in (range(T - 1, -1, -1) if go_backwards else range(T)):
        z = x[:, t] @ kernel + h @ recurrent + bias
        i, f, g, o = np.split(z, 4, axis=1)
        c_new = sigmoid(f) * c + sigmoid(i) * np.tanh(g)
        h_new = sigmoid(o) * np.tanh(c_new)
        m = np.ones((B, 1), bool) if mask is None else mask[:, t][:, None]
        out = np.where(m, h_new, 0.0 if zero_output_for_mask else prev)
        h, c = np.where(m, h_new, h), np.where(m, c_new, c)
        outs.append(out)
        prev = out
    return np.stack(outs, axis=1), outs[-1], h, c


def masks(B=4, T=6):
    """Keras masks of every kind: post-padding, pre-padding, holes, a fully masked row."""
    post = np.arange(T)[None, :] < np.array([T, 3, 1, 5])[:, None]
    pre = post[:, ::-1].copy()
    holes = np.array([[1, 0, 1, 1, 0, 1], [0, 1, 1, 0, 0, 1], [1, 1, 1, 1, 1, 0],
                      [0, 0, 1, 0, 1, 0]], bool)
    empty_row = holes.copy()
    empty_row[1] = False
    return {"none": None, "all": np.ones((B, T), bool), "post": post, "pre": pre,
            "holes": holes, "empty_row": empty_row}


MASKS = list(masks())


def float64_lstm(units=4, features=3, **kwargs):
    layer = L.LSTM(units, dtype="float64", **kwargs)
    layer.build((None, features))
    w = rng(11)
    layer.set_weights([w.uniform(-0.6, 0.6, (features, 4 * units)),
                       w.uniform(-0.6, 0.6, (units, 4 * units)),
                       w.uniform(-0.4, 0.4, 4 * units)])
    return layer


# --------------------------------------------------------------------------- finite differences

def numeric_grad(f, arr, eps=1e-6):
    g = np.zeros_like(arr)
    for idx in np.ndindex(arr.shape):
        old = arr[idx]
        arr[idx] = old + eps
        fp = f()
        arr[idx] = old - eps
        fm = f()
        arr[idx] = old
        g[idx] = (fp - fm) / (2 * eps)
    return g


def check_gradients(layer, x, mask=None, seed=None, check_dx=True, rtol=1e-5, atol=1e-8):
    """Central differences of sum(w * y) against backward's dx and weight gradients.
    With `seed`, the random generator is reseeded before every call (fixed dropout)."""
    def run():
        if seed is not None:
            krandom.set_seed(seed)
        return layer.call(x, mask=mask, training=True)[0]

    y = run()
    w = rng(5).standard_normal(y.shape)
    dx = layer.backward(w)
    grads = [np.array(g) for g in layer.grads]

    def loss():
        return float(np.sum(w * run()))

    checked = 0
    if check_dx:
        num = numeric_grad(loss, x)
        np.testing.assert_allclose(dx, num, rtol=rtol, atol=atol, err_msg="dx")
        checked += np.abs(num).max() > 1e-4
    weights = layer.get_weights()
    assert len(grads) == len(weights) > 0
    for i, W in enumerate(weights):
        def f():
            layer.set_weights(weights)
            return loss()
        num = numeric_grad(f, W)
        assert grads[i].shape == W.shape
        np.testing.assert_allclose(grads[i], num, rtol=rtol, atol=atol,
                                   err_msg=f"weight {i} of {layer.name}")
        checked += np.abs(num).max() > 1e-4
    layer.set_weights(weights)
    assert checked >= len(weights)  # the gradients are not trivially zero


# --------------------------------------------------------------------------- LSTM forward

@pytest.mark.parametrize("mask_kind", MASKS)
@pytest.mark.parametrize("go_backwards", [False, True])
@pytest.mark.parametrize("zero_output", [False, True])
def test_lstm_matches_keras_equations(mask_kind, go_backwards, zero_output):
    x = rng(1).standard_normal((4, 6, 3))
    mask = masks()[mask_kind]
    seq = float64_lstm(return_sequences=True, return_state=True, go_backwards=go_backwards,
                       zero_output_for_mask=zero_output)
    last = float64_lstm(go_backwards=go_backwards, zero_output_for_mask=zero_output)
    kernel, recurrent, bias = seq.get_weights()
    ref_seq, ref_last, ref_h, ref_c = keras_lstm_reference(
        x, kernel, recurrent, bias, mask, go_backwards, zero_output)
    y, m = seq.call(x, mask=mask)
    np.testing.assert_allclose(y, ref_seq, atol=1e-12)
    h, c = seq.last_states
    np.testing.assert_allclose(h, ref_h, atol=1e-12)
    np.testing.assert_allclose(c, ref_c, atol=1e-12)
    assert m is mask  # passed on unchanged (Keras does not flip it for go_backwards)
    y_last, m_last = last.call(x, mask=mask)
    np.testing.assert_allclose(y_last, ref_last, atol=1e-12)
    assert m_last is None
    # __call__ as Keras: [y, h, c] with return_state
    out = seq(x, mask=mask)
    assert isinstance(out, list) and len(out) == 3
    np.testing.assert_allclose(out[0], ref_seq, atol=1e-12)


def test_lstm_masked_rows_skip_padded_work_and_agree_with_unmasked_rows():
    """A row's result does not depend on what its masked steps hold (NaN included)."""
    layer = float64_lstm(return_sequences=True)
    x = rng(2).standard_normal((4, 6, 3))
    mask = masks()["holes"]
    y = layer.call(x, mask=mask)[0]
    x_nan = x.copy()
    x_nan[~mask] = np.nan
    y_nan = layer.call(x_nan, mask=mask, training=True)[0]
    np.testing.assert_array_equal(y, y_nan)
    dx = layer.backward(np.ones_like(y))
    assert np.all(np.isfinite(dx)) and np.all(dx[~mask] == 0)
    assert all(np.all(np.isfinite(g)) for g in layer.grads)
    # one row alone gives the same as in the batch
    y1 = layer.call(x[2:3], mask=mask[2:3])[0]
    np.testing.assert_allclose(y1, y[2:3], atol=1e-13)


def test_lstm_float32_matches_float64():
    l64 = float64_lstm(return_sequences=True)
    l32 = L.LSTM(4, return_sequences=True)
    l32.build((None, 3))
    l32.set_weights(l64.get_weights())
    x = rng(3).standard_normal((4, 6, 3))
    y32 = l32.call(x.astype(np.float32), mask=masks()["pre"])[0]
    assert y32.dtype == np.float32
    np.testing.assert_allclose(y32, l64.call(x, mask=masks()["pre"])[0], atol=1e-5)


def test_lstm_stateful_carries_state_and_resets():
    full = float64_lstm(return_sequences=True)
    st = float64_lstm(return_sequences=True, stateful=True)
    x = rng(4).standard_normal((4, 6, 3))
    y_full = full.call(x)[0]
    y1 = st.call(x[:, :2])[0]
    y2 = st.call(x[:, 2:])[0]
    np.testing.assert_allclose(np.concatenate([y1, y2], axis=1), y_full, atol=1e-12)
    st.reset_states()
    np.testing.assert_allclose(st.call(x[:, :2])[0], y1, atol=1e-12)
    # a masked step of a stateful layer keeps the carried state (and a fully masked row
    # keeps it entirely)
    st.reset_states()
    st.call(x[:, :2])
    h_before = st.states[0].copy()
    mask = np.ones((4, 4), bool)
    mask[1] = False
    st.call(x[:, 2:], mask=mask)
    np.testing.assert_array_equal(st.states[0][1], h_before[1])


@pytest.mark.parametrize("return_sequences", [True, False])
def test_lstm_stateful_one_reading_per_call_equals_one_call(return_sequences):
    """A stream fed one step per call (the engine's one-step path) gives the whole call's
    outputs and state, bit for bit."""
    full = float64_lstm(return_sequences=True)
    st = float64_lstm(return_sequences=return_sequences, stateful=True)
    x = rng(5).standard_normal((3, 7, 3))
    y_full = full.call(x)[0]
    ys = [st.call(x[:, t:t + 1])[0] for t in range(7)]
    got = np.concatenate(ys, axis=1) if return_sequences else np.stack(ys, axis=1)
    np.testing.assert_array_equal(got, y_full)
    np.testing.assert_array_equal(st.states[0], y_full[:, -1])


def test_lstm_stateful_batch_size_change_is_a_value_error_and_keeps_state():
    st = float64_lstm(stateful=True)
    x = rng(5).standard_normal((4, 6, 3))
    st.call(x)
    before = [s.copy() for s in st.states]
    with pytest.raises(ValueError, match="stateful.*batch size"):
        st.call(x[:3])
    np.testing.assert_array_equal(st.states[0], before[0])
    st.reset_states()
    with pytest.raises(ValueError, match="batch size"):
        st.call(x[:2])
    # a batch size fixed by input_shape + batch_size holds from the first call
    fixed = L.LSTM(2, stateful=True, input_shape=(None, 3), batch_size=2)
    fixed.build((None, 3))
    with pytest.raises(ValueError, match="batch size 2"):
        fixed.call(np.zeros((3, 4, 3), np.float32))


# --------------------------------------------------------------------------- LSTM gradients

@pytest.mark.parametrize("mask_kind", ["none", "post", "pre", "holes", "empty_row"])
@pytest.mark.parametrize("return_sequences,zero_output", [(True, False), (True, True),
                                                          (False, False), (False, True)])
def test_lstm_gradients(mask_kind, return_sequences, zero_output):
    layer = float64_lstm(units=3, return_sequences=return_sequences,
                         zero_output_for_mask=zero_output)
    x = rng(6).standard_normal((4, 6, 3))
    check_gradients(layer, x, masks()[mask_kind])


@pytest.mark.parametrize("mask_kind", ["none", "pre", "holes"])
@pytest.mark.parametrize("return_sequences", [True, False])
def test_lstm_go_backwards_gradients(mask_kind, return_sequences):
    layer = float64_lstm(units=3, go_backwards=True, return_sequences=return_sequences)
    check_gradients(layer, rng(7).standard_normal((4, 6, 3)), masks()[mask_kind])


@pytest.mark.parametrize("return_sequences", [True, False])
def test_lstm_dropout_gradients_with_fixed_mask(return_sequences):
    layer = float64_lstm(units=3, dropout=0.4, return_sequences=return_sequences)
    x = rng(8).standard_normal((4, 6, 3))
    check_gradients(layer, x, masks()["holes"], seed=123)


def test_lstm_without_bias_gradients():
    layer = L.LSTM(3, use_bias=False, return_sequences=True, dtype="float64")
    layer.build((None, 2))
    assert [w.shape for w in layer.get_weights()] == [(2, 12), (3, 12)]
    check_gradients(layer, rng(9).standard_normal((2, 4, 2)), masks()["pre"][:2, :4])


def test_lstm_dropout_is_one_input_mask_per_call_in_training_only():
    layer = L.LSTM(5, dropout=0.5, return_sequences=True, dtype="float64")
    layer.build((None, 6))
    x = np.ones((3, 4, 6))
    # inference: no dropout
    np.testing.assert_array_equal(layer.call(x)[0], layer.call(x)[0])
    krandom.set_seed(1)
    scale = krandom.generator().random((3, 1, 6)) >= 0.5
    krandom.set_seed(1)
    y = layer.call(x, training=True)[0]
    ref = keras_lstm_reference(x * scale / 0.5, *layer.get_weights())[0]
    np.testing.assert_allclose(y, ref, atol=1e-12)
    # the same mask for every step: a constant input sequence -> rows see the same inputs
    krandom.set_seed(1)
    y_b = layer.call(x, training=True)[0]
    np.testing.assert_array_equal(y, y_b)


# --------------------------------------------------------------------------- Bidirectional

def bidi_reference(layer, x, mask, merge_mode, return_sequences):
    """Keras's Bidirectional written out: the forward LSTM, and a go_backwards LSTM whose
    outputs are flipped back (zero_output_for_mask = return_sequences on both)."""
    w = layer.get_weights()
    fwd = keras_lstm_reference(x, *w[:3], mask, False, return_sequences)
    bwd = keras_lstm_reference(x, *w[3:], mask, True, return_sequences)
    if return_sequences:
        yf, yb = fwd[0], bwd[0][:, ::-1]
    else:
        yf, yb = fwd[1], bwd[1]
    return {"concat": np.concatenate([yf, yb], axis=-1), "sum": yf + yb,
            "ave": (yf + yb) / 2, "mul": yf * yb}[merge_mode], (fwd[2], fwd[3], bwd[2], bwd[3])


def float64_bidi(units=3, features=3, merge_mode="concat", **kwargs):
    layer = L.Bidirectional(L.LSTM(units, dtype="float64", **kwargs), merge_mode=merge_mode)
    layer.build((None, features))
    w = rng(12)
    layer.set_weights([w.uniform(-0.6, 0.6, s) for s in
                       [(features, 4 * units), (units, 4 * units), (4 * units,)] * 2])
    return layer


@pytest.mark.parametrize("mask_kind", MASKS)
@pytest.mark.parametrize("merge_mode", ["concat", "sum", "mul", "ave"])
@pytest.mark.parametrize("return_sequences", [True, False])
def test_bidirectional_matches_keras_equations(mask_kind, merge_mode, return_sequences):
    layer = float64_bidi(merge_mode=merge_mode, return_sequences=return_sequences,
                         return_state=True)
    x = rng(13).standard_normal((4, 6, 3))
    mask = masks()[mask_kind]
    y, m = layer.call(x, mask=mask)
    ref, states = bidi_reference(layer, x, mask, merge_mode, return_sequences)
    np.testing.assert_allclose(y, ref, atol=1e-12)
    for got, want in zip(layer.last_states, states):
        np.testing.assert_allclose(got, want, atol=1e-12)
    assert (m is mask) if return_sequences else m is None
    assert y.shape[1:] == layer.compute_output_shape((6, 3))
    out = layer(x, mask=mask)
    assert isinstance(out, list) and len(out) == 5


def test_bidirectional_backward_direction_is_the_reversed_sequence_for_pre_padding():
    """The engine's reverse direction with compacted rows equals running the backward
    LSTM on each row's kept steps reversed by hand (pre-padding: kept steps at the end)."""
    layer = float64_bidi(units=2, return_sequences=True, merge_mode="concat")
    x = rng(14).standard_normal((4, 6, 3))
    mask = masks()["pre"]
    y = layer.call(x, mask=mask)[0]
    kb, rb, bb = layer.get_weights()[3:]
    for b in range(4):
        kept = np.flatnonzero(mask[b])
        rev = x[b:b + 1, kept[::-1]]
        ys = keras_lstm_reference(rev, kb, rb, bb)[0][0]
        np.testing.assert_allclose(y[b, kept, 2:], ys[::-1], atol=1e-12)
        assert np.all(y[b, ~mask[b]] == 0)


@pytest.mark.parametrize("mask_kind", ["none", "post", "pre", "holes", "empty_row"])
@pytest.mark.parametrize("merge_mode", ["concat", "sum", "mul", "ave"])
@pytest.mark.parametrize("return_sequences", [True, False])
def test_bidirectional_gradients(mask_kind, merge_mode, return_sequences):
    layer = float64_bidi(units=2, merge_mode=merge_mode, return_sequences=return_sequences)
    check_gradients(layer, rng(15).standard_normal((4, 6, 3)), masks()[mask_kind])


def test_bidirectional_dropout_gradients_with_fixed_mask():
    layer = float64_bidi(units=2, dropout=0.3, return_sequences=True)
    check_gradients(layer, rng(16).standard_normal((4, 6, 3)), masks()["holes"], seed=9)


def test_bidirectional_weights_config_and_views():
    layer = L.Bidirectional(L.LSTM(3, name="enc", return_sequences=True), merge_mode="sum",
                            name="bi")
    layer.build((5, 2))
    assert [w.shape for w in layer.get_weights()] == [(2, 12), (3, 12), (12,)] * 2
    assert layer.count_params() == 2 * 12 * (2 + 3 + 1)
    cfg = layer.get_config()
    assert cfg["name"] == "bi" and cfg["merge_mode"] == "sum"
    assert cfg["layer"]["class_name"] == "LSTM"
    assert cfg["layer"]["config"]["name"] == "forward_enc"
    assert cfg["backward_layer"]["config"]["go_backwards"] is True
    assert cfg["layer"]["config"]["zero_output_for_mask"] is True  # Keras forces it
    again = L.deserialize("Bidirectional", cfg)
    assert again.get_config() == cfg
    # the direction views read and write their half of the one engine
    new_bwd = [w + 1 for w in layer.backward_layer.get_weights()]
    fwd = layer.forward_layer.get_weights()
    layer.backward_layer.set_weights(new_bwd)
    for a, b in zip(layer.get_weights(), fwd + new_bwd):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(TypeError, match="Bidirectional"):
        layer.forward_layer(np.zeros((1, 5, 2), np.float32))
    # Keras's old layout with backward_layer given explicitly
    explicit = L.Bidirectional(L.LSTM(3), backward_layer=L.LSTM(3, go_backwards=True))
    assert explicit.backward_layer.go_backwards
    with pytest.raises(ValueError, match="units"):
        L.Bidirectional(L.LSTM(3), backward_layer=L.LSTM(4, go_backwards=True))


def test_bidirectional_refuses_what_it_does_not_support():
    with pytest.raises(ValueError, match="merge_mode=None"):
        L.Bidirectional(L.LSTM(2), merge_mode=None)
    with pytest.raises(ValueError, match="merge_mode"):
        L.Bidirectional(L.LSTM(2), merge_mode="max")
    with pytest.raises(ValueError, match="go_backwards"):
        L.Bidirectional(L.LSTM(2, go_backwards=True))
    with pytest.raises(ValueError, match="stateful"):
        L.Bidirectional(L.LSTM(2, stateful=True))
    with pytest.raises(TypeError, match="LSTM"):
        L.Bidirectional(L.Dense(2))


# ------------------------------------------------------------- Dense, Dropout, Embedding

@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("rank", [2, 3])
def test_dense_gradients(activation, rank):
    layer = L.Dense(3, activation=activation, dtype="float64")
    shape = (4, 5) if rank == 2 else (2, 3, 5)
    layer.build(shape[1:])
    layer.set_weights([rng(17).uniform(-1, 1, (5, 3)), rng(18).uniform(-0.5, 0.5, 3)])
    x = rng(19).standard_normal(shape)
    check_gradients(layer, x)
    mask = np.ones(shape[:2], bool)
    assert layer.call(x, mask=mask)[1] is mask  # the mask passes through


def test_dense_forward_and_config():
    layer = L.Dense(2, "tanh", dtype="float64", use_bias=False)
    layer.build((3,))
    (k,) = layer.get_weights()
    x = rng(20).standard_normal((4, 3))
    np.testing.assert_allclose(layer(x), np.tanh(x @ k), atol=1e-14)
    cfg = layer.get_config()
    assert cfg["activation"] == "tanh" and cfg["use_bias"] is False and cfg["units"] == 2
    assert L.Dense.from_config(cfg).get_config() == cfg
    limit = np.sqrt(6 / (3 + 2))
    assert np.all(np.abs(k) <= limit)
    assert L.Dense(1).get_config()["activation"] == "linear"
    assert L.Dense(1, "sigmoid").activation.name == "sigmoid"


def test_dropout_training_only_mask_and_gradient():
    layer = L.Dropout(0.25, dtype="float64")
    x = np.ones((200, 50))
    assert layer.call(x)[0] is x
    krandom.set_seed(4)
    y = layer.call(x, training=True)[0]
    zero = y == 0
    assert abs(zero.mean() - 0.25) < 0.02
    np.testing.assert_allclose(y[~zero], 1 / 0.75)
    dx = layer.backward(np.full_like(x, 2.0))
    np.testing.assert_allclose(dx, 2.0 * y)
    shared = L.Dropout(0.5, noise_shape=(None, 1, 4), dtype="float64")
    y3 = shared.call(np.ones((3, 5, 4)), training=True)[0]
    assert np.all(y3 == y3[:, :1])  # one mask for every step
    small = L.Dropout(0.3, dtype="float64")
    check_gradients_no_weights(small, rng(21).standard_normal((3, 4)), seed=2)
    assert L.Dropout.from_config(layer.get_config()).rate == 0.25
    with pytest.raises(ValueError, match="rate"):
        L.Dropout(1.5)


def check_gradients_no_weights(layer, x, seed):
    def run():
        krandom.set_seed(seed)
        return layer.call(x, training=True)[0]
    w = rng(1).standard_normal(run().shape)
    run()
    dx = layer.backward(w)
    num = numeric_grad(lambda: float(np.sum(w * run())), x)
    np.testing.assert_allclose(dx, num, rtol=1e-6, atol=1e-9)
    assert np.abs(num).max() > 0.1


def test_embedding_lookup_mask_and_gradient():
    layer = L.Embedding(7, 3, mask_zero=True, dtype="float64")
    layer.build((4,))
    (E,) = layer.get_weights()
    assert E.shape == (7, 3) and np.all(np.abs(E) <= 0.05) and E.std() > 0.01
    ids = np.array([[1, 0, 3, 3], [6, 2, 0, 1]])
    y, mask = layer.call(ids, training=True)
    np.testing.assert_array_equal(y, E[ids])
    np.testing.assert_array_equal(mask, ids != 0)
    dy = rng(22).standard_normal(y.shape)
    assert layer.backward(dy) is None  # ids have no gradient
    (g,) = layer.grads
    num = numeric_grad(lambda: float(np.sum(dy * layer.call(ids)[0])), layer.embeddings)
    np.testing.assert_allclose(g, num, atol=1e-8)
    assert np.abs(g[3]).sum() > 0 and np.all(g[[4, 5]] == 0)
    # float ids holding whole numbers are accepted (as Keras casts them)
    np.testing.assert_array_equal(layer.call(ids.astype(np.float32))[0], y)
    assert L.Embedding(5, 2)(np.array([[1]])).shape == (1, 1, 2)  # built on first call
    assert layer.compute_output_shape((4,)) == (4, 3)


def test_embedding_feeds_lstm_mask():
    emb = L.Embedding(9, 3, mask_zero=True, dtype="float64")
    lstm = float64_lstm(units=2, features=3)
    emb.build((5,))
    ids = np.array([[0, 0, 4, 2, 8], [3, 1, 0, 0, 0]])
    h, mask = emb.call(ids)
    y = lstm.call(h, mask=mask)[0]
    ref = keras_lstm_reference(h, *lstm.get_weights(), mask=mask)[1]
    np.testing.assert_allclose(y, ref, atol=1e-12)


# --------------------------------------------------------------------------- weights, variables

def test_lstm_initialisers_are_keras():
    krandom.set_seed(0)
    layer = L.LSTM(16)
    layer.build((None, 8))
    kernel, recurrent, bias = layer.get_weights()
    limit = np.sqrt(6 / (8 + 64))
    assert np.all(np.abs(kernel) <= limit) and kernel.std() > 0.8 * limit / np.sqrt(3)
    np.testing.assert_allclose(recurrent @ recurrent.T, np.eye(16), atol=1e-5)
    np.testing.assert_array_equal(bias, np.r_[np.zeros(16), np.ones(16), np.zeros(32)])
    no_forget = L.LSTM(4, unit_forget_bias=False)
    no_forget.build((None, 2))
    assert np.all(no_forget.get_weights()[2] == 0)
    # the one generator: the same seed, the same weights
    krandom.set_seed(0)
    again = L.LSTM(16)
    again.build((None, 8))
    for a, b in zip(again.get_weights(), layer.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_lstm_variables_are_keras_shaped_views_of_the_engine():
    layer = float64_lstm(units=3)
    x = rng(23).standard_normal((2, 4, 3))
    y = layer.call(x, training=True)[0]
    layer.backward(np.ones_like(y))
    before = layer.get_weights()
    grads = [g.copy() for g in layer.grads]
    with layer.update_variables() as variables:
        keys = [k for k, _, _ in variables]
        assert keys == [f"{layer.name}/lstm_cell/{k}" for k in
                        ("kernel", "recurrent_kernel", "bias")]
        for (_, p, g), w, gw in zip(variables, before, grads):
            assert p.shape == w.shape and g.shape == w.shape
            np.testing.assert_array_equal(p, w)
            np.testing.assert_array_equal(g, gw)
            p -= 0.1 * g  # an SGD step, in place
    after = layer.get_weights()
    for a, w, g in zip(after, before, grads):
        np.testing.assert_allclose(a, w - 0.1 * g, atol=1e-15)
    # bias_hh stays 0: Keras's bias is the engine's bias_ih
    assert np.all(layer._engine.state_dict()["bias_hh_l0"] == 0)
    frozen = float64_lstm(trainable=False)
    with frozen.update_variables() as variables:
        assert variables == []


def test_dense_and_embedding_variables():
    d = L.Dense(2, name="out")
    d.build((3,))
    x = rng(24).standard_normal((4, 3)).astype(np.float32)
    d.call(x, training=True)
    d.backward(np.ones((4, 2), np.float32))
    with d.update_variables() as v:
        assert [k for k, _, _ in v] == ["out/kernel", "out/bias"]
        v[1][1][...] += 1
    np.testing.assert_array_equal(d.get_weights()[1], np.ones(2, np.float32))
    np.testing.assert_allclose(d.grads[0], x.sum(0)[:, None].repeat(2, 1), rtol=1e-6)


def test_set_weights_checks_everything_before_changing_anything():
    layer = float64_lstm(units=2, features=3)
    before = layer.get_weights()
    good = [w + 1 for w in before]
    for bad, match in [
            ([good[0], good[1][:, :4], good[2]], "recurrent_kernel.*shape"),
            (good[:2], "expects 3 weights"),
            ([good[0], good[1], np.full(8, np.nan)], "bias.*NaN"),
            ([good[0].T, good[1], good[2]], "kernel.*shape")]:
        with pytest.raises(ValueError, match=match):
            layer.set_weights(bad)
        for a, b in zip(layer.get_weights(), before):
            np.testing.assert_array_equal(a, b)
    with pytest.raises(TypeError, match="list"):
        layer.set_weights(np.zeros(3))
    # a Keras 2 CuDNNLSTM's weights (bias of 8H) are converted whole, kernels included:
    # cuDNN reads each gate block of the kernel as a row-major (H, I) matrix
    b8 = np.arange(16.0)
    k, rk = good[0], good[1]
    layer.set_weights([k, rk, b8])
    I, H = k.shape[0], rk.shape[0]
    got_k, got_rk, got_b = layer.get_weights()
    for g in range(4):
        block = k[:, g * H:(g + 1) * H].ravel()          # stored row-major
        np.testing.assert_array_equal(got_k[:, g * H:(g + 1) * H], block.reshape(H, I).T)
        np.testing.assert_array_equal(got_rk[:, g * H:(g + 1) * H], rk[:, g * H:(g + 1) * H].T)
    np.testing.assert_array_equal(got_b, b8[:8] + b8[8:])
    d = L.Dense(2)
    with pytest.raises(ValueError, match="not built"):
        d.set_weights([np.zeros((3, 2)), np.zeros(2)])
    d.build((3,))
    with pytest.raises(ValueError, match="'dense.*'.*bias"):
        d.set_weights([np.zeros((3, 2)), np.zeros(3)])


def test_copies_and_pickles():
    layer = float64_lstm(return_sequences=True)
    x = rng(25).standard_normal((2, 4, 3))
    layer.call(x, training=True)
    for clone in (copy.deepcopy(layer), pickle.loads(pickle.dumps(layer))):
        np.testing.assert_array_equal(clone.call(x)[0], layer.call(x)[0])
        assert clone._tape is None


# --------------------------------------------------------------------------- config, names

def test_default_names_are_unique_like_keras():
    L.reset_names()
    names = [L.LSTM(2).name, L.LSTM(2).name, L.Dense(1).name, L.InputLayer((3,)).name,
             L.Input((3,)).name, L.Dense(1, name="mine").name]
    assert names == ["lstm", "lstm_1", "dense", "input_layer", "input_layer_1", "mine"]


def test_configs_round_trip_and_refuse_unsupported_settings():
    lstm = L.LSTM(5, return_sequences=True, go_backwards=True, dropout=0.1, seed=3,
                  kernel_initializer="he_normal")
    cfg = lstm.get_config()
    assert cfg["kernel_initializer"]["class_name"] == "HeNormal"
    assert L.deserialize("LSTM", cfg).get_config() == cfg
    emb = L.Embedding(10, 4, mask_zero=True)
    assert L.deserialize("Embedding", emb.get_config()).get_config() == emb.get_config()
    inp = L.InputLayer(shape=(8,), dtype="int32")
    assert L.deserialize("InputLayer", inp.get_config()).get_config() == inp.get_config()
    assert inp.get_config()["batch_shape"] == [None, 8]
    for key, value in [("activation", "relu"), ("recurrent_activation", "hard_sigmoid"),
                       ("recurrent_dropout", 0.2), ("kernel_regularizer", {"l2": 0.01}),
                       ("bias_constraint", "non_neg")]:
        with pytest.raises(ValueError, match=key):
            L.deserialize("LSTM", {**cfg, key: value})
    with pytest.raises(ValueError, match="time_major"):
        L.deserialize("LSTM", {**cfg, "time_major": True})
    with pytest.raises(ValueError, match="'GRU'"):
        L.deserialize("GRU", {"units": 3})
    with pytest.raises(ValueError, match="kernel_initializer"):
        L.LSTM(3, kernel_initializer="nonsense")
    with pytest.raises(ValueError, match="dtype"):
        L.LSTM(3, dtype="int32")
    # Keras keys that change nothing here are accepted
    L.deserialize("LSTM", {**cfg, "unroll": True, "implementation": 1, "use_cudnn": False})
    assert L.deserialize("LSTM", {**cfg, "dtype": "float64"}).dtype == np.float64


def test_compute_output_shapes():
    assert L.LSTM(7).compute_output_shape((5, 3)) == (7,)
    assert L.LSTM(7, return_sequences=True).compute_output_shape((5, 3)) == (5, 7)
    assert L.Bidirectional(L.LSTM(7)).compute_output_shape((5, 3)) == (14,)
    assert L.Bidirectional(L.LSTM(7, return_sequences=True), merge_mode="ave") \
        .compute_output_shape((5, 3)) == (5, 7)
    assert L.Dense(4).compute_output_shape((5, 3)) == (5, 4)
    assert L.Input((5, 3)).compute_output_shape((5, 3)) == (5, 3)


# --------------------------------------------------------------------------- bad input

def test_bad_inputs_name_the_argument():
    lstm = float64_lstm(units=2, features=3)
    with pytest.raises(ValueError, match=r"x of shape \(batch, steps, features\)"):
        lstm.call(np.zeros((4, 3)))
    with pytest.raises(ValueError, match="3 features"):
        lstm.call(np.zeros((2, 4, 5)))
    with pytest.raises(ValueError, match="mask must have shape"):
        lstm.call(np.zeros((2, 4, 3)), mask=np.ones((2, 5), bool))
    with pytest.raises(TypeError, match="x must hold numbers"):
        lstm.call(np.array([[["a"]]]))
    lstm.call(np.zeros((2, 4, 3)), training=True)
    with pytest.raises(ValueError, match="dy must have the shape"):
        lstm.backward(np.zeros((2, 3)))
    lstm.call(np.zeros((2, 4, 3)))
    with pytest.raises(RuntimeError, match="training=True"):
        lstm.backward(np.zeros((2, 2)))
    with pytest.raises(ValueError, match="features"):
        lstm.build((4, 5))
    emb = L.Embedding(5, 2)
    emb.build((3,))
    with pytest.raises(ValueError, match=r"ids in \[0, 5\)"):
        emb.call(np.array([[0, 5, 1]]))
    with pytest.raises(ValueError, match=r"ids in \[0, 5\)"):
        emb.call(np.array([[-1, 2, 1]]))
    with pytest.raises(ValueError, match="whole-number"):
        emb.call(np.array([[0.5, 2, 1]]))
    dense = L.Dense(2)
    dense.build((3,))
    with pytest.raises(ValueError, match="3 features"):
        dense.call(np.zeros((2, 4)))
    inp = L.Input((4, 3))
    with pytest.raises(ValueError, match="x's shape"):
        inp.call(np.zeros((2, 4, 2)))
    with pytest.raises(ValueError, match="units"):
        L.LSTM(0)
    with pytest.raises(ValueError, match="dropout"):
        L.LSTM(2, dropout=1.0)
    with pytest.raises(TypeError, match="unrecognized keyword"):
        L.Dense(2, bogus=1)


# --------------------------------------------------------------------------- real Keras

def knp(keras, t):
    return keras.ops.convert_to_numpy(t)


def keras_masks():
    m = masks()
    return {k: m[k] for k in ("none", "post", "pre", "holes")}


@pytest.mark.parametrize("mask_kind", list(keras_masks()))
@pytest.mark.parametrize("return_sequences,go_backwards", [(True, False), (False, False),
                                                           (True, True), (False, True)])
def test_lstm_matches_real_keras(keras, mask_kind, return_sequences, go_backwards):
    ours = L.LSTM(4, return_sequences=return_sequences, go_backwards=go_backwards)
    ours.build((6, 3))
    theirs = keras.layers.LSTM(4, return_sequences=return_sequences,
                               go_backwards=go_backwards)
    theirs.build((None, 6, 3))
    theirs.set_weights(ours.get_weights())
    x = rng(30).standard_normal((4, 6, 3)).astype(np.float32)
    mask = keras_masks()[mask_kind]
    want = knp(keras, theirs(x, mask=mask))
    np.testing.assert_allclose(ours(x, mask=mask), want, atol=1e-5)


@pytest.mark.parametrize("merge_mode", ["concat", "sum", "mul", "ave"])
@pytest.mark.parametrize("return_sequences", [True, False])
@pytest.mark.parametrize("mask_kind", ["none", "pre", "holes"])
def test_bidirectional_matches_real_keras(keras, merge_mode, return_sequences, mask_kind):
    ours = L.Bidirectional(L.LSTM(3, return_sequences=return_sequences),
                           merge_mode=merge_mode)
    ours.build((6, 3))
    theirs = keras.layers.Bidirectional(keras.layers.LSTM(3, return_sequences=return_sequences),
                                        merge_mode=merge_mode)
    theirs.build((None, 6, 3))
    theirs.set_weights(ours.get_weights())
    x = rng(31).standard_normal((4, 6, 3)).astype(np.float32)
    mask = keras_masks()[mask_kind]
    np.testing.assert_allclose(ours(x, mask=mask), knp(keras, theirs(x, mask=mask)),
                               atol=1e-5)
    assert set(ours.get_config()) == set(theirs.get_config())
    assert set(ours.get_config()["layer"]["config"]) \
        == set(theirs.get_config()["layer"]["config"])


def test_embedding_masked_lstm_matches_real_keras(keras):
    K = keras.layers
    km = keras.Sequential([keras.Input((6,), dtype="int32"), K.Embedding(10, 3, mask_zero=True),
                           K.LSTM(4, return_sequences=True), K.LSTM(2)])
    emb, l1, l2 = L.Embedding(10, 3, mask_zero=True), L.LSTM(4, return_sequences=True), \
        L.LSTM(2)
    emb.build((6,))
    l1.build((6, 3))
    l2.build((6, 4))
    km.set_weights(emb.get_weights() + l1.get_weights() + l2.get_weights())
    ids = np.array([[0, 0, 3, 4, 9, 1], [5, 2, 0, 0, 0, 0], [1, 0, 2, 0, 3, 0]])
    h, m = emb.call(ids)
    h, m = l1.call(h, m)
    assert m is not None
    y = l2.call(h, m)[0]
    np.testing.assert_allclose(y, knp(keras, km(ids)), atol=1e-5)


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_dense_matches_real_keras(keras, activation):
    ours = L.Dense(3, activation=activation)
    ours.build((5,))
    theirs = keras.layers.Dense(3, activation=activation)
    theirs.build((None, 5))
    theirs.set_weights(ours.get_weights())
    x = rng(32).standard_normal((2, 4, 5)).astype(np.float32)
    np.testing.assert_allclose(ours(x), knp(keras, theirs(x)), atol=1e-5)
    assert set(ours.get_config()) == set(theirs.get_config())


def test_configs_have_keras_keys(keras):
    K = keras.layers
    pairs = [(L.LSTM(3), K.LSTM(3)), (L.Dropout(0.2), K.Dropout(0.2)),
             (L.Embedding(4, 2), K.Embedding(4, 2)), (L.InputLayer((3,)), K.InputLayer((3,)))]
    for ours, theirs in pairs:
        assert set(ours.get_config()) == set(theirs.get_config()), type(ours).__name__
    ours, theirs = L.LSTM(3), K.LSTM(3)
    assert ours.get_config()["recurrent_initializer"] \
        == theirs.get_config()["recurrent_initializer"]
    # Keras's configs load here, and ours load in Keras
    for theirs in (K.LSTM(3, return_sequences=True, dropout=0.2), K.Dense(2, "relu"),
                   K.Embedding(5, 3, mask_zero=True), K.Dropout(0.3)):
        cfg = theirs.get_config()
        mine = L.deserialize(type(theirs).__name__, cfg)
        assert type(theirs).from_config(mine.get_config()).get_config() == cfg
    bi = K.Bidirectional(K.LSTM(3, return_sequences=True), merge_mode="ave")
    mine = L.deserialize("Bidirectional", bi.get_config())
    assert mine.merge_mode == "ave" and mine.return_sequences
    inp = L.deserialize("InputLayer", K.InputLayer(shape=(8,), dtype="int32").get_config())
    assert inp.batch_shape == (None, 8) and inp.input_dtype == "int32"


def test_initialisers_match_keras_statistics(keras):
    ours = L.LSTM(32)
    ours.build((None, 16))
    theirs = keras.layers.LSTM(32)
    theirs.build((None, None, 16))
    for a, b in zip(ours.get_weights(), theirs.get_weights()):
        b = knp(keras, b)
        assert a.shape == b.shape
        assert a.std() == pytest.approx(b.std(), rel=0.15)
        assert np.abs(a).max() <= np.abs(b).max() * 1.5 + 1e-6
    rk = ours.get_weights()[1]
    krk = theirs.get_weights()[1]
    krk = knp(keras, krk)
    np.testing.assert_allclose(rk @ rk.T, krk @ krk.T, atol=1e-4)  # both orthonormal rows
    np.testing.assert_array_equal(ours.get_weights()[2], knp(keras, theirs.get_weights()[2]))


def test_keras_weights_run_here(keras):
    """set_weights from a Keras layer (its own initialisation) gives Keras's outputs."""
    theirs = keras.layers.Bidirectional(keras.layers.LSTM(5, return_sequences=True))
    x = rng(33).standard_normal((3, 7, 4)).astype(np.float32)
    want = knp(keras, theirs(x))
    ours = L.Bidirectional(L.LSTM(5, return_sequences=True))
    ours.build((7, 4))
    ours.set_weights([knp(keras, w) for w in theirs.get_weights()])
    np.testing.assert_allclose(ours(x), want, atol=1e-5)
