"""fastlstm.keras activations, losses, metrics and optimizers: finite-difference gradients in
float64, values, gradients and optimizer steps against real Keras 3 (torch backend) when it
is installed, and bad identifiers / targets / hyper-parameters named in the errors."""
import os

os.environ.setdefault("KERAS_BACKEND", "torch")  # before anything imports keras

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from fastlstm.keras import activations, losses, metrics, optimizers  # noqa: E402

ACTIVATIONS = ["linear", "relu", "sigmoid", "tanh", "softmax"]
TOL = dict(rtol=1e-6, atol=1e-6)  # ours (float32) against Keras (float32)


@pytest.fixture(scope="module")
def keras():
    return pytest.importorskip("keras")


def rng(seed=0):
    return np.random.default_rng(seed)


def central_differences(f, x, eps=1e-6):
    """d f / d x by central differences, one element at a time (x is float64)."""
    grad = np.zeros_like(x)
    flat, gflat = x.reshape(-1), grad.reshape(-1)
    for i in range(flat.size):
        old = flat[i]
        flat[i] = old + eps
        up = f(x)
        flat[i] = old - eps
        down = f(x)
        flat[i] = old
        gflat[i] = (up - down) / (2 * eps)
    return grad


# --------------------------------------------------------------------------- activations

@pytest.mark.parametrize("name", ACTIVATIONS)
@pytest.mark.parametrize("shape", [(4, 5), (2, 3, 4), (6,)])
def test_activation_gradient_by_finite_differences(name, shape):
    act = activations.get(name)
    z = rng(1).uniform(-3, 3, shape)
    z[np.abs(z) < 0.05] = 0.5  # relu's kink stays away from the differences
    w = rng(2).standard_normal(shape)
    z0, w0 = z.copy(), w.copy()
    a = act.forward(z)
    dz = act.backward(z, a, w)
    assert dz.shape == z.shape and dz.dtype == np.float64
    np.testing.assert_array_equal(z, z0)  # inputs left alone
    np.testing.assert_array_equal(w, w0)
    expected = central_differences(lambda x: float(np.sum(w * act.forward(x))), z.copy())
    np.testing.assert_allclose(dz, expected, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("name", ACTIVATIONS)
def test_activation_matches_keras_and_keeps_float32(keras, name):
    z = rng(3).uniform(-6, 6, (5, 7)).astype(np.float32)
    act = activations.get(name)
    a = act.forward(z)
    assert act.name == name and a.dtype == np.float32
    assert act.backward(z, a, np.ones_like(z)).dtype == np.float32
    expected = keras.ops.convert_to_numpy(keras.activations.get(name)(z))
    np.testing.assert_allclose(a, expected, **TOL)


def test_activations_are_stable_at_extremes():
    z = np.array([[-1000.0, 0.0, 1000.0], [-88.0, -30.0, 88.0]], np.float32)
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        s = activations.get("sigmoid").forward(z)
        sm = activations.get("softmax").forward(z)
    np.testing.assert_allclose(s, [[0, 0.5, 1], [6.0546e-39, 9.357623e-14, 1]], rtol=1e-4,
                               atol=1e-44)
    np.testing.assert_allclose(sm, [[0, 0, 1], [0, 0, 1]], atol=1e-30)
    assert np.isfinite(s).all() and np.isfinite(sm).all()


def test_activation_identifiers():
    assert activations.get(None).name == "linear"
    relu = activations.get("relu")
    assert activations.get(relu) is relu
    for bad in ("swish", "Relu", 3):
        with pytest.raises(ValueError, match=r"activation.*'relu'") as info:
            activations.get(bad)
        assert repr(bad) in str(info.value)


# --------------------------------------------------------------------------- losses

def _probabilities(r, shape):
    return r.uniform(0.05, 0.95, shape)


# (name, factory, y_true maker, y_pred maker) for every loss and from_logits variant
LOSS_CASES = {
    "mse": (losses.MeanSquaredError, lambda r, s: r.standard_normal(s),
            lambda r, s: r.standard_normal(s)),
    "mae": (losses.MeanAbsoluteError, lambda r, s: r.standard_normal(s),
            lambda r, s: r.standard_normal(s)),
    "huber": (lambda: losses.Huber(delta=0.7), lambda r, s: r.standard_normal(s),
              lambda r, s: 2 * r.standard_normal(s)),
    "bce": (losses.BinaryCrossentropy, lambda r, s: r.uniform(0, 1, s).round(),
            _probabilities),
    "bce_soft": (losses.BinaryCrossentropy, lambda r, s: r.uniform(0, 1, s), _probabilities),
    "bce_logits": (lambda: losses.BinaryCrossentropy(from_logits=True),
                   lambda r, s: r.uniform(0, 1, s).round(),
                   lambda r, s: 3 * r.standard_normal(s)),
    "cce": (losses.CategoricalCrossentropy,
            lambda r, s: np.eye(s[-1])[r.integers(0, s[-1], s[:-1])],
            _probabilities),  # not normalised: the loss normalises, as Keras does
    "cce_soft": (losses.CategoricalCrossentropy,
                 lambda r, s: r.dirichlet(np.ones(s[-1]), s[:-1]), _probabilities),
    "cce_logits": (lambda: losses.CategoricalCrossentropy(from_logits=True),
                   lambda r, s: r.dirichlet(np.ones(s[-1]), s[:-1]),
                   lambda r, s: 3 * r.standard_normal(s)),
    "scce": (losses.SparseCategoricalCrossentropy,
             lambda r, s: r.integers(0, s[-1], s[:-1]), _probabilities),
    "scce_logits": (lambda: losses.SparseCategoricalCrossentropy(from_logits=True),
                    lambda r, s: r.integers(0, s[-1], s[:-1]),
                    lambda r, s: 3 * r.standard_normal(s)),
}
SHAPES = [(5, 3), (3, 4, 2), (6, 1), (7,)]


def _case(name, shape, dtype, seed=0):
    factory, make_y, make_p = LOSS_CASES[name]
    if name.startswith(("cce", "scce")) and len(shape) == 1:
        shape = (1,) + shape
    r = rng(seed)
    return factory(), make_y(r, shape), make_p(r, shape).astype(dtype)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("name", sorted(LOSS_CASES))
def test_loss_gradient_by_finite_differences(name, shape):
    loss, y, p = _case(name, shape, np.float64)
    y = loss.check_targets(y, p.shape)
    value, grad = loss.value_and_grad(y, p)
    assert type(value) is float and grad.shape == p.shape and grad.dtype == np.float64
    assert loss(y, p) == pytest.approx(value, rel=1e-12)
    expected = central_differences(lambda x: loss(y, x), p.copy())
    np.testing.assert_allclose(grad, expected, rtol=1e-6, atol=1e-9)


def _keras_loss(keras, loss):
    cls = getattr(keras.losses, type(loss).__name__)
    return cls(**{k: v for k, v in loss.get_config().items() if k != "name"})


def _keras_value_and_grad(keras, loss, y, p):
    import torch
    kloss = _keras_loss(keras, loss)
    pt = torch.tensor(p, requires_grad=True)
    value = kloss(torch.tensor(y), pt)
    value.backward()
    return float(value.detach()), pt.grad.numpy()


@pytest.mark.filterwarnings("ignore:In loss categorical_crossentropy")  # Keras, at 1 class
@pytest.mark.parametrize("shape", SHAPES + [(4, 6, 3)])
@pytest.mark.parametrize("name", sorted(LOSS_CASES))
def test_loss_value_and_gradient_match_keras(keras, name, shape):
    loss, y, p = _case(name, shape, np.float32, seed=5)
    if name in ("bce", "cce", "scce") and p.shape[-1] > 1:  # ones the clip changes
        flat = p.reshape(-1)
        flat[:3] = [0.0, 1.0, 1e-9][:flat.size]
    value, grad = loss.value_and_grad(loss.check_targets(y, p.shape), p)
    assert grad.dtype == np.float32
    k_value, k_grad = _keras_value_and_grad(keras, loss, y, p)
    assert value == pytest.approx(k_value, rel=1e-6, abs=1e-6)
    np.testing.assert_allclose(grad, k_grad, rtol=1e-5, atol=1e-6)
    # raw targets (as Keras takes them) give the same value as the converted ones
    assert loss(y, p) == pytest.approx(value, rel=1e-6)


def test_binary_and_sparse_targets_follow_keras_shape_rules(keras):
    r = rng(7)
    p = r.uniform(0.01, 0.99, (8, 1)).astype(np.float32)
    y = r.integers(0, 2, 8)
    bce = losses.get("binary_crossentropy")
    converted = bce.check_targets(y, p.shape)
    assert converted.shape == (8, 1) and converted.dtype == np.float32
    expected = float(keras.losses.BinaryCrossentropy()(y.astype(np.float32), p))
    assert bce(y, p) == pytest.approx(expected, rel=1e-6)
    # (B, T) targets with per-step (B, T, 1) outputs
    p3 = r.uniform(0.01, 0.99, (4, 5, 1)).astype(np.float32)
    y3 = r.integers(0, 2, (4, 5)).astype(np.float32)
    assert bce.check_targets(y3, p3.shape).shape == (4, 5, 1)
    expected = float(keras.losses.BinaryCrossentropy()(y3, p3))
    assert bce(y3, p3) == pytest.approx(expected, rel=1e-6)
    mse = losses.get("mse")
    assert mse.check_targets(y3, p3.shape).shape == (4, 5, 1)
    assert mse.check_targets(np.ones((4, 1)), (4,)).shape == (4,)
    # sparse labels: (B,), (B, 1) and float-valued integers all become intp (B,)
    scce = losses.get("sparse_categorical_crossentropy")
    for labels in (np.array([0, 2, 1]), np.array([[0.0], [2.0], [1.0]])):
        out = scce.check_targets(labels, (3, 3))
        assert out.shape == (3,) and out.dtype == np.intp
        np.testing.assert_array_equal(out, [0, 2, 1])
    assert scce.check_targets(np.zeros((2, 5, 1)), (2, 5, 4)).shape == (2, 5)
    assert losses.get("mse").check_targets(np.zeros((3, 2), np.float64), (3, 2)).dtype \
        == np.float64


def test_losses_are_stable_at_extreme_logits():
    p = np.array([[-200.0, 0.0, 300.0], [1e4, -1e4, 0.0]], np.float32)
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        for loss, y in ((losses.BinaryCrossentropy(from_logits=True), np.ones_like(p)),
                        (losses.CategoricalCrossentropy(from_logits=True),
                         np.eye(3, dtype=np.float32)[[0, 1]]),
                        (losses.SparseCategoricalCrossentropy(from_logits=True),
                         np.array([0, 1]))):
            value, grad = loss.value_and_grad(y, p)
            assert np.isfinite(value) and np.isfinite(grad).all()


@pytest.mark.parametrize("cls", [losses.MeanSquaredError, losses.MeanAbsoluteError,
                                 losses.Huber, losses.BinaryCrossentropy,
                                 losses.CategoricalCrossentropy,
                                 losses.SparseCategoricalCrossentropy])
def test_loss_names_and_configs_match_keras(keras, cls):
    ours = cls()
    theirs = getattr(keras.losses, cls.__name__)()
    assert ours.name == theirs.name
    config = ours.get_config()
    expected = theirs.get_config()
    if cls is losses.Huber:
        expected["delta"] = 1.0  # Keras's Huber drops delta from its config; we keep it
    assert config == expected
    assert cls.from_config(config).get_config() == config


def test_loss_identifiers():
    names = {"mse": "MeanSquaredError", "mean_squared_error": "MeanSquaredError",
             "mae": "MeanAbsoluteError", "mean_absolute_error": "MeanAbsoluteError",
             "huber": "Huber", "binary_crossentropy": "BinaryCrossentropy",
             "categorical_crossentropy": "CategoricalCrossentropy",
             "sparse_categorical_crossentropy": "SparseCategoricalCrossentropy"}
    for name, cls in names.items():
        assert type(losses.get(name)).__name__ == cls
    huber = losses.Huber(delta=2.0)
    assert losses.get(huber) is huber
    assert losses.get({"class_name": "Huber", "config": {"delta": 3.0}}).delta == 3.0
    for bad in ("msee", None, 1.5):
        with pytest.raises(ValueError, match=r"loss.*'mse'") as info:
            losses.get(bad)
        assert repr(bad) in str(info.value)
    with pytest.raises(ValueError, match="label_smoothing"):
        losses.CategoricalCrossentropy(label_smoothing=0.1)
    with pytest.raises(ValueError, match="from_logits"):
        losses.BinaryCrossentropy(from_logits="yes")
    with pytest.raises(ValueError, match="delta"):
        losses.Huber(delta=-1)
    with pytest.raises(ValueError, match="reduction"):
        losses.MeanSquaredError(reduction="sum")


BAD_TARGETS = [
    ("mse", np.zeros((4, 2)), (4, 1), r"^y of shape \(4, 2\) does not match.*\(4, 1\)"),
    ("mse", np.zeros((4, 2)), (4, 3, 1), r"^y of shape \(4, 2\) does not match"),
    ("mse", np.zeros((4, 3, 2)), (4, 3), r"^y of shape \(4, 3, 2\) does not match"),
    ("mse", np.array([1.0, np.nan, 0.0, 0.0]), (4, 1), "^y holds NaN or inf"),
    ("mse", np.array([1.0, np.inf, 0.0, 0.0]), (4, 1), "^y holds NaN or inf"),
    ("mse", np.array(["a", "b"]), (2, 1), "^y must hold numbers"),
    ("binary_crossentropy", np.array([0, 1, 2, 0]), (4, 1), r"^y must hold binary.*\[0, 1\]"),
    ("binary_crossentropy", np.array([0, -0.5, 1, 0]), (4, 1), r"^y must hold binary"),
    ("sparse_categorical_crossentropy", np.array([0, 3, 1]), (3, 3),
     r"^y must hold class indices in \[0, 3\)"),
    ("sparse_categorical_crossentropy", np.array([0, -1, 1]), (3, 3),
     r"^y must hold class indices in \[0, 3\)"),
    ("sparse_categorical_crossentropy", np.array([0, 1.5, 1]), (3, 3),
     "^y must hold integer class indices"),
    ("sparse_categorical_crossentropy", np.eye(3), (3, 3), "^y of shape.*one-hot"),
    ("sparse_categorical_crossentropy", np.zeros((3, 2)), (3, 4, 5), "^y of shape"),
    ("categorical_crossentropy", np.array([0, 2, 1]), (3, 3),
     "^y of shape.*sparse_categorical_crossentropy"),
    ("categorical_crossentropy", np.zeros((3, 2)), (3, 4), r"^y of shape \(3, 2\)"),
]


@pytest.mark.parametrize("name, y, shape, match", BAD_TARGETS)
def test_bad_targets_name_y(name, y, shape, match):
    with pytest.raises(ValueError, match=match):
        losses.get(name).check_targets(y, shape)


def test_value_and_grad_refuses_what_does_not_fit():
    with pytest.raises(ValueError, match="^y of shape"):
        losses.get("mse").value_and_grad(np.zeros((3, 2)), np.zeros((3, 4)))
    with pytest.raises(ValueError, match=r"class indices in \[0, 2\)"):
        losses.get("sparse_categorical_crossentropy").value_and_grad(
            np.array([0, 2]), np.full((2, 2), 0.5))


# --------------------------------------------------------------------------- metrics

def _batches(kind, shape, seed=0):
    r = rng(seed)
    out = []
    for n in (5, 3):  # batches of different sizes: the mean weighs them by size
        s = (n,) + shape
        if kind == "regression":
            out.append((r.standard_normal(s), r.standard_normal(s)))
        elif kind == "binary":
            out.append((r.integers(0, 2, s).astype(np.float32), r.uniform(0, 1, s)))
        elif kind == "categorical":
            out.append((np.eye(s[-1])[r.integers(0, s[-1], s[:-1])], r.uniform(0, 1, s)))
        else:
            out.append((r.integers(0, s[-1], s[:-1]), r.uniform(0, 1, s)))
    return [(y.astype(np.float32), p.astype(np.float32)) for y, p in out]


METRIC_CASES = [
    ("mae", "MeanAbsoluteError", "regression"), ("mse", "MeanSquaredError", "regression"),
    ("mean_absolute_error", "MeanAbsoluteError", "regression"),
    ("binary_accuracy", "BinaryAccuracy", "binary"),
    ("categorical_accuracy", "CategoricalAccuracy", "categorical"),
    ("sparse_categorical_accuracy", "SparseCategoricalAccuracy", "sparse"),
]


@pytest.mark.parametrize("shape", [(1,), (4,), (6, 1), (6, 3)])
@pytest.mark.parametrize("identifier, keras_class, kind", METRIC_CASES)
def test_metrics_match_keras(keras, identifier, keras_class, kind, shape):
    if kind in ("categorical", "sparse") and shape[-1] == 1:
        shape = shape[:-1] + (3,)
    ours = metrics.get(identifier, None)
    theirs = getattr(keras.metrics, keras_class)()
    assert ours.name == identifier and ours.result() == 0.0
    for y, p in _batches(kind, shape):
        ours.update(y, p)
        theirs.update_state(y, p)
    assert ours.result() == pytest.approx(float(theirs.result()), rel=1e-6, abs=1e-7)
    ours.reset()
    assert ours.result() == 0.0


@pytest.mark.parametrize("loss, kind, shape", [
    ("binary_crossentropy", "binary", (1,)), ("binary_crossentropy", "binary", (6, 1)),
    ("categorical_crossentropy", "categorical", (3,)),
    ("categorical_crossentropy", "categorical", (6, 3)),
    ("sparse_categorical_crossentropy", "sparse", (3,)),
    ("sparse_categorical_crossentropy", "sparse", (6, 3)),
    ("mse", "binary", (1,)),
])
def test_accuracy_resolves_as_keras_compile_does(keras, loss, kind, shape):
    from keras.src.trainers import compile_utils
    loss_fn = losses.get(loss)
    ours = metrics.get("accuracy", loss_fn)
    batches = _batches(kind, shape, seed=3)
    theirs = compile_utils.get_metric("accuracy", batches[0][0], batches[0][1])
    for y, p in batches:
        ours.update(loss_fn.check_targets(y, p.shape), p)  # the model passes checked y
        theirs.update_state(y, p)
    assert ours.name == theirs.name == "accuracy"
    assert ours.result() == pytest.approx(float(theirs.result()), rel=1e-6)
    expected_kind = {"binary": "BinaryAccuracy", "categorical": "CategoricalAccuracy",
                     "sparse": "SparseCategoricalAccuracy"}[kind]
    assert type(theirs).__name__ == expected_kind


def test_history_keys_match_keras(keras):
    r = rng(4)
    x = r.standard_normal((16, 3)).astype(np.float32)
    cases = [("mse", ["mae"], 1, None), ("mse", ["mse"], 1, None),
             ("binary_crossentropy", ["accuracy"], 1, "sigmoid"),
             ("mse", ["mean_absolute_error", "acc"], 1, None)]
    for loss, names, units, act in cases:
        model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(units, act)])
        model.compile(optimizer="sgd", loss=loss, metrics=names)
        y = r.integers(0, 2, (16, 1)).astype(np.float32)
        history = model.fit(x, y, epochs=1, verbose=0).history
        ours = [metrics.get(n, losses.get(loss)).name for n in names]
        assert sorted(history) == sorted(["loss"] + ours)  # Keras 3 sorts its logs


def test_mean_metric_and_bad_identifiers():
    m = metrics.Mean(name="loss")
    m.update(2.0, 3)
    m.update(4.0, 1)
    assert m.result() == pytest.approx(2.5) and m.name == "loss"
    m.reset()
    assert m.result() == 0.0
    for bad in ("accuracyy", "f1", 3):
        with pytest.raises(ValueError, match=r"metric.*'mae'") as info:
            metrics.get(bad, losses.get("mse"))
        assert repr(bad) in str(info.value)
    assert metrics.get("accuracy", None)._direction == "up"
    assert metrics.get("mae", None)._direction == "down"


# --------------------------------------------------------------------------- optimizers

OPTIMIZER_CASES = [
    ("SGD", {}),
    ("SGD", {"learning_rate": 0.1, "momentum": 0.9}),
    ("SGD", {"learning_rate": 0.1, "momentum": 0.9, "nesterov": True}),
    ("SGD", {"learning_rate": 0.1, "clipvalue": 0.5}),
    ("SGD", {"learning_rate": 0.1, "momentum": 0.5, "weight_decay": 0.2}),
    ("Adam", {}),
    ("Adam", {"learning_rate": 0.05, "amsgrad": True}),
    ("Adam", {"learning_rate": 0.05, "clipnorm": 1.0}),
    ("Adam", {"learning_rate": 0.05, "global_clipnorm": 1.0, "beta_1": 0.5, "beta_2": 0.9}),
    ("AdamW", {}),
    ("AdamW", {"learning_rate": 0.05, "weight_decay": 0.5, "amsgrad": True}),
    ("AdamW", {"learning_rate": 0.05, "weight_decay": 0.3, "clipvalue": 0.3,
               "epsilon": 1e-3}),
    ("RMSprop", {}),
    ("RMSprop", {"learning_rate": 0.01, "centered": True}),
    ("RMSprop", {"learning_rate": 0.01, "momentum": 0.9, "rho": 0.8}),
    ("RMSprop", {"learning_rate": 0.01, "centered": True, "momentum": 0.5,
                 "clipnorm": 0.5}),
    ("RMSprop", {"learning_rate": 0.01, "global_clipnorm": 0.5, "weight_decay": 0.1}),
]
SHAPES_OPT = [(4, 3), (3,), (2, 2, 2)]
# our slot name -> Keras 3's attribute holding that slot's variables
KERAS_SLOTS = {("SGD", "momentum"): "momentums", ("Adam", "momentum"): "_momentums",
               ("Adam", "velocity"): "_velocities", ("Adam", "velocity_hat"): "_velocity_hats",
               ("RMSprop", "velocity"): "_velocities", ("RMSprop", "momentum"): "_momentums",
               ("RMSprop", "average_gradient"): "_average_gradients"}


def _grads(step, scale=1.0):
    r = rng(100 + step)
    # mixed sizes: some variables above the clip norms/values, some below
    return [scale * (i + 1) * r.standard_normal(s).astype(np.float32)
            for i, s in enumerate(SHAPES_OPT)]


@pytest.mark.parametrize("cls_name, kwargs", OPTIMIZER_CASES,
                         ids=[f"{c}-{'-'.join(k) or 'defaults'}" for c, k in OPTIMIZER_CASES])
def test_optimizer_steps_match_keras(keras, cls_name, kwargs):
    ours = getattr(optimizers, cls_name)(**kwargs)
    theirs = getattr(keras.optimizers, cls_name)(**kwargs)
    params = [rng(9).standard_normal(s).astype(np.float32) for s in SHAPES_OPT]
    kvars = [keras.Variable(p.copy()) for p in params]
    for step in range(6):
        grads = _grads(step, scale=0.3 if step % 2 else 1.0)
        copies = [g.copy() for g in grads]
        ours.apply([(f"v{i}", p, g) for i, (p, g) in enumerate(zip(params, grads))])
        for g, c in zip(grads, copies):
            np.testing.assert_array_equal(g, c)  # the caller's grads are never written
        theirs.apply_gradients([(keras.ops.convert_to_tensor(g), v)
                                for g, v in zip(grads, kvars)])
        assert ours.iterations == int(theirs.iterations) == step + 1
        for p, v in zip(params, kvars):
            assert p.dtype == np.float32
            np.testing.assert_allclose(p, keras.ops.convert_to_numpy(v), **TOL)
    keras_base = "Adam" if cls_name == "AdamW" else cls_name
    for name in ours.slot_names():
        kslots = getattr(theirs, KERAS_SLOTS[(keras_base, name)])
        for i in range(len(params)):
            np.testing.assert_allclose(ours.slot(name, i),
                                       keras.ops.convert_to_numpy(kslots[i]), **TOL)


def test_optimizer_in_float64_and_learning_rate_setter():
    opt = optimizers.SGD(learning_rate=0.5)
    p = np.ones(3)
    g = np.array([1.0, 2.0, 3.0])
    opt.apply([("w", p, g)])
    np.testing.assert_array_equal(p, [0.5, 0.0, -0.5])
    opt.learning_rate = 0.25
    opt.apply([("w", p, g)])
    np.testing.assert_array_equal(p, [0.25, -0.5, -1.25])
    assert p.dtype == np.float64 and opt.iterations == 2
    assert opt.get_config()["learning_rate"] == 0.25
    with pytest.raises(ValueError, match="learning_rate"):
        opt.learning_rate = -0.1
    assert opt.learning_rate == 0.25
    opt.apply([])  # nothing to update: a no-op, as in Keras
    assert opt.iterations == 2


def test_optimizer_slots_are_allocated_once_per_key():
    opt = optimizers.Adam()
    p, g = np.zeros((3, 2), np.float32), np.ones((3, 2), np.float32)
    opt.apply([("k", p, g)])
    state = opt._states["k"]
    buffers = [state.tmp] + list(state.slots.values())
    for _ in range(3):
        opt.apply([("k", p, g)])
    assert opt._states["k"] is state
    assert all(a is b for a, b in zip(buffers, [state.tmp] + list(state.slots.values())))
    assert opt.slot_names() == ["momentum", "velocity"]


def test_optimizer_bad_variables_change_nothing():
    opt = optimizers.Adam(learning_rate=0.1)
    a, b = np.ones(3, np.float32), np.ones((2, 2), np.float32)
    opt.apply([("a", a, np.ones(3, np.float32))])
    before = a.copy()
    with pytest.raises(ValueError, match=r"variable 'b'.*grad shape \(3,\)"):
        opt.apply([("a", a, np.ones(3, np.float32)), ("b", b, np.ones(3, np.float32))])
    with pytest.raises(ValueError, match="variable 'a' changed shape"):
        opt.apply([("a", np.ones(4, np.float32), np.ones(4, np.float32))])
    with pytest.raises(ValueError, match="variable 'c'.*float ndarray"):
        opt.apply([("c", np.ones(3, int), np.ones(3))])
    np.testing.assert_array_equal(a, before)
    assert opt.iterations == 1 and "b" not in opt._states


BAD_HYPER = [
    ("SGD", {"learning_rate": -0.1}, "learning_rate"),
    ("SGD", {"learning_rate": float("nan")}, "learning_rate"),
    ("SGD", {"learning_rate": "fast"}, "learning_rate"),
    ("SGD", {"momentum": 1.5}, "momentum"),
    ("SGD", {"nesterov": "yes"}, "nesterov"),
    ("Adam", {"beta_1": 1.0}, "beta_1"),
    ("Adam", {"beta_2": -0.1}, "beta_2"),
    ("Adam", {"epsilon": -1e-7}, "epsilon"),
    ("Adam", {"amsgrad": 1}, "amsgrad"),
    ("Adam", {"clipnorm": -1.0}, "clipnorm"),
    ("Adam", {"clipnorm": 1.0, "clipvalue": 1.0}, "only one of clipnorm"),
    ("Adam", {"use_ema": True}, "use_ema"),
    ("Adam", {"gradient_accumulation_steps": 2}, "gradient_accumulation_steps"),
    ("Adam", {"betas": (0.9, 0.99)}, "betas"),
    ("AdamW", {"weight_decay": None}, "weight_decay"),
    ("AdamW", {"weight_decay": -0.1}, "weight_decay"),
    ("RMSprop", {"rho": 1.0}, "rho"),
    ("RMSprop", {"momentum": -0.5}, "momentum"),
    ("RMSprop", {"centered": None}, "centered"),
    ("RMSprop", {"global_clipnorm": float("inf")}, "global_clipnorm"),
]


@pytest.mark.parametrize("cls_name, kwargs, match", BAD_HYPER)
def test_bad_hyper_parameters_name_the_argument(cls_name, kwargs, match):
    with pytest.raises(ValueError, match=f"{cls_name}: .*{match}"):
        getattr(optimizers, cls_name)(**kwargs)


def test_optimizer_identifiers_and_configs(keras):
    for name, cls in (("sgd", "SGD"), ("adam", "Adam"), ("adamw", "AdamW"),
                      ("rmsprop", "RMSprop"), ("Adam", "Adam"), ("RMSprop", "RMSprop")):
        ours = optimizers.get(name)
        theirs = keras.optimizers.get(name)
        assert type(ours).__name__ == cls == type(theirs).__name__
        config, kconfig = ours.get_config(), theirs.get_config()
        assert list(config) == list(kconfig)
        # Keras numbers its auto names ("adam_1"): ours is the first one's
        assert config["name"] == {"SGD": "sgd", "Adam": "adam", "AdamW": "adam_w",
                                  "RMSprop": "rm_sprop"}[cls]
        assert kconfig["name"].startswith(config["name"])
        for key, value in kconfig.items():
            if isinstance(value, float):
                assert config[key] == pytest.approx(value, rel=1e-7), key
            elif key != "name":
                assert config[key] == value, key
        again = type(ours).from_config(config)
        assert again.get_config() == config
        # Keras builds the same optimizer from our config
        assert getattr(keras.optimizers, cls).from_config(dict(config)).get_config()[
            "learning_rate"] == pytest.approx(config["learning_rate"])
    adam = optimizers.Adam()
    assert optimizers.get(adam) is adam
    got = optimizers.get({"class_name": "SGD", "config": {"learning_rate": 0.2,
                                                          "momentum": 0.5}})
    assert got.learning_rate == 0.2 and got.momentum == 0.5
    for bad in ("adamm", "Nadam", None, 3):
        with pytest.raises(ValueError, match=r"optimizer.*'adam'.*'rmsprop'") as info:
            optimizers.get(bad)
        assert repr(bad) in str(info.value)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("amsgrad", [False, True])
def test_adam_one_pass_step_equals_numpys_bit_for_bit(monkeypatch, dtype, amsgrad):
    """The compiled one-pass Adam step (src_cython/optim.pyx) and the NumPy one give the
    same bits, for C- and F-ordered (transposed) variables, NaN included; a layout it does
    not take (a strided view) falls back to NumPy."""
    from fastlstm.keras import optimizers as O
    if O._compiled() is None:
        pytest.skip("fastlstm._cy.optim is not built")
    r = np.random.default_rng(3)
    shapes = [(7, 5), (5, 7), (33,)]
    base = [r.standard_normal(s).astype(dtype) for s in shapes]
    base[1] = np.ascontiguousarray(base[1].T).T  # an F-ordered (transposed) variable
    base.append(r.standard_normal((6, 8)).astype(dtype)[:, ::2])  # strided: NumPy's path
    grads = [[r.standard_normal(p.shape).astype(dtype) for p in base] for _ in range(4)]
    grads[2][0][1, 1] = np.nan

    def run(compiled):
        monkeypatch.setattr(O, "_COMPILED", [O._compiled() if compiled else None])
        params = [p.copy(order="K") for p in base]
        params[3] = np.empty((6, 8), dtype)[:, ::2]
        params[3][...] = base[3]
        opt = O.Adam(learning_rate=0.01, amsgrad=amsgrad)
        for step in grads:
            opt.apply([(i, p, g) for i, (p, g) in enumerate(zip(params, step))])
        return params, [opt.slot("velocity", i) for i in range(len(params))]

    ext = O._compiled()
    one = np.ones((3, 2), dtype)
    assert ext.adam(one.T, one.T, one.T, one.T, None, 0.1, 0.001, 1e-7, 0.01)  # F order
    one = np.ones((3, 2), dtype)
    assert not ext.adam(one[:, :1], one[:, :1], one[:, :1], one[:, :1], None, 0.1, 0.001,
                        1e-7, 0.01)  # a strided view: refused, untouched
    assert (one == 1).all()
    monkeypatch.setattr(O, "_COMPILED", [])
    fused = run(True)
    plain = run(False)
    for a, b in zip(fused[0] + fused[1], plain[0] + plain[1]):
        np.testing.assert_array_equal(a, b)
    assert np.isnan(fused[0][0][1, 1])  # NaN went through both the same way


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("bad", [None, np.nan, np.inf, -np.inf])
def test_gradient_finiteness_check_compiled_and_numpy_agree(monkeypatch, dtype, bad):
    """The fit's one-call check of every gradient (optim.pyx all_finite) says what NumPy
    says, in C and F order, at the first and last item too; huge or tiny finite values
    are finite; layouts it does not take go to NumPy."""
    from fastlstm.keras import model as M
    from fastlstm.keras import optimizers as O
    r = np.random.default_rng(4)
    grads = [r.standard_normal(s).astype(dtype) for s in [(200, 1), (200, 50), (200,), (1,)]]
    grads[1] = np.asfortranarray(grads[1])
    grads[2][[0, -1]] = [np.finfo(dtype).max, np.finfo(dtype).tiny / 4]  # finite both
    checks = [grads]
    if bad is not None:
        for i, at in [(0, (0, 0)), (1, (199, 49)), (3, (0,))]:
            planted = [g.copy(order="K") for g in grads]
            planted[i][at] = bad
            checks.append(planted)
    strided = [r.standard_normal((6, 8)).astype(dtype)[:, ::2]]
    overflowing = [np.full(4, np.finfo(dtype).max, dtype)]  # finite items, an inf sum
    for arrays in checks + [strided, overflowing, [overflowing[0][::2]]]:
        expected = all(np.isfinite(g).all() for g in arrays)
        assert M._all_finite(arrays) == expected
        monkeypatch.setattr(O, "_COMPILED", [None])
        assert M._all_finite(arrays) == expected
        monkeypatch.undo()
    if O._compiled() is not None:
        assert O._compiled().all_finite(strided) is None
        assert O._compiled().all_finite(checks[-1]) is (bad is None)
