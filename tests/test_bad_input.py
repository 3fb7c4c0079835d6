"""Bad input gets a TypeError/ValueError naming the argument and what was expected."""
import numpy as np
import pytest

import fastlstm

X = np.zeros((5, 2, 3), np.float32)


@pytest.mark.parametrize("kwargs,exc,match", [
    (dict(input_size=0, hidden_size=4), ValueError, "input_size must be a positive int"),
    (dict(input_size=3, hidden_size=-1), ValueError, "hidden_size must be a positive int"),
    (dict(input_size=3.5, hidden_size=4), TypeError, "input_size"),
    (dict(input_size=True, hidden_size=4), TypeError, "input_size"),
    (dict(input_size=3, hidden_size=4, num_layers=0), ValueError, "num_layers"),
    (dict(input_size=3, hidden_size=4, dropout=1.0), ValueError, r"dropout must be .*\[0, 1\)"),
    (dict(input_size=3, hidden_size=4, dropout=-0.1), ValueError, "dropout"),
    (dict(input_size=3, hidden_size=4, dropout="0.1"), TypeError, "dropout"),
    (dict(input_size=3, hidden_size=4, dtype="float16"), ValueError, "dtype must be"),
    (dict(input_size=3, hidden_size=4, dtype="int32"), ValueError, "dtype must be"),
    (dict(input_size=3, hidden_size=4, dtype="nonsense"), ValueError, "dtype must be"),
    (dict(input_size=3, hidden_size=4, backend="tpu"), ValueError, "backend must be 'auto' or"),
    (dict(input_size=3, hidden_size=4, backend=3), TypeError, "backend must be a str"),
    (dict(input_size=3, hidden_size=4, bidirectional="yes"), TypeError, "bidirectional"),
    (dict(input_size=3, hidden_size=4, batch_first=1), TypeError, "batch_first"),
    (dict(input_size=3, hidden_size=4, bias=None), TypeError, "bias"),
    (dict(input_size=3, hidden_size=4, seed=-1), ValueError, "seed"),
])
def test_bad_constructor_arguments(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        fastlstm.LSTM(**kwargs)


def test_unavailable_backend_lists_the_available_ones(monkeypatch):
    from fastlstm import backends
    monkeypatch.setitem(backends.BACKENDS, "ghost", ("fastlstm.backends.ghost", "test only", None))
    monkeypatch.setattr(backends, "_status_cache", None)
    with pytest.raises(ValueError, match=r"'ghost' is not available.*available: \[.*'numpy'"):
        fastlstm.LSTM(3, 4, backend="ghost")


@pytest.mark.parametrize("x,exc,match", [
    (np.zeros((5, 2, 4)), ValueError, "input_size=3"),
    (np.zeros((5, 4)), ValueError, "input_size=3"),
    (np.zeros(3), ValueError, "x must be 3-D"),
    (np.zeros((1, 5, 2, 3)), ValueError, "x must be 3-D"),
    (np.zeros((0, 2, 3)), ValueError, "at least one time step"),
    (np.zeros((5, 0, 3)), ValueError, "at least one time step"),
    (np.array([["a", "b", "c"]]), TypeError, "x must hold real numbers"),
    (np.zeros((5, 2, 3), complex), TypeError, "x must hold real numbers"),
    (np.zeros((5, 2, 3), bool), TypeError, "x must hold real numbers"),
    ([[1, 2], [3]], TypeError, "x must be array-like"),
    (None, TypeError, "x must hold real numbers"),
])
def test_bad_x(x, exc, match):
    with pytest.raises(exc, match=match):
        fastlstm.LSTM(3, 4)(x)


@pytest.mark.parametrize("hx,exc,match", [
    (np.zeros((1, 2, 4)), TypeError, r"hx must be a tuple \(h0, c0\)"),
    ((np.zeros((1, 2, 4)),), TypeError, "hx must be a tuple"),
    ((np.zeros((1, 2, 4)), np.zeros((1, 3, 4))), ValueError, r"hx\[1\] \(c0\) must have shape"),
    ((np.zeros((2, 2, 4)), np.zeros((1, 2, 4))), ValueError, r"hx\[0\] \(h0\) must have shape"),
    ((np.zeros((2, 4)), np.zeros((2, 4))), ValueError, r"hx\[0\] \(h0\) must have shape"),
    ((np.zeros((1, 2, 4)), "c"), TypeError, r"hx\[1\] \(c0\) must hold real numbers"),
])
def test_bad_hx(hx, exc, match):
    with pytest.raises(exc, match=match):
        fastlstm.LSTM(3, 4)(X, hx)


@pytest.mark.parametrize("lengths,exc,match", [
    ([5], ValueError, "lengths must be a 1-D sequence of 2 ints"),
    ([[5, 5]], ValueError, "lengths must be a 1-D sequence"),
    ([0, 5], ValueError, r"lengths must be in 1\.\.5"),
    ([6, 5], ValueError, r"lengths must be in 1\.\.5"),
    ([-1, 5], ValueError, r"lengths must be in 1\.\.5"),
    ([2.5, 5], ValueError, "lengths must be whole numbers"),
    ([np.nan, 5], ValueError, "lengths must be whole numbers"),
    (["a", "b"], TypeError, "lengths must hold real numbers"),
])
def test_bad_lengths(lengths, exc, match):
    with pytest.raises(exc, match=match):
        fastlstm.LSTM(3, 4)(X, lengths=lengths)


def test_whole_float_lengths_are_accepted():
    y, _ = fastlstm.LSTM(3, 4)(X, lengths=np.array([5.0, 2.0]))
    assert np.all(y[2:, 1] == 0)


def test_lengths_need_batched_input():
    with pytest.raises(ValueError, match="lengths needs a batched"):
        fastlstm.LSTM(3, 4)(np.zeros((5, 3)), lengths=[5])


def test_bad_backward_arguments():
    m = fastlstm.LSTM(3, 4)
    y, (h, c) = m(X)
    dx_before, _ = m.backward(np.ones_like(y))
    grads_before = m.flat_grads.copy()
    with pytest.raises(ValueError, match=r"dy must have the shape of the last forward's y"):
        m.backward(np.zeros((5, 2, 5)))
    with pytest.raises(ValueError, match="dh_n must have the shape"):
        m.backward(np.zeros_like(y), dh_n=np.zeros((2, 2, 4)))
    with pytest.raises(ValueError, match="dc_n must have the shape"):
        m.backward(np.zeros_like(y), dc_n=np.zeros((1, 2)))
    with pytest.raises(TypeError, match="dy must hold real numbers"):
        m.backward(np.zeros(y.shape, complex))
    dx_after, _ = m.backward(np.ones_like(y))  # the failed calls left the tape intact
    np.testing.assert_array_equal(dx_after, dx_before)
    np.testing.assert_array_equal(m.flat_grads, grads_before)


def test_failed_forward_keeps_the_previous_tape():
    m = fastlstm.LSTM(3, 4, dtype="float64", seed=0)
    y, _ = m(X)
    with pytest.raises(ValueError):
        m(np.zeros((5, 2, 9)))
    dx, _ = m.backward(np.ones_like(y))
    assert dx.shape == X.shape


@pytest.mark.parametrize("change,exc,match", [
    (lambda d: d.pop("bias_hh_l0"), ValueError, r"missing \['bias_hh_l0'\]"),
    (lambda d: d.update(extra=np.zeros(3)), ValueError, r"unexpected \['extra'\]"),
    (lambda d: d.update(weight_hh_l0=np.zeros((16, 5))), ValueError,
     r"state_dict\['weight_hh_l0'\] must have shape \(16, 4\)"),
    (lambda d: d.update(bias_ih_l0=np.array(["x"] * 16)), TypeError, "must hold real numbers"),
])
def test_bad_state_dict_leaves_model_unchanged(change, exc, match):
    m = fastlstm.LSTM(3, 4, seed=0)
    before = m.state_dict()
    sd = {k: v + 1 for k, v in before.items()}
    change(sd)
    with pytest.raises(exc, match=match):
        m.load_state_dict(sd)
    for k, v in m.state_dict().items():
        np.testing.assert_array_equal(v, before[k])


def test_state_dict_with_a_prefix_gets_a_hint():
    m = fastlstm.LSTM(3, 4)
    with pytest.raises(ValueError, match="strip the prefix 'lstm.'"):
        m.load_state_dict({f"lstm.{k}": v for k, v in m.state_dict().items()})


def test_state_dict_must_be_a_mapping():
    with pytest.raises(TypeError, match="state_dict must be a mapping"):
        fastlstm.LSTM(3, 4).load_state_dict([1, 2])


def test_bad_set_num_threads():
    with pytest.raises(ValueError, match="n must be a positive int"):
        fastlstm.set_num_threads(0)
    with pytest.raises(TypeError, match="n must be a positive int"):
        fastlstm.set_num_threads(1.5)


def test_a_backend_that_refuses_a_case_falls_through_under_auto(monkeypatch):
    from fastlstm import backends
    from fastlstm.backends import reference

    class Picky:
        NAME = "picky"
        backward_layer = staticmethod(reference.backward_layer)

        @staticmethod
        def forward_layer(x, *args):
            if x.dtype == "float64":
                raise NotImplementedError("float64 is not supported")
            reference.forward_layer(x, *args)

    monkeypatch.setitem(backends.BACKENDS, "picky", ("picky", "test only", None))
    monkeypatch.setitem(backends._module_cache, "picky", Picky)
    monkeypatch.setattr(backends, "_status_cache", {"numpy": "", "picky": ""})
    monkeypatch.setattr(backends, "AUTO_ORDER", ["picky", "numpy"])
    auto64 = fastlstm.LSTM(3, 4, dtype="float64")
    auto64(X)
    assert auto64.backend_used == "numpy"
    auto32 = fastlstm.LSTM(3, 4)
    auto32(X)
    assert auto32.backend_used == "picky"
    named = fastlstm.LSTM(3, 4, dtype="float64", backend="picky")
    with pytest.raises(NotImplementedError, match="picky: float64 is not supported"):
        named(X)
