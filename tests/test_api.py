"""The public API's behaviour: shapes, modes, state dicts, dropout, stepping, threads."""
import warnings

import numpy as np
import pytest

import fastlstm
from conftest import random_problem


@pytest.mark.parametrize("layers,bidir,batch_first", [(1, False, False), (3, True, True)])
def test_output_shapes(layers, bidir, batch_first):
    m = fastlstm.LSTM(5, 7, num_layers=layers, bidirectional=bidir, batch_first=batch_first)
    D = 2 if bidir else 1
    x = np.zeros((4, 6, 5) if batch_first else (6, 4, 5), np.float32)
    y, (h, c) = m(x)
    assert y.shape == ((4, 6, D * 7) if batch_first else (6, 4, D * 7))
    assert h.shape == c.shape == (layers * D, 4, 7)
    assert y.dtype == h.dtype == np.float32
    assert y.flags.c_contiguous
    dx, (dh0, dc0) = m.backward(np.ones_like(y))
    assert dx.shape == x.shape and dh0.shape == h.shape and dc0.shape == c.shape


def test_state_dict_names_shapes_and_init_range():
    m = fastlstm.LSTM(3, 16, num_layers=2, bidirectional=True, seed=0)
    sd = m.state_dict()
    assert list(sd)[:4] == ["weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0"]
    assert sd["weight_ih_l1_reverse"].shape == (64, 32)
    assert set(sd) == set(m.grads)
    k = 1 / np.sqrt(16)
    for v in sd.values():
        assert v.dtype == np.float32 and np.all(np.abs(v) <= k)
    assert max(np.max(np.abs(v)) for v in sd.values()) > 0.9 * k  # really uniform, not tiny


def test_seed_makes_init_reproducible_and_state_dict_is_a_copy():
    a, b = fastlstm.LSTM(3, 4, seed=7), fastlstm.LSTM(3, 4, seed=7)
    c = fastlstm.LSTM(3, 4, seed=8)
    for k in a.state_dict():
        np.testing.assert_array_equal(a.state_dict()[k], b.state_dict()[k])
    assert not np.array_equal(a.state_dict()["weight_ih_l0"], c.state_dict()["weight_ih_l0"])
    sd = a.state_dict()
    sd["weight_ih_l0"][:] = 99
    assert not np.any(a.state_dict()["weight_ih_l0"] == 99)


def test_no_bias_has_no_bias_entries():
    m = fastlstm.LSTM(3, 4, bias=False)
    assert not any(k.startswith("bias") for k in m.state_dict())


def test_load_state_dict_round_trip_and_dtype_conversion():
    src = fastlstm.LSTM(3, 4, num_layers=2, dtype="float64", seed=1)
    dst = fastlstm.LSTM(3, 4, num_layers=2, dtype="float32", seed=2)
    dst.load_state_dict({k: v.tolist() for k, v in src.state_dict().items()})
    x = np.random.default_rng(0).standard_normal((5, 2, 3))
    np.testing.assert_allclose(dst(x)[0], src(x)[0], atol=1e-6)
    assert dst.state_dict()["weight_ih_l0"].dtype == np.float32


def test_eval_keeps_no_tape_and_backward_then_raises():
    m = fastlstm.LSTM(3, 4)
    with pytest.raises(RuntimeError, match="no forward"):
        m.backward(np.zeros((2, 1, 4)))
    assert m.training  # training by default, like torch
    y, _ = m.eval()(np.zeros((2, 1, 3)))
    assert not m.training and m._train_state().tape is None
    with pytest.raises(RuntimeError, match="eval mode"):
        m.backward(np.zeros_like(y))
    m.train()
    y, _ = m(np.zeros((2, 1, 3)))
    dx, (dh0, _) = m.backward(np.ones_like(y))  # fine again
    assert dx.shape == (2, 1, 3) and dh0.shape == (1, 1, 4) and np.any(dx != 0)


def test_eval_and_train_forward_agree_without_dropout():
    m = fastlstm.LSTM(3, 4, num_layers=2, seed=0)
    x = np.random.default_rng(1).standard_normal((6, 2, 3))
    y_train = m.train()(x)[0]
    y_eval = m.eval()(x)[0]
    np.testing.assert_array_equal(y_train, y_eval)


def test_dropout_only_in_training_and_scaled():
    p = 0.5
    m = fastlstm.LSTM(4, 64, num_layers=2, dropout=p, seed=0, dtype="float64")
    ref = fastlstm.LSTM(4, 64, num_layers=2, dropout=0.0, dtype="float64")
    ref.load_state_dict(m.state_dict())
    x = np.random.default_rng(2).standard_normal((3, 8, 4))
    np.testing.assert_array_equal(m.eval()(x)[0], ref.eval()(x)[0])
    m.train()
    y1, y2 = m(x)[0], m(x)[0]
    assert not np.array_equal(y1, y2)  # a fresh mask per forward
    mask = m._train_state().tape.masks[0]
    assert mask.shape == (3, 8, 64)
    assert set(np.unique(mask)) == {0.0, 1 / (1 - p)}
    assert 0.4 < np.mean(mask == 0) < 0.6


def test_dropout_with_one_layer_warns_and_changes_nothing():
    with pytest.warns(UserWarning, match="num_layers=1"):
        m = fastlstm.LSTM(3, 4, dropout=0.5, seed=0)
    ref = fastlstm.LSTM(3, 4)
    ref.load_state_dict(m.state_dict())
    x = np.ones((2, 1, 3))
    np.testing.assert_array_equal(m(x)[0], ref(x)[0])  # torch: dropout after all but last


@pytest.mark.parametrize("layers", [1, 3])
def test_one_step_calls_carrying_state_equal_one_long_call(layers):
    m = fastlstm.LSTM(3, 5, num_layers=layers, dtype="float64", seed=4).eval()
    x, hx, _ = random_problem(m, 7, 2, seed=5, with_hx=True)
    y_all, (h_all, c_all) = m(x, hx)
    state = hx
    for t in range(7):
        y_t, state = m(x[t:t + 1], state)
        np.testing.assert_allclose(y_t[0], y_all[t], rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(state[0], h_all, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(state[1], c_all, rtol=1e-12, atol=1e-12)


def test_lengths_equal_separate_runs_of_each_sequence():
    m = fastlstm.LSTM(3, 4, num_layers=2, bidirectional=True, dtype="float64", seed=2)
    x = np.random.default_rng(3).standard_normal((6, 3, 3))
    lengths = [6, 1, 4]
    y, (h, c) = m(x, lengths=lengths)
    for b, n in enumerate(lengths):
        yb, (hb, cb) = m(x[:n, b:b + 1])
        np.testing.assert_allclose(y[:n, b], yb[:, 0], atol=1e-12)
        assert np.all(y[n:, b] == 0)
        np.testing.assert_allclose(h[:, b], hb[:, 0], atol=1e-12)
        np.testing.assert_allclose(c[:, b], cb[:, 0], atol=1e-12)


def test_full_lengths_equal_no_lengths():
    m = fastlstm.LSTM(3, 4, bidirectional=True, seed=0)
    x = np.random.default_rng(0).standard_normal((5, 2, 3))
    np.testing.assert_array_equal(m(x, lengths=[5, 5])[0], m(x)[0])


def test_accepts_non_contiguous_and_other_dtypes():
    m = fastlstm.LSTM(3, 4, dtype="float64", seed=0)
    x = np.random.default_rng(0).standard_normal((5, 2, 6))[:, :, ::2]  # strided view
    assert not x.flags.c_contiguous
    y = m(x)[0]
    np.testing.assert_allclose(y, m(np.ascontiguousarray(x))[0])
    np.testing.assert_allclose(m(x.astype(np.float16))[0], m(x.astype(np.float16)
                                                                  .astype(np.float64))[0])
    assert m(np.ones((5, 2, 3), dtype=np.int32))[0].dtype == np.float64
    np.testing.assert_array_equal(m(x.tolist())[0], y)  # nested lists too


def test_nan_propagates():
    m = fastlstm.LSTM(3, 4, seed=0)
    x = np.zeros((4, 2, 3), np.float32)
    x[1, 0, 0] = np.nan
    y, (h, c) = m(x)
    assert np.all(np.isnan(y[1:, 0])) and np.all(np.isnan(h[0, 0]))
    assert np.all(np.isfinite(y[:, 1]))  # the other sequence is untouched
    dx, _ = m.backward(np.ones_like(y))
    assert np.isnan(dx[0, 0]).any()


def test_caller_may_modify_inputs_and_outputs_between_forward_and_backward():
    m = fastlstm.LSTM(3, 4, dtype="float64", seed=0)
    x = np.random.default_rng(0).standard_normal((5, 2, 3))
    y, (h, c) = m(x)
    dy = np.ones_like(y)
    dx1, _ = m.backward(dy)
    g1 = m.grads["weight_ih_l0"].copy()
    x[:] = 100.0
    y[:] = 5.0
    dx2, _ = m.backward(dy)
    np.testing.assert_array_equal(dx1, dx2)
    np.testing.assert_array_equal(g1, m.grads["weight_ih_l0"])


def test_backward_uses_the_weights_of_its_forward():
    m = fastlstm.LSTM(3, 4, dtype="float64", seed=0)
    x = np.random.default_rng(0).standard_normal((5, 2, 3))
    y, _ = m(x)
    dx1, _ = m.backward(np.ones_like(y))
    old = m.state_dict()
    m.load_state_dict({k: v * 2 for k, v in old.items()})
    dx2, _ = m.backward(np.ones_like(y))
    np.testing.assert_array_equal(dx1, dx2)


def test_grads_are_overwritten_not_accumulated():
    m = fastlstm.LSTM(3, 4, dtype="float64", seed=0)
    x = np.random.default_rng(0).standard_normal((5, 2, 3))
    y, _ = m(x)
    m.backward(np.ones_like(y))
    g1 = {k: v.copy() for k, v in m.grads.items()}
    m.backward(np.ones_like(y))
    for k in g1:
        np.testing.assert_array_equal(g1[k], m.grads[k])
    assert m.grads["bias_ih_l0"] is not m.grads["bias_hh_l0"]


def test_backends_and_threads_and_config():
    assert "numpy" in fastlstm.available_backends()
    m = fastlstm.LSTM(3, 4, backend="numpy")
    m(np.zeros((1, 1, 3)))
    assert m.backend_used == "numpy"
    old = fastlstm.get_num_threads()
    try:
        assert fastlstm.set_num_threads(1) == 1 and fastlstm.get_num_threads() == 1
    finally:
        fastlstm.set_num_threads(old)
    assert "LSTM(3, 4" in repr(m)


def test_show_config_prints_backends(capsys):
    fastlstm.show_config()
    out = capsys.readouterr().out
    assert "numpy" in out and "compiled extension" in out and "threads" in out


def test_import_does_not_load_heavy_modules():
    import subprocess
    import sys
    code = ("import sys, fastlstm; heavy = [m for m in ('numba', 'scipy', 'torch', 'Cython') "
            "if m in sys.modules]; print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"


# --- dtype rule: inputs are cast to the model's dtype, with a warning when that loses precision


def test_narrowing_cast_warns_once_per_model():
    m = fastlstm.LSTM(3, 4, seed=0)
    x64 = np.random.default_rng(0).standard_normal((5, 2, 3))
    with pytest.warns(fastlstm.PrecisionWarning, match="x has dtype float64 .* float32"):
        y = m(x64)[0]
    np.testing.assert_array_equal(y, m(x64.astype(np.float32))[0])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        m(x64)  # once per model: not again
        m.backward(np.ones(y.shape))  # nor for dy
        fastlstm.LSTM(3, 4, dtype="float64")(x64.astype(np.float32))  # widening: exact
        fastlstm.LSTM(3, 4)(np.ones((5, 2, 3), np.int16))  # small ints are exact
    with pytest.warns(fastlstm.PrecisionWarning, match=r"hx\[0\] \(h0\)"):
        fastlstm.LSTM(3, 4)(x64.astype(np.float32), (np.zeros((1, 2, 4)), np.zeros((1, 2, 4))))


def test_narrowing_warning_points_at_the_callers_line():
    m = fastlstm.LSTM(3, 4)
    with pytest.warns(fastlstm.PrecisionWarning) as record:
        m(np.zeros((2, 1, 3)))
    assert record[0].filename == __file__


# --- weights: versions, in-place updates, atomic publication


@pytest.mark.parametrize("backend", fastlstm.available_backends())
def test_update_weights_in_place_equals_loading_the_same_weights(backend):
    m = fastlstm.LSTM(3, 5, num_layers=2, bidirectional=True, backend=backend, seed=0)
    ref = fastlstm.LSTM(3, 5, num_layers=2, bidirectional=True, backend=backend)
    x = np.random.default_rng(1).standard_normal((4, 2, 3)).astype(np.float32)
    y, _ = m(x)  # packs the weights for this version
    m.backward(np.ones_like(y))
    v = m.weights_version
    expected = {k: w - 0.5 * m.grads[k] for k, w in m.state_dict().items()}
    with m.update_weights() as w:
        assert np.shares_memory(w.flat, m.flat_weights)
        assert np.shares_memory(w["weight_hh_l1_reverse"], w.flat)
        w.flat -= 0.5 * m.flat_grads  # grads views are laid out like the weights
    assert m.weights_version == v + 1
    for k, want in expected.items():
        np.testing.assert_array_equal(m.state_dict()[k], want)
    ref.load_state_dict(expected)
    np.testing.assert_array_equal(m(x)[0], ref(x)[0])  # no stale packed layout served


def test_grads_are_views_of_flat_grads_in_state_dict_order():
    m = fastlstm.LSTM(3, 4, num_layers=2, seed=0)
    y, _ = m(np.ones((2, 3, 3), np.float32))
    m.backward(np.ones_like(y))
    assert list(m.grads) == list(m.state_dict())
    flat = np.concatenate([g.ravel() for g in m.grads.values()])
    np.testing.assert_array_equal(flat, m.flat_grads)
    assert all(np.shares_memory(g, m.flat_grads) for g in m.grads.values())


def test_flat_weights_is_read_only_and_version_grows_on_load():
    m = fastlstm.LSTM(3, 4, seed=0)
    with pytest.raises(ValueError, match="read-only"):
        m.flat_weights[0] = 1.0
    v = m.weights_version
    m.load_state_dict(m.state_dict())
    assert m.weights_version == v + 1


def test_update_weights_bumps_the_version_even_when_the_block_raises():
    m = fastlstm.LSTM(3, 4, seed=0)
    x = np.ones((2, 1, 3), np.float32)
    m.eval()
    y0 = m(x)[0]
    with pytest.raises(KeyError):
        with m.update_weights() as w:
            w["weight_hh_l0"][:] = 0
            raise KeyError("optimizer failed half way")
    assert not np.array_equal(m(x)[0], y0)  # what was written is what runs


def test_backward_after_an_in_place_update_raises():
    m = fastlstm.LSTM(3, 4, seed=0)
    y, _ = m(np.ones((2, 1, 3), np.float32))
    with m.update_weights() as w:
        w.flat *= 2
    with pytest.raises(RuntimeError, match="changed in place"):
        m.backward(np.ones_like(y))


def test_a_layout_packed_from_old_weights_never_serves_new_ones():
    # the thread race of check-then-set caches, made deterministic: a call that started
    # on the old weights finishes (and caches) on them; the new version is untouched
    m = fastlstm.LSTM(3, 4, seed=0).eval()
    x = np.random.default_rng(0).standard_normal((3, 2, 3)).astype(np.float32)
    old = m._w
    new_sd = {k: -v for k, v in m.state_dict().items()}
    m.load_state_dict(new_sd)
    for kernel in m._kernels:
        old.packed(0, kernel)  # the late call of another thread, on the old version
    ref = fastlstm.LSTM(3, 4).eval()
    ref.load_state_dict(new_sd)
    np.testing.assert_array_equal(m(x)[0], ref(x)[0])


# --- pickling and copying: at any time, in any mode, on every backend


@pytest.mark.parametrize("backend", fastlstm.available_backends())
@pytest.mark.parametrize("when", ["new", "eval-forward", "train-forward", "after-backward"])
def test_pickle_and_deepcopy_round_trip(backend, when):
    import copy
    import pickle
    m = fastlstm.LSTM(3, 5, num_layers=2, bidirectional=True, dropout=0.2, backend=backend,
                      seed=0)
    x = np.random.default_rng(0).standard_normal((4, 2, 3)).astype(np.float32)
    if when == "eval-forward":
        m.eval()(x)
    elif when != "new":
        y, _ = m(x)
        if when == "after-backward":
            m.backward(np.ones_like(y))
    for clone in (pickle.loads(pickle.dumps(m)), copy.deepcopy(m)):
        assert clone.config == m.config and clone.backend == m.backend
        assert clone.training == m.training
        for k, v in m.state_dict().items():
            np.testing.assert_array_equal(clone.state_dict()[k], v)
        np.testing.assert_array_equal(clone.flat_grads, m.flat_grads)
        assert not np.shares_memory(clone.flat_weights, m.flat_weights)
        np.testing.assert_array_equal(clone.eval()(x)[0], copy.deepcopy(m).eval()(x)[0])
        clone.train()
        y, _ = clone(x)  # trains on the other side: packed layouts rebuilt there
        clone.backward(np.ones_like(y))
        assert np.all(np.isfinite(clone.flat_grads))
