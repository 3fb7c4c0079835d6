"""fastlstm.keras files: Keras 3 .keras / .weights.h5 both ways against real Keras, Keras 2
.h5 (CuDNNLSTM included) built byte for byte with h5py, and bad files refused cleanly."""
import io
import json
import os
import struct
import sys
import zipfile

os.environ.setdefault("KERAS_BACKEND", "torch")  # before anything imports keras

import numpy as np  # noqa: E402
import pytest  # noqa: E402

h5py = pytest.importorskip("h5py")

import fastlstm.keras as fk  # noqa: E402
from fastlstm.keras import saving  # noqa: E402

TOL = dict(rtol=1e-5, atol=1e-5)


@pytest.fixture(scope="module")
def keras():
    keras = pytest.importorskip("keras")
    if keras.backend.backend() != "torch":
        pytest.skip("these comparisons run Keras on the torch backend")
    return keras


class _KerasNames:
    """keras's names in the shape of the fastlstm.keras module, so one builder makes both."""

    def __init__(self, keras):
        self.Sequential, self.Input = keras.Sequential, keras.Input
        for name in ("LSTM", "Bidirectional", "Dense", "Dropout", "Embedding"):
            setattr(self, name, getattr(keras.layers, name))


# ------------------------------------------------------------------ model cases

def _lstm_stack(K):
    return K.Sequential([K.Input((10, 3)), K.LSTM(8, return_sequences=True), K.LSTM(6),
                         K.Dense(2, activation="softmax")])


def _bidirectional(merge_mode):
    def build(K):
        return K.Sequential([K.Input((6, 3)),
                             K.Bidirectional(K.LSTM(5, return_sequences=True),
                                             merge_mode=merge_mode),
                             K.Bidirectional(K.LSTM(4), merge_mode=merge_mode),
                             K.Dense(1)])
    return build


def _dense_activations(K):
    return K.Sequential([K.Input((5, 2)), K.LSTM(6), K.Dense(5, activation="relu"),
                         K.Dense(4, activation="tanh"), K.Dense(3, activation="sigmoid"),
                         K.Dense(2, activation="linear"), K.Dense(2, activation="softmax")])


def _dropout(K):
    return K.Sequential([K.Input((7, 2)), K.LSTM(6, return_sequences=True), K.Dropout(0.5),
                         K.LSTM(4), K.Dropout(0.25), K.Dense(1)])


def _embedding(K):
    return K.Sequential([K.Input((8,), dtype="int32"), K.Embedding(20, 5, mask_zero=True),
                         K.LSTM(4), K.Dense(1, activation="sigmoid")])


CASES = {
    "lstm_stack": _lstm_stack,
    "bidi_concat": _bidirectional("concat"), "bidi_sum": _bidirectional("sum"),
    "bidi_ave": _bidirectional("ave"), "bidi_mul": _bidirectional("mul"),
    "dense_activations": _dense_activations,
    "dropout": _dropout,
    "embedding_mask_zero": _embedding,
}


def _inputs(case, seed=1):
    rng = np.random.default_rng(seed)
    if case == "embedding_mask_zero":  # padded integer sequences, padding = 0
        x = rng.integers(1, 20, size=(5, 8))
        for row, length in enumerate([8, 5, 3, 1, 6]):
            x[row, length:] = 0
        return x.astype("int32")
    shape = {"lstm_stack": (4, 10, 3), "dense_activations": (4, 5, 2),
             "dropout": (4, 7, 2)}.get(case, (4, 6, 3))
    return rng.standard_normal(shape).astype("float32")


def _randomize(model, seed=0):
    """Every weight (biases too) drawn at random, so that nothing passes by being zero."""
    rng = np.random.default_rng(seed)
    model.set_weights([rng.uniform(-0.6, 0.6, w.shape).astype("float32")
                       for w in model.get_weights()])


def _keras_predict(keras, model, x):
    return keras.ops.convert_to_numpy(model(x, training=False))


def _predict(model, x):
    return np.asarray(model.predict(x, verbose=0))


# ------------------------------------------------------------------ .keras both ways

@pytest.mark.parametrize("case", list(CASES))
def test_keras_file_loads_with_keras_predictions(keras, case, tmp_path):
    km = CASES[case](_KerasNames(keras))
    _randomize(km)
    path = tmp_path / "model.keras"
    km.save(path)
    model = fk.load_model(path)
    assert isinstance(model, fk.Sequential)
    x = _inputs(case)
    np.testing.assert_allclose(_predict(model, x), _keras_predict(keras, km, x), **TOL)


@pytest.mark.parametrize("case", list(CASES))
def test_saved_file_loads_in_keras(keras, case, tmp_path):
    model = CASES[case](fk)
    _randomize(model, seed=3)
    path = tmp_path / "model.keras"
    fk.save_model(model, path)
    assert not [p for p in os.listdir(tmp_path) if ".tmp" in p]
    with zipfile.ZipFile(path) as zf:
        assert sorted(zf.namelist()) == ["config.json", "metadata.json", "model.weights.h5"]
    km = keras.saving.load_model(path)
    x = _inputs(case)
    np.testing.assert_allclose(_keras_predict(keras, km, x), _predict(model, x), **TOL)
    # and back: the file fastlstm wrote reads into fastlstm with the same weights
    again = fk.load_model(path)
    for a, b in zip(again.get_weights(), model.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_model_without_input_layer_and_functional_chain(keras, tmp_path):
    L = keras.layers
    x = np.random.default_rng(2).standard_normal((5, 4, 2)).astype("float32")
    km = keras.Sequential([L.LSTM(3, return_sequences=True), L.LSTM(2), L.Dense(1)])
    km(x[:1])  # built by a call on one sample: the file records batch size 1
    _randomize(km)
    inp = keras.Input((4, 2))
    h = L.LSTM(3, return_sequences=True)(inp)
    fm = keras.Model(inp, L.Dense(1)(L.LSTM(2)(h)))
    fm.set_weights(km.get_weights())
    for i, m in enumerate((km, fm)):
        m.save(tmp_path / f"m{i}.keras")
        ours = fk.load_model(tmp_path / f"m{i}.keras")
        np.testing.assert_allclose(_predict(ours, x), _keras_predict(keras, km, x), **TOL)


def test_functional_graph_that_is_not_a_chain_is_refused(keras, tmp_path):
    L = keras.layers
    inp = keras.Input((4, 2))
    h = L.LSTM(3, return_sequences=True)(inp)
    out = L.Dense(1)(L.Concatenate()([L.LSTM(2)(h), L.LSTM(2)(inp)]))
    keras.Model(inp, out).save(tmp_path / "graph.keras")
    with pytest.raises(ValueError, match="only Sequential"):
        fk.load_model(tmp_path / "graph.keras")


def test_compile_config_round_trips(keras, tmp_path):
    km = _lstm_stack(_KerasNames(keras))
    km.compile(optimizer=keras.optimizers.Adam(learning_rate=0.01), loss="mse",
               metrics=["mae"])
    x, y = _inputs("lstm_stack"), np.random.default_rng(0).random((4, 2)).astype("float32")
    km.fit(x, y, epochs=1, verbose=0)  # the file then holds optimizer state too
    km.save(tmp_path / "k.keras")
    model = fk.load_model(tmp_path / "k.keras")
    assert type(model.optimizer).__name__ == "Adam"
    assert model.optimizer.learning_rate == pytest.approx(0.01)
    assert type(model.loss).__name__ == "MeanSquaredError"
    np.testing.assert_allclose(_predict(model, x), _keras_predict(keras, km, x), **TOL)
    assert fk.load_model(tmp_path / "k.keras", compile=False).optimizer is None

    model = _lstm_stack(fk)
    model.compile(optimizer=fk.SGD(learning_rate=0.05, momentum=0.9),
                  loss=fk.losses.Huber(delta=2.0), metrics=["mae"])
    fk.save_model(model, tmp_path / "f.keras")
    km = keras.saving.load_model(tmp_path / "f.keras")
    assert isinstance(km.optimizer, keras.optimizers.SGD)
    assert float(km.optimizer.learning_rate) == pytest.approx(0.05)
    assert float(km.optimizer.momentum) == pytest.approx(0.9)
    assert isinstance(km.loss, keras.losses.Huber)
    err = np.full((2, 2), 1.5, "float32")  # |error| 1.5: quadratic for delta 2, not for 1
    assert float(km.loss(np.zeros_like(err), err)) == pytest.approx(0.5 * 1.5 ** 2)
    assert km.get_compile_config()["metrics"] == ["mae"]
    # after training, the optimizer's step count and slots go into the file as Keras's
    model.fit(x, y, epochs=2, batch_size=2, verbose=0)
    fk.save_model(model, tmp_path / "f.keras")
    km = keras.saving.load_model(tmp_path / "f.keras")
    assert int(km.optimizer.iterations) == model.optimizer.iterations == 4
    momentum = [v for v in km.optimizer.variables if v.path.endswith("momentum")]
    assert len(momentum) == len(model.get_weights())
    for i, v in enumerate(momentum):
        np.testing.assert_allclose(keras.ops.convert_to_numpy(v),
                                   model.optimizer.slot("momentum", i), **TOL)
    np.testing.assert_allclose(_keras_predict(keras, km, x), _predict(model, x), **TOL)
    again = fk.load_model(tmp_path / "f.keras")
    assert type(again.optimizer).__name__ == "SGD"
    assert again.optimizer.get_config()["momentum"] == pytest.approx(0.9)
    assert type(again.loss).__name__ == "Huber"


# ------------------------------------------------------------------ weights files

def test_weights_files_both_ways(keras, tmp_path):
    build = _bidirectional("concat")
    km = build(_KerasNames(keras))
    _randomize(km)
    km.save_weights(tmp_path / "k.weights.h5")
    model = build(fk)
    fk.saving.load_weights(model, tmp_path / "k.weights.h5")
    x = _inputs("bidi_concat")
    np.testing.assert_allclose(_predict(model, x), _keras_predict(keras, km, x), **TOL)

    _randomize(model, seed=5)
    fk.saving.save_weights(model, tmp_path / "f.weights.h5")
    km.load_weights(tmp_path / "f.weights.h5")
    np.testing.assert_allclose(_keras_predict(keras, km, x), _predict(model, x), **TOL)
    with pytest.raises(ValueError, match=r"\.weights\.h5"):
        fk.saving.save_weights(model, tmp_path / "f.h5")


# ------------------------------------------------------------------ Keras 2 .h5 files

def _to_cudnn(kernel, recurrent_kernel, bias, rng):
    """Keras LSTM weights in Keras 2 CuDNNLSTM's stored layout (the inverse of Keras 2's
    converter): per gate the kernel block's transpose laid row-major into (I, H), the
    recurrent block transposed, the bias split into input and recurrent halves."""
    inputs, gates = kernel.shape
    k = np.concatenate([blk.T.reshape(inputs, gates // 4)
                        for blk in np.split(kernel, 4, axis=1)], axis=1)
    r = np.concatenate([blk.T for blk in np.split(recurrent_kernel, 4, axis=1)], axis=1)
    half = rng.uniform(-0.5, 0.5, bias.shape).astype(bias.dtype)
    return [k, r, np.concatenate([half, bias - half])]


def _write_keras2_h5(path, layer_configs, layer_weights, training_config=None,
                     weights_only=False):
    """A file laid out as Keras 2.x's save_model / save_weights wrote it: fixed-length
    byte-string attrs, one group per layer with weight_names, datasets below it."""
    with h5py.File(path, "w") as f:
        if not weights_only:
            f.attrs["keras_version"] = b"2.2.4"
            f.attrs["backend"] = b"tensorflow"
            config = {"class_name": "Sequential",
                      "config": {"name": "sequential_1", "layers": layer_configs}}
            f.attrs["model_config"] = json.dumps(config).encode("utf8")
            if training_config is not None:
                f.attrs["training_config"] = json.dumps(training_config).encode("utf8")
            group = f.create_group("model_weights")
        else:
            group = f
        names = [c["config"]["name"] for c in layer_configs]
        group.attrs["layer_names"] = np.array([n.encode("utf8") for n in names])
        group.attrs["backend"] = b"tensorflow"
        group.attrs["keras_version"] = b"2.2.4"
        for name in names:
            sub = group.create_group(name)
            weights = layer_weights.get(name, [])
            sub.attrs["weight_names"] = np.array([w.encode("utf8") for w, _ in weights])
            for wname, value in weights:
                sub.create_dataset(wname, data=value)
        if not weights_only and training_config is not None:
            opt = f.create_group("optimizer_weights")
            opt.attrs["weight_names"] = np.array([b"Adam/iterations:0"])
            opt.create_dataset("Adam/iterations:0", data=np.int64(3))


def _keras2_lstm_config(name, units, cudnn=False, batch_input_shape=None, **extra):
    config = {"name": name, "trainable": True, "dtype": "float32", "units": units,
              "return_sequences": False, "return_state": False, "go_backwards": False,
              "stateful": False,
              "kernel_initializer": {"class_name": "VarianceScaling",
                                     "config": {"scale": 1.0, "mode": "fan_avg",
                                                "distribution": "uniform", "seed": None}},
              "recurrent_initializer": {"class_name": "Orthogonal",
                                        "config": {"gain": 1.0, "seed": None}},
              "bias_initializer": {"class_name": "Zeros", "config": {}},
              "unit_forget_bias": True, "kernel_regularizer": None,
              "recurrent_regularizer": None, "bias_regularizer": None,
              "activity_regularizer": None, "kernel_constraint": None,
              "recurrent_constraint": None, "bias_constraint": None}
    if not cudnn:
        config.update(activation="tanh", recurrent_activation="sigmoid", use_bias=True,
                      dropout=0.0, recurrent_dropout=0.0, implementation=2, unroll=False)
    if batch_input_shape is not None:
        config["batch_input_shape"] = batch_input_shape
    config.update(extra)
    return {"class_name": "CuDNNLSTM" if cudnn else "LSTM", "config": config}


def _keras2_dense_config(name, units):
    return {"class_name": "Dense", "config": {
        "name": name, "trainable": True, "dtype": "float32", "units": units,
        "activation": "linear", "use_bias": True,
        "kernel_initializer": {"class_name": "VarianceScaling",
                               "config": {"scale": 1.0, "mode": "fan_avg",
                                          "distribution": "uniform", "seed": None}},
        "bias_initializer": {"class_name": "Zeros", "config": {}},
        "kernel_regularizer": None, "bias_regularizer": None, "activity_regularizer": None,
        "kernel_constraint": None, "bias_constraint": None}}


def _reference(build_layers, weights, x):
    """Predictions of a fastlstm model built natively with Keras-layout weights."""
    model = fk.Sequential(build_layers())
    model.set_weights(weights)
    return _predict(model, x)


@pytest.mark.parametrize("cudnn", [False, True])
def test_keras2_h5_model(cudnn, tmp_path):
    rng = np.random.default_rng(7)
    I, H = 3, 5  # I != H, so a kernel laid out the wrong way cannot pass
    kernel, recurrent = rng.uniform(-0.5, 0.5, (I, 4 * H)), rng.uniform(-0.5, 0.5, (H, 4 * H))
    bias, dense_k, dense_b = (rng.uniform(-0.5, 0.5, s) for s in ((4 * H,), (H, 2), (2,)))
    keras_weights = [a.astype("float32") for a in (kernel, recurrent, bias, dense_k, dense_b)]
    stored = (_to_cudnn(*keras_weights[:3], rng) if cudnn else keras_weights[:3])
    lstm = "cu_dnnlstm_1" if cudnn else "lstm_1"
    layer_weights = {
        lstm: [(f"{lstm}/{n}:0", w) for n, w in zip(("kernel", "recurrent_kernel", "bias"),
                                                     stored)],
        "dense_1": [("dense_1/kernel:0", keras_weights[3]), ("dense_1/bias:0", keras_weights[4])],
    }
    configs = [_keras2_lstm_config(lstm, H, cudnn=cudnn, batch_input_shape=[None, 7, I]),
               _keras2_dense_config("dense_1", 2)]
    training = {"optimizer_config": {"class_name": "Adam", "config": {
        "lr": 0.002, "beta_1": 0.9, "beta_2": 0.999, "decay": 0.0, "epsilon": 1e-07,
        "amsgrad": False}}, "loss": "mse", "metrics": ["mae"], "sample_weight_mode": None,
        "loss_weights": None}
    path = tmp_path / "keras2.h5"
    _write_keras2_h5(path, configs, layer_weights, training)
    model = fk.load_model(path)
    x = np.random.default_rng(1).standard_normal((3, 7, I)).astype("float32")
    expected = _reference(lambda: [fk.Input((7, I)), fk.LSTM(H), fk.Dense(2)], keras_weights, x)
    np.testing.assert_allclose(_predict(model, x), expected, **TOL)
    assert type(model.optimizer).__name__ == "Adam"
    assert model.optimizer.learning_rate == pytest.approx(0.002)

    # the same weights as a Keras 2 weights-only file, into a model built to match
    _write_keras2_h5(tmp_path / "w.h5", configs, layer_weights, weights_only=True)
    fresh = fk.Sequential([fk.Input((7, I)), fk.LSTM(H), fk.Dense(2)])
    fk.saving.load_weights(fresh, tmp_path / "w.h5")
    np.testing.assert_allclose(_predict(fresh, x), expected, **TOL)
    with pytest.raises(ValueError, match="weights only"):
        fk.load_model(tmp_path / "w.h5")


def test_keras2_bidirectional_cudnn(tmp_path):
    rng = np.random.default_rng(11)
    I, H, T = 4, 3, 6
    keras_weights = [rng.uniform(-0.5, 0.5, s).astype("float32")
                     for s in ((I, 4 * H), (H, 4 * H), (4 * H,)) * 2 + ((2 * H, 1), (1,))]
    stored = _to_cudnn(*keras_weights[:3], rng) + _to_cudnn(*keras_weights[3:6], rng)
    names = [f"bidirectional_1/{d}_cu_dnnlstm_1/{n}:0" for d in ("forward", "backward")
             for n in ("kernel", "recurrent_kernel", "bias")]
    inner = _keras2_lstm_config("cu_dnnlstm_1", H, cudnn=True)
    configs = [{"class_name": "Bidirectional", "config": {
                   "name": "bidirectional_1", "trainable": True, "merge_mode": "concat",
                   "batch_input_shape": [None, T, I], "dtype": "float32", "layer": inner}},
               _keras2_dense_config("dense_1", 1)]
    _write_keras2_h5(tmp_path / "b.h5", configs, {
        "bidirectional_1": list(zip(names, stored)),
        "dense_1": [("dense_1/kernel:0", keras_weights[6]), ("dense_1/bias:0", keras_weights[7])]})
    model = fk.load_model(tmp_path / "b.h5")
    x = np.random.default_rng(2).standard_normal((2, T, I)).astype("float32")
    expected = _reference(lambda: [fk.Input((T, I)), fk.Bidirectional(fk.LSTM(H)), fk.Dense(1)],
                          keras_weights, x)
    np.testing.assert_allclose(_predict(model, x), expected, **TOL)


def test_keras3_legacy_h5(keras, tmp_path):
    km = _bidirectional("sum")(_KerasNames(keras))
    _randomize(km)
    km.save(tmp_path / "legacy.h5")
    model = fk.load_model(tmp_path / "legacy.h5")
    x = _inputs("bidi_sum")
    np.testing.assert_allclose(_predict(model, x), _keras_predict(keras, km, x), **TOL)
    fresh = _bidirectional("sum")(fk)  # its weights alone, into a model built to match
    fresh.load_weights(tmp_path / "legacy.h5")
    np.testing.assert_allclose(_predict(fresh, x), _keras_predict(keras, km, x), **TOL)


# ------------------------------------------------------------------ bad files

def _small_model(seed=0):
    model = fk.Sequential([fk.Input((4, 2)), fk.LSTM(3, return_sequences=True), fk.LSTM(3),
                           fk.Dense(1)])
    _randomize(model, seed)
    return model


def _rewrite(path, out, config=None, weights=None, drop=()):
    """A copy of a .keras archive with config.json / model.weights.h5 replaced."""
    with zipfile.ZipFile(path) as zin, zipfile.ZipFile(out, "w") as zout:
        for name in zin.namelist():
            if name in drop:
                continue
            data = zin.read(name)
            if name == "config.json" and config is not None:
                data = json.dumps(config(json.loads(data))).encode()
            if name == "model.weights.h5" and weights is not None:
                data = weights(data)
            zout.writestr(name, data)
    return out


def _edit_h5(data, edit):
    buffer = io.BytesIO(data)
    with h5py.File(buffer, "a") as f:
        edit(f)
    return buffer.getvalue()


@pytest.fixture
def saved(tmp_path):
    path = tmp_path / "good.keras"
    fk.save_model(_small_model(), path)
    return path


def test_not_a_keras_file(tmp_path):
    path = tmp_path / "junk.keras"
    path.write_bytes(b"certainly not a zip archive" * 10)
    with pytest.raises(ValueError, match="not a Keras file"):
        fk.load_model(path)
    path.write_bytes(b"")
    with pytest.raises(ValueError, match="not a Keras file"):
        fk.load_model(path)
    with pytest.raises(FileNotFoundError):
        fk.load_model(tmp_path / "missing.keras")


def test_zip_without_config(saved, tmp_path):
    bad = _rewrite(saved, tmp_path / "bad.keras", drop=("config.json",))
    with pytest.raises(ValueError, match="config.json"):
        fk.load_model(bad)


def test_truncated_file(saved, tmp_path):
    data = saved.read_bytes()
    for cut in (len(data) // 2, len(data) - 10, 100):
        bad = tmp_path / f"cut{cut}.keras"
        bad.write_bytes(data[:cut])
        with pytest.raises(ValueError):
            fk.load_model(bad)


def test_unknown_layer_is_named(saved, tmp_path):
    def edit(config):
        config["config"]["layers"][2]["class_name"] = "GRU"
        config["config"]["layers"][2]["config"]["name"] = "my_gru"
        return config
    bad = _rewrite(saved, tmp_path / "bad.keras", config=edit)
    with pytest.raises(ValueError, match="my_gru.*GRU"):
        fk.load_model(bad)


def test_bad_config_structure(saved, tmp_path):
    cases = [lambda c: [1, 2, 3],
             lambda c: {**c, "class_name": "MyModel"},
             lambda c: {**c, "config": {**c["config"], "layers": "lstm"}},
             lambda c: {**c, "config": {**c["config"], "layers": [{"class_name": 3}]}}]
    for i, edit in enumerate(cases):
        bad = _rewrite(saved, tmp_path / f"bad{i}.keras", config=edit)
        with pytest.raises(ValueError):
            fk.load_model(bad)
    bad = tmp_path / "badjson.keras"
    with zipfile.ZipFile(bad, "w") as zf:
        zf.writestr("config.json", "{" * 100000)
        zf.writestr("model.weights.h5", b"")
    with pytest.raises(ValueError):
        fk.load_model(bad)


def test_wrong_weight_shape_names_layer_and_weight(saved, tmp_path):
    def edit(f):
        del f["layers/dense/vars/0"]
        f["layers/dense/vars"].create_dataset("0", data=np.zeros((4, 1), "float32"))
    bad = _rewrite(saved, tmp_path / "bad.keras", weights=lambda d: _edit_h5(d, edit))
    with pytest.raises(ValueError, match=r"dense.*kernel.*\(4, 1\).*\(3, 1\)"):
        fk.load_model(bad)
    model = _small_model(seed=9)  # nothing half-loaded: the LSTMs before it keep theirs
    before = model.get_weights()
    with pytest.raises(ValueError, match="kernel"):
        fk.saving.load_weights(model, bad)
    for a, b in zip(model.get_weights(), before):
        np.testing.assert_array_equal(a, b)


def _replace(path, value):
    """An h5 edit: the object at `path` replaced by `value` (an array or a link)."""
    def edit(f):
        group, name = path.rsplit("/", 1)
        del f[path]
        f[group][name] = value
    return edit


def test_bad_weight_contents(saved, tmp_path):
    bias = "layers/dense/vars/1"
    edits = {
        "int32": _replace(bias, np.zeros(1, "int32")),
        "NaN": _replace(bias, np.array([np.nan], "float32")),
        "SoftLink": _replace(bias, h5py.SoftLink("/layers/lstm/cell/vars/2")),
        "ExternalLink": _replace(bias, h5py.ExternalLink("elsewhere.h5", "/data")),
        "no bias": lambda f: f["layers/lstm_1/cell/vars"].__delitem__("2"),
        "holds 4 variables": lambda f: f["layers/lstm_1/cell/vars"].create_dataset(
            "3", data=np.zeros(3, "float32")),
    }
    for message, edit in edits.items():
        bad = _rewrite(saved, tmp_path / "bad.keras", weights=lambda d: _edit_h5(d, edit))
        with pytest.raises(ValueError, match=message):
            fk.load_model(bad)


def _set_claimed_size(data, member, size):
    """The archive with `member`'s uncompressed size in its central directory entry
    (and local header) replaced by `size`."""
    data = bytearray(data)
    name = member.encode()
    central = data.find(b"PK\x01\x02")
    while central != -1:
        n = struct.unpack_from("<H", data, central + 28)[0]
        if data[central + 46:central + 46 + n] == name:
            struct.pack_into("<I", data, central + 24, size)
            local = struct.unpack_from("<I", data, central + 42)[0]
            struct.pack_into("<I", data, local + 22, size)
        central = data.find(b"PK\x01\x02", central + 4)
    return bytes(data)


def test_member_claiming_a_huge_size(saved, tmp_path):
    for member in ("config.json", "model.weights.h5"):
        bad = tmp_path / "huge.keras"
        bad.write_bytes(_set_claimed_size(saved.read_bytes(), member, 0xFFFFFFF0))
        with pytest.raises(ValueError, match="claims"):
            fk.load_model(bad)
    bomb = tmp_path / "bomb.keras"  # a real one: 32 MiB of zeros deflated to ~32 KB
    with zipfile.ZipFile(saved) as zin, zipfile.ZipFile(bomb, "w") as zout:
        zout.writestr("config.json", zin.read("config.json"))
        zout.writestr("model.weights.h5", bytes(32 << 20), compress_type=zipfile.ZIP_DEFLATED)
    with pytest.raises(ValueError, match="bomb"):
        fk.load_model(bomb)


def test_member_names_and_sizes_checked(saved, tmp_path):
    bad = tmp_path / "evil.keras"
    with zipfile.ZipFile(saved) as zin, zipfile.ZipFile(bad, "w") as zout:
        for name in zin.namelist():
            zout.writestr(name, zin.read(name))
        zout.writestr("../escape.txt", b"x")
    with pytest.raises(ValueError, match="escape"):
        fk.load_model(bad)


def test_config_asking_for_a_huge_model_is_refused_before_allocating(saved, tmp_path):
    def edit(config):
        config["config"]["layers"][1]["config"]["units"] = 10 ** 6
        return config
    bad = _rewrite(saved, tmp_path / "bad.keras", config=edit)
    with pytest.raises(ValueError, match="weights"):
        fk.load_model(bad)


def test_save_paths_and_atomic_writes(saved, tmp_path, monkeypatch):
    model = _small_model(seed=4)
    with pytest.raises(ValueError, match=r"\.keras"):
        fk.save_model(model, tmp_path / "model.h5")
    before = saved.read_bytes()

    def fail(fd):
        raise OSError("disk full")
    monkeypatch.setattr(os, "fsync", fail)
    with pytest.raises(OSError, match="disk full"):
        fk.save_model(model, saved)
    assert saved.read_bytes() == before  # the old file is untouched
    assert sorted(os.listdir(tmp_path)) == ["good.keras"]  # and no temp file is left


def test_sequential_save_hook(saved, tmp_path):
    model = _small_model(seed=6)
    model.save(tmp_path / "hook.keras")
    again = fk.load_model(tmp_path / "hook.keras")
    for a, b in zip(again.get_weights(), model.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_unbuilt_model(tmp_path):
    model = fk.Sequential([fk.LSTM(3), fk.Dense(1)])  # no input shape yet: no weights
    with pytest.raises(ValueError, match="not built"):
        fk.saving.save_weights(model, tmp_path / "w.weights.h5")
    fk.save_model(model, tmp_path / "unbuilt.keras")  # allowed, as in Keras
    again = fk.load_model(tmp_path / "unbuilt.keras")
    assert not again.built and [type(layer).__name__ for layer in again.layers] == [
        "LSTM", "Dense"]
    with pytest.raises(ValueError, match="not built"):
        fk.saving.load_weights(again, tmp_path / "unbuilt.keras")
    x = np.zeros((2, 4, 2), "float32")
    assert _predict(again, x).shape == (2, 1)  # builds on its first data, as in Keras


def test_missing_h5py_is_a_clear_import_error(saved, monkeypatch):
    monkeypatch.setitem(sys.modules, "h5py", None)
    with pytest.raises(ImportError, match="pip install h5py"):
        fk.load_model(saved)
