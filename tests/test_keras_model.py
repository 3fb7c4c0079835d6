"""fastlstm.keras's Sequential, callbacks and utils: classic Keras programs run with only
their imports changed and learn; one training step equals PyTorch's; runs repeat under a
seed; EarlyStopping, ModelCheckpoint, NaN losses, bad input and stateful models behave as
Keras's do; the utils match hand-computed results (and real Keras when installed)."""
import math
import os
import pickle

os.environ.setdefault("KERAS_BACKEND", "torch")  # before anything imports keras

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from fastlstm.keras import Sequential  # noqa: E402
from fastlstm.keras.callbacks import Callback, EarlyStopping, ModelCheckpoint  # noqa: E402
from fastlstm.keras.layers import LSTM, Dense, Dropout, Input  # noqa: E402
from fastlstm.keras.utils import (pad_sequences, set_random_seed,  # noqa: E402
                                  timeseries_windows, to_categorical)


def series_data(n=100, steps=10, seed=0):
    """The classic forecasting toy: windows of a noisy sine, the next value as target."""
    rng = np.random.default_rng(seed)
    t = np.arange(n + steps) * 0.3
    s = np.sin(t) + 0.05 * rng.standard_normal(len(t))
    x, y = timeseries_windows(s, steps)
    return x[:n], y[:n]


def classic_model(dropout=False):
    model = Sequential()
    model.add(LSTM(50, input_shape=(10, 1), return_sequences=True))
    if dropout:
        model.add(Dropout(0.2))
    model.add(LSTM(50))
    model.add(Dense(1))
    model.compile(optimizer="adam", loss="mse")
    return model


def class_data(n=150, steps=8, seed=1):
    """Three separable classes of sequences: rising, falling, flat, plus noise."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 3, n)
    ramp = np.linspace(-1, 1, steps)
    shapes = np.stack([ramp, -ramp, np.zeros(steps)])
    x = shapes[labels] + 0.3 * rng.standard_normal((n, steps))
    return x[:, :, None].astype(np.float32), labels


def same(a, b):
    return len(a) == len(b) and all(np.array_equal(u, v) for u, v in zip(a, b))


# ------------------------------------------------------------------ classic programs

def test_classic_forecaster_learns_and_predicts():
    set_random_seed(0)
    X, y = series_data()
    model = classic_model()
    history = model.fit(X, y, epochs=60, batch_size=32, verbose=0)
    loss = history.history["loss"]
    assert list(history.history) == ["loss"] and len(loss) == 60
    assert loss[-1] < 0.1 * loss[0], loss[::10]
    pred = model.predict(X, verbose=0)
    assert pred.shape == (100, 1) and pred.dtype == np.float32
    mse = float(np.mean((pred - y) ** 2))
    assert model.evaluate(X, y, verbose=0) == pytest.approx(mse, rel=1e-4)
    assert model.history is history
    # as in Keras, the steps may differ from the input_shape's (an LSTM runs any length)
    assert model.predict(np.concatenate([X, X], axis=1), verbose=0).shape == (100, 1)


def test_classic_forecaster_with_dropout_learns():
    set_random_seed(1)
    X, y = series_data(seed=3)
    model = classic_model(dropout=True)
    assert [type(layer).__name__ for layer in model.layers] == ["LSTM", "Dropout", "LSTM",
                                                                "Dense"]
    loss = model.fit(X, y, epochs=60, batch_size=32, verbose=0).history["loss"]
    assert loss[-1] < 0.2 * loss[0], loss[::10]
    # inference is deterministic (dropout off); training-mode calls are not
    assert np.array_equal(model.predict(X, verbose=0), model.predict(X, verbose=0))
    assert not np.array_equal(model(X, training=True), model(X, training=True))


def test_classifier_reaches_high_accuracy():
    set_random_seed(2)
    x, labels = class_data()
    model = Sequential()
    model.add(LSTM(16, input_shape=(8, 1)))
    model.add(Dense(3, activation="softmax"))
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    history = model.fit(x, labels, epochs=40, batch_size=16, verbose=0,
                        validation_split=0.2)
    h = history.history
    assert list(h) == ["loss", "accuracy", "val_loss", "val_accuracy"]
    assert h["accuracy"][-1] >= 0.9 and h["val_accuracy"][-1] >= 0.9, h["accuracy"][-5:]
    loss, acc = model.evaluate(x, labels, verbose=0)
    probs = model.predict(x, verbose=0)
    assert probs.shape == (150, 3)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)
    assert acc == pytest.approx(np.mean(probs.argmax(axis=1) == labels))
    assert loss == pytest.approx(-np.mean(np.log(probs[np.arange(150), labels])), rel=1e-4)
    # one-hot targets with categorical_crossentropy learn the same task
    model.compile(optimizer="adam", loss="categorical_crossentropy", metrics=["accuracy"])
    assert model.evaluate(x, to_categorical(labels), verbose=0)[1] == pytest.approx(acc)


def test_text_classifier_with_masked_embedding_and_bidirectional():
    """Padded token sequences; label 1 when token 3 occurs. Embedding(mask_zero=True) ->
    Bidirectional(LSTM) -> Dense(sigmoid) with binary_crossentropy learns it."""
    from fastlstm.keras.layers import Bidirectional, Embedding
    from fastlstm.keras.optimizers import Adam
    set_random_seed(3)
    rng = np.random.default_rng(0)
    seqs, labels = [], []
    for _ in range(200):
        seq = list(rng.integers(4, 20, rng.integers(3, 12)))
        labels.append(int(rng.random() < 0.5))
        if labels[-1]:
            seq[rng.integers(0, len(seq))] = 3
        seqs.append(seq)
    x, y = pad_sequences(seqs, maxlen=12), np.array(labels)
    model = Sequential([Embedding(20, 8, mask_zero=True), Bidirectional(LSTM(8)),
                        Dense(1, activation="sigmoid")])
    model.compile(optimizer=Adam(0.01), loss="binary_crossentropy", metrics=["accuracy"])
    h = model.fit(x, y, epochs=30, batch_size=32, verbose=0, validation_split=0.2).history
    assert h["accuracy"][-1] >= 0.95 and h["val_accuracy"][-1] >= 0.9, h["val_accuracy"]
    weights = model.get_weights()
    bad = x.copy()
    bad[5, -1] = 20
    with pytest.raises(ValueError, match=r"x must hold ids in \[0, 20\)"):
        model.fit(bad, y, verbose=0)
    assert same(model.get_weights(), weights)


def test_progress_output(capsys):
    set_random_seed(3)
    X, y = series_data(n=40)
    model = classic_model()
    model.fit(X, y, epochs=2, batch_size=32)  # verbose="auto": a bar per epoch
    out = capsys.readouterr().out
    assert "Epoch 1/2" in out and "Epoch 2/2" in out and "2/2" in out and "loss: " in out
    model.fit(X, y, epochs=2, batch_size=32, verbose=2, validation_split=0.25)
    lines = [line for line in capsys.readouterr().out.splitlines() if line]
    assert len(lines) == 2 and all("loss: " in line and "val_loss: " in line
                                   for line in lines)
    model.fit(X, y, epochs=2, verbose=0)
    assert capsys.readouterr().out == ""


def test_logs_are_batch_size_weighted_means_and_validation_split_takes_the_end():
    set_random_seed(4)
    X, y = series_data(n=100)
    model = classic_model()
    model.trainable = False  # the weights stay put, so every batch sees the same model
    model.compile(optimizer="adam", loss="mse", metrics=["mae"])
    h = model.fit(X, y, epochs=1, batch_size=32, validation_split=0.2, verbose=0).history
    pred = model.predict(X, verbose=0)
    err = pred - y
    # 80 training samples in batches of 32, 32, 16: the means weight each batch by its size
    assert h["loss"][0] == pytest.approx(np.mean(err[:80] ** 2), rel=1e-5)
    assert h["mae"][0] == pytest.approx(np.mean(np.abs(err[:80])), rel=1e-5)
    assert h["val_loss"][0] == pytest.approx(np.mean(err[80:] ** 2), rel=1e-5)
    assert h["val_mae"][0] == pytest.approx(np.mean(np.abs(err[80:])), rel=1e-5)
    logs = model.evaluate(X, y, batch_size=7, verbose=0, return_dict=True)
    assert logs["loss"] == pytest.approx(np.mean(err ** 2), rel=1e-5)
    assert model.test_on_batch(X[:10], y[:10])[0] == pytest.approx(np.mean(err[:10] ** 2),
                                                                    rel=1e-5)


def test_train_on_batch_returns_loss_before_the_update():
    set_random_seed(5)
    X, y = series_data(n=32)
    model = classic_model()
    model.compile(optimizer="adam", loss="mse", metrics=["mae"])
    before = model.predict(X, verbose=0)
    loss, mae = model.train_on_batch(X, y)
    assert loss == pytest.approx(np.mean((before - y) ** 2), rel=1e-5)
    assert mae == pytest.approx(np.mean(np.abs(before - y)), rel=1e-5)
    assert model.optimizer.iterations == 1
    assert not np.array_equal(model.predict(X, verbose=0), before)


# ------------------------------------------------------------------ against PyTorch

def test_training_step_matches_pytorch():
    torch = pytest.importorskip("torch")
    set_random_seed(6)
    B, T, F, H = 6, 5, 3, 4
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((B, T, F)), rng.standard_normal((B, 1))
    model = Sequential([LSTM(H, return_sequences=True, input_shape=(T, F), dtype="float64"),
                        LSTM(H, dtype="float64"), Dense(1, dtype="float64")])
    model.compile(optimizer="adam", loss="mse")
    # biases away from Keras's zeros, so their gradients are tested in general position
    model.set_weights([w + 0.1 * rng.standard_normal(w.shape) for w in model.get_weights()])
    k1, r1, b1, k2, r2, b2, dk, db = model.get_weights()

    def lstm(kernel, recurrent, bias, features):
        m = torch.nn.LSTM(features, H, batch_first=True, dtype=torch.float64)
        with torch.no_grad():
            m.weight_ih_l0.copy_(torch.from_numpy(kernel.T))
            m.weight_hh_l0.copy_(torch.from_numpy(recurrent.T))
            m.bias_ih_l0.copy_(torch.from_numpy(bias))
            m.bias_hh_l0.zero_()
        m.bias_hh_l0.requires_grad_(False)  # Keras has one bias: bias_ih here
        return m
    t1, t2 = lstm(k1, r1, b1, F), lstm(k2, r2, b2, H)
    lin = torch.nn.Linear(H, 1, dtype=torch.float64)
    with torch.no_grad():
        lin.weight.copy_(torch.from_numpy(dk.T))
        lin.bias.copy_(torch.from_numpy(db))
    params = [t1.weight_ih_l0, t1.weight_hh_l0, t1.bias_ih_l0, t2.weight_ih_l0,
              t2.weight_hh_l0, t2.bias_ih_l0, lin.weight, lin.bias]
    opt = torch.optim.Adam(params, lr=1e-3, betas=(0.9, 0.999),
                           eps=1e-7 / math.sqrt(1 - 0.999))  # Keras's epsilon at step 1
    h1, _ = t1(torch.from_numpy(x))
    _, (h2, _) = t2(h1)
    loss = torch.nn.functional.mse_loss(lin(h2[0]), torch.from_numpy(y))
    loss.backward()

    value = model.train_on_batch(x, y)
    assert value == pytest.approx(loss.item(), rel=1e-10)
    grads = [g for layer in model.layers for g in layer.grads]
    torch_grads = [p.grad.numpy() for p in params]
    for g, tg in zip(grads, torch_grads):
        np.testing.assert_allclose(g, tg.T if g.ndim == 2 else tg, rtol=1e-5, atol=1e-10)
    opt.step()
    for w, p in zip(model.get_weights(), params):
        p = p.detach().numpy()
        np.testing.assert_allclose(w, p.T if w.ndim == 2 else p, rtol=1e-5, atol=1e-9)
    assert not same(model.get_weights(), [k1, r1, b1, k2, r2, b2, dk, db])


def test_fit_matches_real_keras():
    """Same weights, same data, no shuffling: the same History (batch-size-weighted epoch
    means, the validation split from the end) and the same weights as Keras 3's fit."""
    keras = pytest.importorskip("keras")
    from fastlstm.keras.optimizers import SGD
    X, y = series_data(n=40, seed=5)
    K = keras.layers
    km = keras.Sequential([keras.Input((10, 1)), K.LSTM(6, return_sequences=True), K.LSTM(4),
                           K.Dense(1)])
    km.compile(optimizer=keras.optimizers.SGD(learning_rate=0.1), loss="mse",
               metrics=["mae"])
    model = Sequential([Input((10, 1)), LSTM(6, return_sequences=True), LSTM(4), Dense(1)])
    model.set_weights(km.get_weights())
    model.compile(optimizer=SGD(learning_rate=0.1), loss="mse", metrics=["mae"])
    kwargs = dict(epochs=3, batch_size=16, shuffle=False, validation_split=0.25, verbose=0)
    expected = km.fit(X, y, **kwargs).history
    got = model.fit(X, y, **kwargs).history
    assert list(got) == list(expected)
    for key in expected:
        np.testing.assert_allclose(got[key], expected[key], rtol=1e-4, err_msg=key)
    for a, b in zip(model.get_weights(), km.get_weights()):
        np.testing.assert_allclose(a, np.asarray(b), rtol=1e-4, atol=1e-5)


# ------------------------------------------------------------------ reproducibility

def _seeded_run(seed):
    set_random_seed(seed)
    X, y = series_data(n=60)
    model = Sequential([LSTM(8, input_shape=(10, 1), return_sequences=True, dropout=0.1),
                        Dropout(0.3), LSTM(6), Dense(1)])
    model.compile(optimizer="adam", loss="mse", metrics=["mae"])
    history = model.fit(X, y, epochs=3, batch_size=16, validation_split=0.25, verbose=0)
    return history.history, model.get_weights()


def test_same_seed_same_training():
    h1, w1 = _seeded_run(11)
    h2, w2 = _seeded_run(11)
    assert h1 == h2 and same(w1, w2)
    h3, w3 = _seeded_run(12)
    assert h3 != h1 and not same(w3, w1)


# ------------------------------------------------------------------ callbacks

class Script(Callback):
    """Writes scripted values into the logs (before the callbacks after it) and records
    the weights at each epoch's end."""

    def __init__(self, key, values):
        super().__init__()
        self.key, self.values, self.weights = key, values, []

    def on_epoch_end(self, epoch, logs=None):
        logs[self.key] = self.values[epoch]
        self.weights.append(self.model.get_weights())


def _small_model(seed=0):
    set_random_seed(seed)
    model = Sequential([LSTM(4, input_shape=(10, 1)), Dense(1)])
    model.compile(optimizer="adam", loss="mse")
    return model


@pytest.mark.parametrize("restore", [False, True])
def test_early_stopping_stops_and_restores_the_best(restore):
    X, y = series_data(n=40)
    model = _small_model()
    script = Script("val_loss", [1.0, 0.5, 0.6, 0.7, 0.8, 0.1, 0.1])
    stop = EarlyStopping(patience=2, restore_best_weights=restore)
    history = model.fit(X, y, epochs=7, verbose=0, callbacks=[script, stop])
    assert history.history["val_loss"] == [1.0, 0.5, 0.6, 0.7]  # stopped after epoch 4
    assert stop.stopped_epoch == 3 and stop.best == 0.5 and stop.best_epoch == 1
    assert same(model.get_weights(), script.weights[1 if restore else 3])


def test_early_stopping_restores_when_training_runs_to_the_end_and_follows_mode():
    X, y = series_data(n=40)
    model = _small_model()
    script = Script("val_loss", [1.0, 0.5, 0.9])
    model.fit(X, y, epochs=3, verbose=0,
              callbacks=[script, EarlyStopping(patience=5, restore_best_weights=True)])
    assert same(model.get_weights(), script.weights[1])
    # accuracy rises: mode "auto" treats a falling val_accuracy as no improvement
    script = Script("val_accuracy", [0.5, 0.4, 0.3, 0.9])
    h = model.fit(X, y, epochs=4, verbose=0,
                  callbacks=[script, EarlyStopping(monitor="val_accuracy", patience=1)])
    assert len(h.history["loss"]) == 2
    # min_delta: improvements smaller than it do not count
    script = Script("val_loss", [1.0, 0.99, 0.98, 0.97])
    h = model.fit(X, y, epochs=4, verbose=0,
                  callbacks=[script, EarlyStopping(min_delta=0.05, patience=1)])
    assert len(h.history["loss"]) == 2
    with pytest.raises(ValueError, match="mode"):
        EarlyStopping(mode="largest")
    with pytest.raises(ValueError, match="patience"):
        EarlyStopping(patience=-1)


def test_model_checkpoint_writes_files(tmp_path):
    pytest.importorskip("h5py")
    from fastlstm.keras.saving import load_model
    X, y = series_data(n=40)
    model = _small_model()
    pattern = str(tmp_path / "ck" / "m-{epoch:02d}-{loss:.3f}.keras")
    history = model.fit(X, y, epochs=3, verbose=0, callbacks=[ModelCheckpoint(pattern)])
    names = sorted(os.listdir(tmp_path / "ck"))
    assert names == [f"m-{e + 1:02d}-{loss:.3f}.keras"
                     for e, loss in enumerate(history.history["loss"])]
    assert same(load_model(tmp_path / "ck" / names[-1]).get_weights(), model.get_weights())

    script = Script("val_loss", [1.0, 2.0, 0.5])
    best = ModelCheckpoint(str(tmp_path / "best-{epoch}.keras"), save_best_only=True)
    model.fit(X, y, epochs=3, verbose=0, callbacks=[script, best])
    assert sorted(p for p in os.listdir(tmp_path) if p.startswith("best")) == [
        "best-1.keras", "best-3.keras"]
    assert best.best == 0.5

    weights_path = str(tmp_path / "w-{epoch}.weights.h5")
    model.fit(X, y, epochs=1, verbose=0,
              callbacks=[ModelCheckpoint(weights_path, save_weights_only=True)])
    fresh = _small_model(seed=99)
    fresh.load_weights(str(tmp_path / "w-1.weights.h5"))
    assert same(fresh.get_weights(), model.get_weights())
    with pytest.raises(ValueError, match=".keras"):
        ModelCheckpoint(str(tmp_path / "m.h5"))
    with pytest.raises(ValueError, match=".weights.h5"):
        ModelCheckpoint(str(tmp_path / "m.keras"), save_weights_only=True)
    with pytest.raises(KeyError, match="val_auc"):
        model.fit(X, y, epochs=1, verbose=0,
                  callbacks=[ModelCheckpoint(str(tmp_path / "{val_auc}.keras"))])


# ------------------------------------------------------------------ NaN losses

class BatchWeights(Callback):
    def __init__(self):
        super().__init__()
        self.after = []

    def on_train_batch_end(self, batch, logs=None):
        self.after.append(self.model.get_weights())


@pytest.mark.filterwarnings("ignore:invalid value:RuntimeWarning")
@pytest.mark.parametrize("what", ["loss", "gradient"])
def test_nan_stops_with_epoch_and_batch_before_the_update(what):
    X, y = series_data(n=100)
    model = _small_model()
    loss_fn = model._loss_fn
    original = loss_fn.value_and_grad
    calls = []

    def poisoned(y_true, y_pred):
        calls.append(1)
        value, grad = original(y_true, y_pred)
        if len(calls) == 6:  # epoch 2 (4 batches an epoch), batch 2
            if what == "loss":
                value = float("nan")
            else:
                grad = np.full_like(grad, np.inf)
        return value, grad
    loss_fn.value_and_grad = poisoned
    record = BatchWeights()
    with pytest.raises(FloatingPointError, match=f"{what}.*epoch 2/3, batch 2/4"):
        model.fit(X, y, epochs=3, batch_size=32, verbose=0, callbacks=[record])
    assert len(record.after) == 5
    assert same(model.get_weights(), record.after[-1])
    assert model.optimizer.iterations == 5
    assert all(np.isfinite(w).all() for w in model.get_weights())


# ------------------------------------------------------------------ bad input

def test_bad_input_names_the_argument_and_changes_nothing():
    X, y = series_data(n=40)
    model = _small_model()
    model.fit(X, y, epochs=1, verbose=0)
    weights, iterations = model.get_weights(), model.optimizer.iterations
    nan_x, inf_y = X.copy(), y.copy()
    nan_x[7, 3, 0] = np.nan
    inf_y[3, 0] = np.inf
    cases = [
        (dict(x=X, y=y[:30]), "same number of samples"),
        (dict(x=X[:, :, 0], y=y), r"x must have shape \(None, None, 1\)"),
        (dict(x=np.repeat(X, 2, axis=2), y=y), r"x must have shape \(None, None, 1\)"),
        (dict(x=nan_x, y=y), "x holds NaN or inf .*sample 7"),
        (dict(x=X, y=inf_y), "y holds NaN or inf"),
        (dict(x=X, y=y, batch_size=0), "batch_size"),
        (dict(x=X, y=y, epochs=-1), "epochs"),
        (dict(x=X, y=y, validation_split=1.0), "validation_split"),
        (dict(x=X, y=y, verbose=3), "verbose"),
        (dict(x=X, y=y, shuffle="batch"), "shuffle"),
        (dict(x=X, y=y, validation_data=X), "validation_data"),
        (dict(x=X, y=y, validation_data=(X[..., None], y)), r"validation_data\[0\]"),
        (dict(x=X, y=y, validation_data=(X, y[:5])), r"validation_data\[1\]"),
        (dict(x=X, y=y, validation_data=(X, y, np.ones(40))), "validation_data"),
        (dict(x=X, y=y, sample_weight=np.ones(40)), "sample_weight"),
        (dict(x=X[:1], y=y[:1], validation_split=0.5), "validation_split"),
        (dict(x=X, y=np.ones((40, 2))), "^y: "),
        (dict(x=[[1, 2], [3]], y=y), "x must be a rectangular array"),
        (dict(x=X, y=None), "y is required"),
    ]
    for kwargs, match in cases:
        kwargs.setdefault("verbose", 0)
        with pytest.raises((ValueError, TypeError), match=match):
            model.fit(**kwargs)
        assert same(model.get_weights(), weights), kwargs
        assert model.optimizer.iterations == iterations
    with pytest.raises(ValueError, match="x must have shape"):
        model.predict(X[:, :, :, None])
    with pytest.raises(ValueError, match="weights"):
        model.set_weights(weights[:-1])
    bad = [w.copy() for w in weights]
    bad[-1] = np.zeros((2,))
    with pytest.raises(ValueError, match=r"weights\[4\]"):
        model.set_weights(bad)
    bad[-1] = np.full_like(weights[-1], np.nan)
    with pytest.raises(ValueError, match="NaN"):
        model.set_weights(bad)
    assert same(model.get_weights(), weights)


def test_labels_out_of_range_are_refused_before_training():
    x, labels = class_data(n=30)
    model = Sequential([LSTM(4, input_shape=(8, 1)), Dense(3, activation="softmax")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    weights = model.get_weights()
    bad = labels.copy()
    bad[4] = 3
    with pytest.raises(ValueError, match="^y: "):
        model.fit(x, bad, verbose=0)
    bad[4] = -1
    with pytest.raises(ValueError, match="^y: "):
        model.fit(x, bad, verbose=0)
    assert same(model.get_weights(), weights) and model.optimizer.iterations == 0


def test_compile_errors_and_fit_before_compile():
    X, y = series_data(n=10)
    model = Sequential([LSTM(4, input_shape=(10, 1)), Dense(1)])
    with pytest.raises(ValueError, match="compile"):
        model.fit(X, y, verbose=0)
    with pytest.raises(ValueError, match="adamm"):
        model.compile(optimizer="adamm", loss="mse")
    with pytest.raises(ValueError, match="msee"):
        model.compile(optimizer="adam", loss="msee")
    with pytest.raises(ValueError, match="accuracyy"):
        model.compile(optimizer="adam", loss="mse", metrics=["accuracyy"])
    assert not model.compiled and model.optimizer is None
    model.compile(optimizer="adam")
    with pytest.raises(ValueError, match="loss"):
        model.fit(X, y, verbose=0)
    with pytest.raises(ValueError, match="unique names"):
        Sequential([LSTM(3, name="a"), LSTM(3, name="a")])
    with pytest.raises(ValueError, match="InputLayer"):
        Sequential([LSTM(3), Input((4, 2))])
    with pytest.raises(TypeError, match="layer"):
        Sequential().add("lstm")


# ------------------------------------------------------------------ stateful

def test_stateful_predict_carries_state_across_calls():
    set_random_seed(8)
    model = Sequential([Input((None, 2), batch_size=2),
                        LSTM(4, stateful=True, return_sequences=True)])
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 9, 2)).astype(np.float32)
    a = model.predict(x[:, :5], verbose=0)
    b = model.predict(x[:, 5:], verbose=0)
    model.reset_states()
    whole = model.predict(x, verbose=0)
    np.testing.assert_allclose(np.concatenate([a, b], axis=1), whole, rtol=1e-5, atol=1e-6)
    model.reset_states()
    np.testing.assert_array_equal(model.predict(x[:, :5], verbose=0), a)  # restarted
    # batches of one call run in order: sample i of batch 2 continues sample i of batch 1
    model.reset_states()
    four = np.concatenate([x[:, :4], x[:, 5:9]], axis=0)
    both = model.predict(four, verbose=0)  # batch_size = the fixed 2
    model.reset_states()
    first = model.predict(four[:2], verbose=0)
    second = model.predict(four[2:], verbose=0)
    np.testing.assert_array_equal(both, np.concatenate([first, second]))
    with pytest.raises(ValueError, match="divide"):
        model.predict(four[:3], verbose=0)
    with pytest.raises(ValueError, match="batch_size"):
        model.predict(four, batch_size=4, verbose=0)


def test_stateful_fit_keeps_batch_order():
    X, y = series_data(n=32)
    runs = []
    for shuffle in (True, False):
        set_random_seed(9)
        model = Sequential([LSTM(4, stateful=True, input_shape=(10, 1), batch_size=8),
                            Dense(1)])
        model.compile(optimizer="adam", loss="mse")
        model.fit(X, y, epochs=2, batch_size=8, shuffle=shuffle, verbose=0)
        runs.append(model.get_weights())
    assert same(*runs)
    with pytest.raises(ValueError, match="divide"):
        model.fit(X[:30], y[:30], verbose=0)


# ------------------------------------------------------------------ model API

def test_summary_config_weights_and_save(tmp_path, capsys):
    set_random_seed(10)
    model = classic_model()
    assert model.count_params() == 30651  # Keras's count for this model
    model.summary()
    out = capsys.readouterr().out
    for text in ('Model: "', "lstm", "(None, 10, 50)", "10,400", "20,200", "(None, 1)",
                 "Total params: 30,651", "Trainable params: 30,651",
                 "Non-trainable params: 0"):
        assert text in out
    X, _ = series_data(n=20)
    config = model.get_config()
    assert config["build_input_shape"] == [None, 10, 1]
    assert [e["class_name"] for e in config["layers"]] == ["LSTM", "LSTM", "Dense"]
    clone = Sequential.from_config(config)
    assert clone.built and [w.shape for w in clone.get_weights()] == [
        w.shape for w in model.get_weights()]
    clone.set_weights(model.get_weights())
    np.testing.assert_array_equal(clone.predict(X, verbose=0), model.predict(X, verbose=0))
    copied = pickle.loads(pickle.dumps(model))  # multiprocessing / Dask ship models so
    np.testing.assert_array_equal(copied.predict(X, verbose=0), model.predict(X, verbose=0))
    unbuilt = Sequential([LSTM(3), Dense(1)])
    unbuilt.summary()
    assert "unbuilt" in capsys.readouterr().out
    with pytest.raises(ValueError, match="not built"):
        unbuilt.count_params()
    pytest.importorskip("h5py")
    from fastlstm.keras.saving import load_model
    model.save(tmp_path / "m.keras")
    loaded = load_model(tmp_path / "m.keras")
    np.testing.assert_array_equal(loaded.predict(X, verbose=0), model.predict(X, verbose=0))


# ------------------------------------------------------------------ utils

def test_timeseries_windows():
    x, y = timeseries_windows([1, 2, 3, 4, 5, 6], lookback=3)
    np.testing.assert_array_equal(x[:, :, 0], [[1, 2, 3], [2, 3, 4], [3, 4, 5]])
    np.testing.assert_array_equal(y, [[4], [5], [6]])
    assert x.dtype == np.float32 and x.flags.c_contiguous
    s = np.arange(14).reshape(7, 2)
    x, y = timeseries_windows(s, lookback=2, horizon=3)
    assert x.shape == (3, 2, 2) and y.shape == (3, 3, 2)
    np.testing.assert_array_equal(x[1], [[2, 3], [4, 5]])
    np.testing.assert_array_equal(y[1], [[6, 7], [8, 9], [10, 11]])
    for kwargs, match in [(dict(lookback=0), "lookback"), (dict(lookback=2, horizon=0),
                                                           "horizon"),
                          (dict(lookback=6), "too short")]:
        with pytest.raises(ValueError, match=match):
            timeseries_windows([1, 2, 3, 4, 5, 6], **kwargs)
    with pytest.raises(ValueError, match="NaN"):
        timeseries_windows([1, 2, np.nan, 4], 2)


PAD_CASES = [dict(), dict(maxlen=2), dict(maxlen=4, padding="post"),
             dict(maxlen=2, truncating="post"), dict(maxlen=5, value=-1),
             dict(dtype="float32", maxlen=3, padding="post", truncating="post", value=0.5)]
SEQS = [[1, 2, 3], [4], [], [5, 6, 7, 8, 9]]


def test_pad_sequences_by_hand():
    np.testing.assert_array_equal(pad_sequences(SEQS), [[0, 0, 1, 2, 3], [0, 0, 0, 0, 4],
                                                        [0, 0, 0, 0, 0], [5, 6, 7, 8, 9]])
    np.testing.assert_array_equal(pad_sequences(SEQS, maxlen=2, truncating="post",
                                                padding="post"),
                                  [[1, 2], [4, 0], [0, 0], [5, 6]])
    out = pad_sequences([[[1, 2], [3, 4]], [[5, 6]]], dtype="float32")
    assert out.shape == (2, 2, 2) and out.dtype == np.float32
    np.testing.assert_array_equal(out[1], [[0, 0], [5, 6]])
    with pytest.raises(ValueError, match="padding"):
        pad_sequences(SEQS, padding="middle")
    with pytest.raises(ValueError, match="item 1"):
        pad_sequences([[1], 2])


@pytest.mark.parametrize("kwargs", PAD_CASES)
def test_pad_sequences_matches_keras(kwargs):
    keras = pytest.importorskip("keras")
    expected = keras.utils.pad_sequences(SEQS, **kwargs)
    got = pad_sequences(SEQS, **kwargs)
    assert got.dtype == expected.dtype
    np.testing.assert_array_equal(got, expected)


def test_to_categorical():
    np.testing.assert_array_equal(to_categorical([0, 2, 1]),
                                  [[1, 0, 0], [0, 0, 1], [0, 1, 0]])
    out = to_categorical(np.array([[1], [0]]), num_classes=4)
    np.testing.assert_array_equal(out, [[0, 1, 0, 0], [1, 0, 0, 0]])
    assert to_categorical(np.zeros((2, 3), int), 2).shape == (2, 3, 2)
    with pytest.raises(ValueError, match="num_classes"):
        to_categorical([0, 3], num_classes=3)
    with pytest.raises(ValueError, match=">= 0"):
        to_categorical([-1, 0])


def test_set_random_seed_checks_its_argument():
    with pytest.raises(ValueError, match="seed"):
        set_random_seed(-1)
    with pytest.raises(ValueError, match="seed"):
        set_random_seed(1.5)
