"""Keras 3's losses with their gradients, in NumPy.

    loss = get("mse")
    y = loss.check_targets(y, y_pred_shape)       # once, before training: checked, converted
    value, dy_pred = loss.value_and_grad(y, y_pred)  # per batch

Reduction is Keras's "sum_over_batch_size": a value per sample (the mean over the last
axis for MSE/MAE/Huber/binary CE, the sum over the classes for categorical CE), then the
mean over every other element (batch and time for per-step outputs). Probabilities are
normalised (categorical) and clipped to [1e-7, 1 - 1e-7] as Keras does; from_logits=True
uses log-softmax / log-sigmoid forms that never overflow. Gradients are d(value)/d(y_pred),
in y_pred's shape and dtype (float32 in, float32 out; float64 works for gradient checks).

Targets follow Keras's shape rule (squeeze_or_expand_to_same_rank): y of shape (B,) with
y_pred (B, 1) is expanded, (B, T) with (B, T, 1) too; sparse labels drop a trailing 1.
Shapes that do not match after that are a ValueError here (Keras would broadcast some).
"""
import math

import numpy as np

__all__ = ["Loss", "MeanSquaredError", "MeanAbsoluteError", "Huber", "BinaryCrossentropy",
           "CategoricalCrossentropy", "SparseCategoricalCrossentropy", "get", "EPSILON"]

EPSILON = 1e-7  # keras.backend.epsilon()


def _shape_str(shape):
    return "(" + ", ".join("None" if d is None else str(d) for d in shape) + \
        ("," if len(shape) == 1 else "") + ")"


def _same_rank(y_shape, pred_shape):
    """Keras's squeeze_or_expand_to_same_rank, for y_true's shape (y_pred never changes
    here: when Keras would squeeze y_pred, y_true gets the trailing 1 instead)."""
    if len(y_shape) == len(pred_shape) + 1 and y_shape[-1] == 1:
        return y_shape[:-1]
    if len(pred_shape) == len(y_shape) + 1 and pred_shape[-1] == 1:
        return y_shape + (1,)
    return y_shape


def _matches(shape, expected):
    return len(shape) == len(expected) and all(
        e is None or s == e for s, e in zip(shape, expected))


def _float_dtype(arr):
    return arr.dtype if arr.dtype in (np.float32, np.float64) else np.dtype(np.float32)


class Loss:
    """Base class: `name`, `get_config()`, `check_targets`, `value_and_grad`, `__call__`.
    Subclasses define `_compute(y_true, y_pred, grad)` on aligned targets; it returns the
    value and, when grad is True, d(value)/d(y_pred)."""

    name = None
    sparse = False  # targets are class indices

    def __init__(self, reduction="sum_over_batch_size", name=None, dtype=None):
        if reduction not in ("sum_over_batch_size", "mean", "auto"):
            raise ValueError(f"{type(self).__name__}: reduction={reduction!r} is not "
                             "supported (fastlstm.keras reduces with 'sum_over_batch_size')")
        if name is not None:
            if not isinstance(name, str) or not name:
                raise ValueError(f"{type(self).__name__}: name must be a non-empty str, got "
                                 f"{name!r}")
            self.name = name
        self.reduction = "sum_over_batch_size"

    # --- targets ----------------------------------------------------------------------

    def _target_shape(self, y_shape, pred_shape):
        """y's shape as _compute wants it, or None when y does not fit y_pred."""
        shape = _same_rank(tuple(y_shape), tuple(pred_shape))
        return shape if _matches(shape, pred_shape) else None

    def _shape_error(self, y_shape, pred_shape):
        return ValueError(f"y of shape {_shape_str(y_shape)} does not match the output shape "
                          f"{_shape_str(pred_shape)} for loss {self.name!r}")

    def _check_values(self, y):
        """Range checks on the converted targets (ValueError naming y)."""

    def check_targets(self, y_true, y_pred_shape):
        """y_true validated and converted for value_and_grad: a C-contiguous float array of
        y_pred's shape (float64 stays float64, anything else becomes float32), or for sparse
        categorical CE integer labels of y_pred's shape without its last axis. Raises
        ValueError naming y for a shape that does not match, NaN/inf, labels that are not
        integers in [0, classes), binary targets outside [0, 1]."""
        y = np.asarray(y_true)
        if y.dtype.kind not in "biuf":
            raise ValueError(f"y must hold numbers, got dtype {y.dtype}")
        pred_shape = tuple(y_pred_shape)
        if not pred_shape:
            raise ValueError(f"the output shape {pred_shape} has no axis for loss "
                             f"{self.name!r}")
        shape = self._target_shape(y.shape, pred_shape)
        if shape is None:
            raise self._shape_error(y.shape, pred_shape)
        if y.dtype.kind == "f" and y.size and not np.isfinite(y).all():
            raise ValueError("y holds NaN or inf")
        y = self._convert(y.reshape(shape), pred_shape)
        self._check_values(y)
        return y

    def _convert(self, y, pred_shape):
        return np.ascontiguousarray(y, dtype=_float_dtype(y))

    def _align(self, y_true, y_pred):
        """Targets in the shape and dtype _compute wants (cheap when already converted)."""
        y = np.asarray(y_true)
        if y.shape != y_pred.shape:
            shape = self._target_shape(y.shape, y_pred.shape)
            if shape is None:
                raise self._shape_error(y.shape, y_pred.shape)
            y = y.reshape(shape)
        if y.dtype != y_pred.dtype:
            y = y.astype(y_pred.dtype)
        return y

    # --- values -----------------------------------------------------------------------

    @staticmethod
    def _pred(y_pred):
        y_pred = np.asarray(y_pred)
        if y_pred.dtype not in (np.float32, np.float64):
            y_pred = y_pred.astype(np.float32)
        if y_pred.ndim == 0:
            raise ValueError("y_pred must have at least one axis, got a scalar")
        return y_pred

    def value_and_grad(self, y_true, y_pred):
        """(Keras's loss value as a Python float, d(value)/d(y_pred) of y_pred's shape and
        dtype)."""
        y_pred = self._pred(y_pred)
        value, grad = self._compute(self._align(y_true, y_pred), y_pred, True)
        return float(value), grad

    def __call__(self, y_true, y_pred):
        """Keras's loss value as a Python float."""
        y_pred = self._pred(y_pred)
        return float(self._compute(self._align(y_true, y_pred), y_pred, False)[0])

    def _compute(self, y, p, grad):
        raise NotImplementedError

    # --- config -----------------------------------------------------------------------

    def get_config(self):
        return {"name": self.name, "reduction": self.reduction}

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __repr__(self):
        args = {k: v for k, v in self.get_config().items() if k not in ("name", "reduction")}
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in args.items())})"


def _check_only_default(cls_name, **kwargs):
    for key, (value, default) in kwargs.items():
        if value != default:
            raise ValueError(f"{cls_name}: {key}={value!r} is not supported by fastlstm.keras "
                             f"(only {default!r})")


def _check_bool(cls_name, key, value):
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{cls_name}: {key} must be True or False, got {value!r}")
    return bool(value)


# --------------------------------------------------------------------------- regression

class MeanSquaredError(Loss):
    """mean((y_true - y_pred)^2)."""

    name = "mean_squared_error"

    def _compute(self, y, p, grad):
        d = np.subtract(p, y)
        value = np.vdot(d, d) / d.size if d.size else 0.0
        if not grad:
            return value, None
        d *= 2.0 / max(d.size, 1)
        return value, d


class MeanAbsoluteError(Loss):
    """mean(|y_true - y_pred|); the gradient at y_pred == y_true is 0 (as Keras's)."""

    name = "mean_absolute_error"

    def _compute(self, y, p, grad):
        d = np.subtract(p, y)
        value = np.abs(d).mean() if d.size else 0.0
        if not grad:
            return value, None
        np.sign(d, out=d)
        d *= 1.0 / max(d.size, 1)
        return value, d


class Huber(Loss):
    """mean(0.5 e^2 where |e| <= delta, delta |e| - 0.5 delta^2 elsewhere),
    e = y_pred - y_true."""

    name = "huber_loss"

    def __init__(self, delta=1.0, reduction="sum_over_batch_size", name=None, dtype=None):
        super().__init__(reduction, name, dtype)
        if isinstance(delta, bool) or not isinstance(delta, (int, float, np.number)) \
                or not math.isfinite(delta) or delta < 0:
            raise ValueError(f"Huber: delta must be a number >= 0, got {delta!r}")
        self.delta = float(delta)

    def _compute(self, y, p, grad):
        e = np.subtract(p, y)
        n = max(e.size, 1)
        a = np.abs(e)
        small = a <= self.delta
        lin = a * self.delta
        lin -= 0.5 * self.delta * self.delta
        quad = np.square(e)
        quad *= 0.5
        np.copyto(lin, quad, where=small)
        value = lin.sum() / n if e.size else 0.0
        if not grad:
            return value, None
        # e where quadratic, delta * sign(e) where linear
        np.sign(e, out=a)
        a *= self.delta
        np.copyto(a, e, where=small)
        a *= 1.0 / n
        return value, a

    def get_config(self):
        # Keras's Huber.get_config drops delta; it is kept here so the loss round-trips
        return {**super().get_config(), "delta": self.delta}


# --------------------------------------------------------------------------- binary

class BinaryCrossentropy(Loss):
    """-(t log p + (1 - t) log(1 - p)), p clipped to [1e-7, 1 - 1e-7] (from_logits=False),
    or the stable max(x, 0) - x t + log(1 + exp(-|x|)) on logits x. Targets in [0, 1]."""

    name = "binary_crossentropy"

    def __init__(self, from_logits=False, label_smoothing=0.0, axis=-1,
                 reduction="sum_over_batch_size", name=None, dtype=None):
        super().__init__(reduction, name, dtype)
        self.from_logits = _check_bool("BinaryCrossentropy", "from_logits", from_logits)
        _check_only_default("BinaryCrossentropy", label_smoothing=(label_smoothing, 0.0),
                            axis=(axis, -1))
        self.label_smoothing = 0.0
        self.axis = -1

    def _check_values(self, y):
        if y.size and (y.min() < 0 or y.max() > 1):
            raise ValueError(f"y must hold binary targets in [0, 1] for loss {self.name!r}, "
                             f"got values in [{y.min():g}, {y.max():g}]")

    def _compute(self, y, p, grad):
        n = max(p.size, 1)
        if self.from_logits:
            # log(1 + exp(-|x|)) + max(x, 0) - x t
            e = np.abs(p)
            np.negative(e, out=e)
            np.exp(e, out=e)  # exp(-|x|), in (0, 1]
            loss = np.log1p(e)
            loss += np.maximum(p, 0)
            loss -= p * y
            value = loss.sum() / n if p.size else 0.0
            if not grad:
                return value, None
            # sigmoid(x) - t, sigmoid from exp(-|x|) without overflow
            s = e + 1
            np.reciprocal(s, out=s)  # 1/(1+e): sigmoid(|x|)
            neg = p < 0
            np.multiply(e, s, out=e)  # e/(1+e): sigmoid(-|x|)
            np.copyto(s, e, where=neg)
            s -= y
            s *= 1.0 / n
            return value, s
        q = np.clip(p, EPSILON, 1 - EPSILON)
        log_q = np.log(q)
        one_minus = np.subtract(1, q)
        log_1q = np.log(one_minus)
        # -(t log q + (1 - t) log(1 - q)) = -(log(1-q) + t (log q - log(1-q)))
        log_q -= log_1q
        log_q *= y
        log_q += log_1q
        value = -log_q.sum() / n if p.size else 0.0
        if not grad:
            return value, None
        # d/dq = (q - t) / (q (1 - q)); 0 where the clip is active (Keras's clip gradient)
        g = np.subtract(q, y)
        one_minus *= q
        g /= one_minus
        g *= 1.0 / n
        g[q != p] = 0
        return value, g

    def get_config(self):
        return {**super().get_config(), "from_logits": self.from_logits,
                "label_smoothing": self.label_smoothing, "axis": self.axis}


# --------------------------------------------------------------------------- categorical

class CategoricalCrossentropy(Loss):
    """-sum(t log p) over the last axis (the classes), then the mean over the rest. With
    from_logits=False, p is normalised to sum to 1 and clipped to [1e-7, 1 - 1e-7] first;
    with from_logits=True, log p is the log-softmax of the logits."""

    name = "categorical_crossentropy"

    def __init__(self, from_logits=False, label_smoothing=0.0, axis=-1,
                 reduction="sum_over_batch_size", name=None, dtype=None):
        super().__init__(reduction, name, dtype)
        self.from_logits = _check_bool(type(self).__name__, "from_logits", from_logits)
        _check_only_default(type(self).__name__, label_smoothing=(label_smoothing, 0.0),
                            axis=(axis, -1))
        self.label_smoothing = 0.0
        self.axis = -1

    def _shape_error(self, y_shape, pred_shape):
        hint = ""
        if len(pred_shape) == len(y_shape) + 1 or (y_shape and y_shape[-1] == 1):
            hint = (" (y looks like class indices: use sparse_categorical_crossentropy, or "
                    "one-hot y with utils.to_categorical)")
        return ValueError(f"y of shape {_shape_str(y_shape)} does not match the output shape "
                          f"{_shape_str(pred_shape)} for loss {self.name!r}: one-hot (or "
                          f"probability) targets need the output's shape{hint}")

    def _compute(self, y, p, grad):
        n = max(p.size // max(p.shape[-1], 1), 1)
        if self.from_logits:
            # log-softmax: x - max - log(sum(exp(x - max)))
            logp = p - p.max(axis=-1, keepdims=True)
            e = np.exp(logp)
            s = e.sum(axis=-1, keepdims=True)
            logp -= np.log(s)
            value = -np.vdot(y, logp) / n if p.size else 0.0
            if not grad:
                return value, None
            # softmax * sum(t) - t
            e /= s
            e *= y.sum(axis=-1, keepdims=True)
            e -= y
            e *= 1.0 / n
            return value, e
        s = p.sum(axis=-1, keepdims=True)
        q = p / s
        qc = np.clip(q, EPSILON, 1 - EPSILON)
        value = -np.vdot(y, np.log(qc)) / n if p.size else 0.0
        if not grad:
            return value, None
        # d/dq = -t/qc inside the clip; q = p/s: d/dp_j = (g_j - sum_i g_i q_i) / s
        g = np.divide(y, qc)
        np.negative(g, out=g)
        g[qc != q] = 0
        dot = np.multiply(g, q).sum(axis=-1, keepdims=True)
        g -= dot
        g /= s
        g *= 1.0 / n
        return value, g

    def get_config(self):
        return {**super().get_config(), "from_logits": self.from_logits,
                "label_smoothing": self.label_smoothing, "axis": self.axis}


class SparseCategoricalCrossentropy(Loss):
    """Categorical CE with class indices as targets: y of the output's shape without its
    last axis (a trailing 1 is dropped), integers in [0, classes)."""

    name = "sparse_categorical_crossentropy"
    sparse = True

    def __init__(self, from_logits=False, ignore_class=None, axis=-1,
                 reduction="sum_over_batch_size", name=None, dtype=None):
        super().__init__(reduction, name, dtype)
        self.from_logits = _check_bool(type(self).__name__, "from_logits", from_logits)
        _check_only_default(type(self).__name__, ignore_class=(ignore_class, None),
                            axis=(axis, -1))
        self.ignore_class = None

    def _target_shape(self, y_shape, pred_shape):
        shape = _same_rank(tuple(y_shape), tuple(pred_shape))
        if len(shape) == len(pred_shape) and shape and shape[-1] == 1:
            shape = shape[:-1]
        return shape if _matches(shape, pred_shape[:-1]) else None

    def _shape_error(self, y_shape, pred_shape):
        hint = ""
        if _matches(tuple(y_shape), pred_shape) and pred_shape[-1] != 1:
            hint = " (y looks one-hot: use categorical_crossentropy, or y.argmax(-1))"
        return ValueError(f"y of shape {_shape_str(y_shape)} does not match the output shape "
                          f"{_shape_str(pred_shape)} for loss {self.name!r}: class indices "
                          f"need the output's shape without its last axis, "
                          f"{_shape_str(pred_shape[:-1])}{hint}")

    def _convert(self, y, pred_shape):
        k = pred_shape[-1]
        if y.dtype.kind == "f" and y.size and not np.array_equal(y, np.round(y)):
            bad = float(y[y != np.round(y)].flat[0])
            raise ValueError(f"y must hold integer class indices for loss {self.name!r}, got "
                             f"{bad!r}")
        if y.size and (y.min() < 0 or (k is not None and y.max() >= k)):
            raise ValueError(f"y must hold class indices in [0, {k}) for loss "
                             f"{self.name!r} (the output has {k} classes), got values in "
                             f"[{y.min():g}, {y.max():g}]")
        return np.ascontiguousarray(y, dtype=np.intp)

    def _align(self, y_true, y_pred):
        y = np.asarray(y_true)
        if y.shape != y_pred.shape[:-1]:
            shape = self._target_shape(y.shape, y_pred.shape)
            if shape is None:
                raise self._shape_error(y.shape, y_pred.shape)
            y = y.reshape(shape)
        if y.dtype.kind not in "iu":
            if y.dtype.kind == "f" and not np.array_equal(y, np.round(y)):
                raise ValueError(f"y must hold integer class indices for loss {self.name!r}")
            y = y.astype(np.intp)
        if y.size and (y.min() < 0 or y.max() >= y_pred.shape[-1]):
            raise ValueError(f"y must hold class indices in [0, {y_pred.shape[-1]}) for loss "
                             f"{self.name!r}, got values in [{y.min()}, {y.max()}]")
        return y

    def _compute(self, y, p, grad):
        k = p.shape[-1]
        p2 = p.reshape(-1, k)
        labels = y.reshape(-1)
        n = max(labels.size, 1)
        rows = np.arange(labels.size)
        if self.from_logits:
            logp = p2 - p2.max(axis=-1, keepdims=True)
            e = np.exp(logp)
            s = e.sum(axis=-1, keepdims=True)
            picked = logp[rows, labels] - np.log(s[:, 0])
            value = -picked.sum() / n if labels.size else 0.0
            if not grad:
                return value, None
            e /= s
            e[rows, labels] -= 1
            e *= 1.0 / n
            return value, e.reshape(p.shape)
        s = p2.sum(axis=-1, keepdims=True)
        q = p2[rows, labels] / s[:, 0]
        qc = np.clip(q, EPSILON, 1 - EPSILON)
        value = -np.log(qc).sum() / n if labels.size else 0.0
        if not grad:
            return value, None
        # g = -1/qc at the label (0 if clipped); d/dp_j = (g_j - g_label q_label) / s
        g_label = -1.0 / qc
        g_label[qc != q] = 0
        g_label *= 1.0 / n
        g_label /= s[:, 0]
        out = np.empty_like(p2)
        out[:] = (g_label * q)[:, None]
        np.negative(out, out=out)
        out[rows, labels] += g_label
        return value, out.reshape(p.shape)

    def get_config(self):
        return {**super().get_config(), "from_logits": self.from_logits,
                "ignore_class": self.ignore_class}


# --------------------------------------------------------------------------- registry

_CLASSES = (MeanSquaredError, MeanAbsoluteError, Huber, BinaryCrossentropy,
            CategoricalCrossentropy, SparseCategoricalCrossentropy)
LOSSES = {
    "mse": MeanSquaredError, "mean_squared_error": MeanSquaredError,
    "mae": MeanAbsoluteError, "mean_absolute_error": MeanAbsoluteError,
    "huber": Huber, "binary_crossentropy": BinaryCrossentropy,
    "categorical_crossentropy": CategoricalCrossentropy,
    "sparse_categorical_crossentropy": SparseCategoricalCrossentropy,
}
_ALIASES = {**{cls.__name__: cls for cls in _CLASSES}, "MSE": MeanSquaredError,
            "MAE": MeanAbsoluteError}


def get(identifier):
    """A Loss for a Keras name ("mse", "mean_squared_error", "mae", "mean_absolute_error",
    "huber", "binary_crossentropy", "categorical_crossentropy",
    "sparse_categorical_crossentropy"; class names work too), a {"class_name", "config"}
    dict, or a Loss (returned as is). ValueError for anything else."""
    if isinstance(identifier, Loss):
        return identifier
    if isinstance(identifier, str):
        cls = LOSSES.get(identifier) or _ALIASES.get(identifier)
        if cls is not None:
            return cls()
    elif isinstance(identifier, dict) and set(identifier) >= {"class_name"}:
        # 'Huber', 'Custom>Huber' (Keras 2 files), 'keras.losses.Huber', any case
        name = str(identifier["class_name"]).rsplit(">", 1)[-1].rsplit(".", 1)[-1].lower()
        cls = next((c for n, c in _ALIASES.items() if n.lower() == name), None)
        if cls is not None:
            return cls.from_config(dict(identifier.get("config") or {}))
    raise ValueError(f"unknown loss {identifier!r}: fastlstm.keras knows "
                     + ", ".join(repr(n) for n in LOSSES))
