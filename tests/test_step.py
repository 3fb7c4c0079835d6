"""LSTM.step: one time step with the state carried by the caller (a sensor loop). Its
results are the whole-sequence call's, bit for bit on the compiled backend (which never
hoists the input projection at these sizes), on every backend, batched or not."""
import threading

import numpy as np
import pytest

import fastlstm
from conftest import TOL


def _backends():
    return [b for b in ("cython", "numba", "numpy") if b in fastlstm.available_backends()]


def _stepped(m, x, state=None, unbatched=False):
    """Every step's y stacked, and the final state, through step()."""
    ys = []
    for t in range(x.shape[0]):
        y, state = m.step(x[t, 0] if unbatched else x[t], state)
        ys.append(y)
    return np.stack(ys), state


@pytest.mark.parametrize("backend", _backends())
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("layers,B,I,H", [(1, 1, 32, 128), (2, 3, 5, 17), (3, 9, 1, 50),
                                          (1, 1, 1, 1)])
@pytest.mark.parametrize("threads", [1, 2])
def test_steps_equal_the_whole_sequence(backend, dtype, layers, B, I, H, threads):
    fastlstm.set_num_threads(threads)
    try:
        m = fastlstm.LSTM(I, H, num_layers=layers, backend=backend, dtype=dtype, seed=3).eval()
        rng = np.random.default_rng(1)
        x = rng.standard_normal((12, B, I)).astype(dtype)
        h0 = rng.standard_normal((layers, B, H)).astype(dtype)
        c0 = rng.standard_normal((layers, B, H)).astype(dtype)
        y_full, (h_full, c_full) = m(x, (h0, c0))
        ys, (h, c) = _stepped(m, x, (h0, c0))
        if backend == "cython":  # the very same arithmetic, step by step
            np.testing.assert_array_equal(ys, y_full)
            np.testing.assert_array_equal(h, h_full)
            np.testing.assert_array_equal(c, c_full)
        else:
            tol = TOL[dtype]
            np.testing.assert_allclose(ys, y_full, rtol=tol, atol=tol)
            np.testing.assert_allclose(h, h_full, rtol=tol, atol=tol)
            np.testing.assert_allclose(c, c_full, rtol=tol, atol=tol)
        if B == 1:  # unbatched: x_t (I,), state (L, H)
            yu, (hu, cu) = _stepped(m, x, (h0[:, 0], c0[:, 0]), unbatched=True)
            assert yu.shape == (12, H) and hu.shape == (layers, H)
            np.testing.assert_array_equal(yu, ys[:, 0])
            np.testing.assert_array_equal(hu, h[:, 0])
            np.testing.assert_array_equal(cu, c[:, 0])
    finally:
        fastlstm.set_num_threads(fastlstm.threads.default_num_threads())


def test_no_state_means_zeros_and_inputs_are_never_written():
    m = fastlstm.LSTM(4, 8, num_layers=2, seed=0).eval()
    x = np.ones((3, 4), np.float32)
    zeros = (np.zeros((2, 3, 8), np.float32), np.zeros((2, 3, 8), np.float32))
    y0, s0 = m.step(x)
    y1, s1 = m.step(x, zeros)
    np.testing.assert_array_equal(y0, y1)
    np.testing.assert_array_equal(s0[0], s1[0])
    assert not zeros[0].any() and not zeros[1].any()  # new arrays out, inputs untouched
    y2, s2 = m.step(x, s1)
    assert s2[0] is not s1[0] and not np.array_equal(s2[0], s1[0])


def test_inputs_are_converted_like_call():
    m = fastlstm.LSTM(3, 5, seed=0).eval()
    x = np.arange(3, dtype=np.float32)
    y_ref, s_ref = m.step(x)
    y, s = m.step([0.0, 1.0, 2.0])  # a list
    np.testing.assert_array_equal(y, y_ref)
    strided = np.arange(6, dtype=np.float32)[::2]  # a view with gaps
    y, _ = m.step(strided)
    np.testing.assert_array_equal(y, m.step(np.ascontiguousarray(strided))[0])
    # a float64 state for a float32 model: cast (with the precision warning, once)
    with pytest.warns(fastlstm.PrecisionWarning):
        y3, _ = m.step(x, (s_ref[0].astype(np.float64), s_ref[1].astype(np.float64)))
    y4, _ = m.step(x, s_ref)
    np.testing.assert_array_equal(y3, y4)


def test_weights_reloaded_while_stepping_take_effect_at_the_next_step():
    m = fastlstm.LSTM(4, 6, seed=0).eval()
    other = fastlstm.LSTM(4, 6, seed=1).eval()
    x = np.ones((1, 4), np.float32)
    before, _ = m.step(x)
    m.load_state_dict(other.state_dict())
    after, _ = m.step(x)
    np.testing.assert_array_equal(after, other.step(x)[0])
    assert not np.array_equal(before, after)


def test_a_training_model_steps_as_in_eval_mode():
    m = fastlstm.LSTM(4, 6, num_layers=2, dropout=0.5, seed=0)  # training mode
    x = np.ones((2, 4), np.float32)
    y, _ = m.step(x)
    np.testing.assert_array_equal(y, m.eval()(x[None])[0][0])  # no dropout in a step
    m.train()
    with pytest.raises(RuntimeError):
        m.backward(np.ones((1, 2, 6), np.float32))  # a step leaves nothing to backward


@pytest.mark.parametrize("bad,err,match", [
    (np.ones((2, 5), np.float32), ValueError, "x_t must be"),
    (np.ones((2, 2, 4), np.float32), ValueError, "x_t must be"),
    (np.ones((0, 4), np.float32), ValueError, "x_t must be"),
    ("abc", TypeError, "x_t"),
])
def test_bad_input_is_refused_clearly(bad, err, match):
    m = fastlstm.LSTM(4, 6, seed=0).eval()
    with pytest.raises(err, match=match):
        m.step(bad)


def test_bad_state_is_refused_clearly():
    m = fastlstm.LSTM(4, 6, num_layers=2, seed=0).eval()
    x = np.ones((3, 4), np.float32)
    good = np.zeros((2, 3, 6), np.float32)
    with pytest.raises(ValueError, match=r"state\[0\] \(h\) must have shape \(2, 3, 6\)"):
        m.step(x, (np.zeros((1, 3, 6), np.float32), good))
    with pytest.raises(ValueError, match=r"state\[1\] \(c\) must have shape \(2, 3, 6\)"):
        m.step(x, (good, np.zeros((2, 2, 6), np.float32)))
    with pytest.raises(TypeError, match="state must be a tuple"):
        m.step(x, good)
    with pytest.raises(ValueError, match=r"state\[0\] \(h\) must have shape \(2, 6\)"):
        m.step(np.ones(4, np.float32), (good, good))  # a batched state for an unbatched x


def test_bidirectional_models_are_refused():
    m = fastlstm.LSTM(4, 6, bidirectional=True, seed=0).eval()
    with pytest.raises(ValueError, match="unidirectional models only"):
        m.step(np.ones((1, 4), np.float32))


def test_threads_stepping_one_model_keep_their_own_state():
    m = fastlstm.LSTM(3, 16, num_layers=2, seed=0).eval()
    rng = np.random.default_rng(0)
    xs = [rng.standard_normal((40, 2, 3)).astype(np.float32) for _ in range(4)]
    expected = [m(x)[0] for x in xs]
    got, errors = [None] * 4, []
    start = threading.Barrier(4)

    def work(i):
        try:
            start.wait()
            got[i] = _stepped(m, xs[i])[0]
        except Exception as exc:  # noqa: BLE001 (reported below)
            errors.append(repr(exc))

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    for g, e in zip(got, expected):
        np.testing.assert_array_equal(g, e)


@pytest.mark.parametrize("layers,T,B,I,H", [(1, 100, 1, 32, 128), (2, 10, 32, 1, 50),
                                            (3, 7, 5, 9, 17), (1, 1, 1, 4, 8)])
@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("with_state", [False, True])
def test_inference_on_ready_arrays_equals_the_general_path(monkeypatch, layers, T, B, I, H,
                                                           threads, with_state):
    """Eval-mode calls on ready arrays run the compiled runner (no per-call setup); the
    general layer loop gives the same bits."""
    if "cython" not in fastlstm.available_backends():
        pytest.skip("needs the compiled backend")
    fastlstm.set_num_threads(threads)
    try:
        m = fastlstm.LSTM(I, H, num_layers=layers, seed=2).eval()
        rng = np.random.default_rng(4)
        x = rng.standard_normal((T, B, I)).astype(np.float32)
        hx = (rng.standard_normal((layers, B, H)).astype(np.float32),
              rng.standard_normal((layers, B, H)).astype(np.float32)) if with_state else None
        fast = m(x, hx)
        assert m._local.stepper[1] is not None  # the runner took it
        monkeypatch.setattr(type(m), "_forward_ready", lambda self, x, hx: None)
        general = m(x, hx)
        np.testing.assert_array_equal(fast[0], general[0])
        np.testing.assert_array_equal(fast[1][0], general[1][0])
        np.testing.assert_array_equal(fast[1][1], general[1][1])
        with pytest.raises(RuntimeError):
            m.backward(np.ones_like(fast[0]))  # eval: nothing to backward, either way
    finally:
        fastlstm.set_num_threads(fastlstm.threads.default_num_threads())
