"""Keras 3's metrics for compile(metrics=[...]): running means over an epoch's batches.

    m = get("mae", loss)         # name "mae", as Keras logs it
    m.reset(); m.update(y_true, y_pred); m.result() -> float

Each metric computes a value per sample (Keras's MeanMetricWrapper: the metric function's
output averaged over every axis but the batch), sums them and counts the samples, so
result() is the mean over all samples seen since reset(): batches weigh by their size.

"accuracy" / "acc" resolve as Keras 3's compile does, from the shapes of y_true and
y_pred: binary accuracy (y_pred > 0.5) when y_pred's last axis has size 1, sparse
categorical accuracy when y_true has fewer axes than y_pred (or a trailing 1 against
several classes), categorical accuracy otherwise. With the usual outputs this is the
accuracy the loss implies: sparse CE -> sparse categorical, categorical CE -> categorical,
binary CE on one unit -> binary. The metric's name is the identifier as written.
"""
import numpy as np

__all__ = ["Metric", "Mean", "MeanAbsoluteError", "MeanSquaredError", "BinaryAccuracy",
           "CategoricalAccuracy", "SparseCategoricalAccuracy", "AccuracyByShape", "get"]


def _same_rank(y, p):
    """Keras's squeeze_or_expand_to_same_rank on two arrays."""
    if y.ndim == p.ndim + 1 and y.shape[-1] == 1:
        if p.ndim == 1:
            p = p[:, None]
        else:
            y = y[..., 0]
    elif p.ndim == y.ndim + 1 and p.shape[-1] == 1:
        if y.ndim == 1:
            y = y[:, None]
        else:
            p = p[..., 0]
    return y, p


class Metric:
    """A running mean of per-sample values. `name` is the key in the logs; `_direction`
    ("up"/"down") is what EarlyStopping's mode="auto" reads."""

    _direction = "down"

    def __init__(self, name=None):
        if name is not None and (not isinstance(name, str) or not name):
            raise ValueError(f"{type(self).__name__}: name must be a non-empty str, got "
                             f"{name!r}")
        self.name = name or self._default_name
        self.reset()

    _default_name = "metric"

    def reset(self):
        self._total = 0.0
        self._count = 0

    def reset_state(self):
        self.reset()

    def _values(self, y_true, y_pred):
        raise NotImplementedError

    def _add(self, values):
        values = np.asarray(values)
        if values.ndim == 0:
            self._total += float(values)
            self._count += 1
        else:
            n = values.shape[0]
            if values.ndim > 1:
                values = values.reshape(n, -1).mean(axis=1) if n else values.reshape(0)
            self._total += float(values.sum(dtype=np.float64))
            self._count += n

    def update(self, y_true, y_pred):
        """Add one batch (every sample weighs 1)."""
        self._add(self._values(np.asarray(y_true), np.asarray(y_pred)))

    def update_state(self, y_true, y_pred):
        self.update(y_true, y_pred)

    def result(self):
        """The mean per-sample value since reset() (0.0 before any update, as Keras)."""
        return self._total / self._count if self._count else 0.0

    def get_config(self):
        return {"name": self.name, "dtype": "float32"}

    def __repr__(self):
        return f"<{type(self).__name__} name={self.name!r} result={self.result():.6g}>"


class Mean(Metric):
    """A running mean of values: update(value, count=1) adds `value` with weight `count`
    (the loss of a batch with weight = its size); an array adds each element with weight 1."""

    _default_name = "mean"

    def update(self, value, count=1):
        if isinstance(value, np.ndarray) and value.ndim:
            self._add(value)
            return
        self._total += float(value) * count
        self._count += count


class _Regression(Metric):
    def _diff(self, y_true, y_pred):
        y_pred = y_pred.astype(np.float64) if y_pred.dtype.kind != "f" else y_pred
        y_true, y_pred = _same_rank(y_true.astype(y_pred.dtype, copy=False), y_pred)
        return np.subtract(y_true, y_pred)


class MeanAbsoluteError(_Regression):
    """mean(|y_true - y_pred|) over the last axis, per sample."""

    _default_name = "mean_absolute_error"

    def _values(self, y_true, y_pred):
        return np.abs(self._diff(y_true, y_pred)).mean(axis=-1)


class MeanSquaredError(_Regression):
    """mean((y_true - y_pred)^2) over the last axis, per sample."""

    _default_name = "mean_squared_error"

    def _values(self, y_true, y_pred):
        return np.square(self._diff(y_true, y_pred)).mean(axis=-1)


class BinaryAccuracy(Metric):
    """Elementwise (y_pred > threshold) == y_true."""

    _default_name = "binary_accuracy"
    _direction = "up"

    def __init__(self, name=None, threshold=0.5):
        self.threshold = float(threshold)
        super().__init__(name)

    def _values(self, y_true, y_pred):
        y_true, y_pred = _same_rank(y_true, y_pred)
        return np.equal(y_true, y_pred > self.threshold)


class CategoricalAccuracy(Metric):
    """argmax(y_true) == argmax(y_pred) over the last axis."""

    _default_name = "categorical_accuracy"
    _direction = "up"

    def _values(self, y_true, y_pred):
        return np.equal(y_true.argmax(axis=-1), y_pred.argmax(axis=-1))


class SparseCategoricalAccuracy(Metric):
    """y_true (class indices) == argmax(y_pred) over the last axis."""

    _default_name = "sparse_categorical_accuracy"
    _direction = "up"

    def _values(self, y_true, y_pred):
        if y_true.ndim == y_pred.ndim and y_true.shape[-1] == 1:
            y_true = y_true[..., 0]
        return np.equal(y_true, y_pred.argmax(axis=-1))


def _accuracy_kind(y_true, y_pred):
    """Keras 3's compile_utils.is_binary_or_sparse_categorical."""
    y_last = y_true.shape[-1] if y_true.ndim else 1
    p_last = y_pred.shape[-1] if y_pred.ndim else 1
    if p_last == 1:
        return BinaryAccuracy
    if y_true.ndim < y_pred.ndim or (y_last == 1 and p_last > 1):
        return SparseCategoricalAccuracy
    return CategoricalAccuracy


class AccuracyByShape(Metric):
    """Keras's "accuracy" string in compile: binary, sparse categorical or categorical
    accuracy as the shapes of y_true and y_pred say (see the module docstring)."""

    _default_name = "accuracy"
    _direction = "up"

    def __init__(self, name=None):
        super().__init__(name)
        self._kinds = {cls: cls() for cls in (BinaryAccuracy, CategoricalAccuracy,
                                              SparseCategoricalAccuracy)}

    def _values(self, y_true, y_pred):
        return self._kinds[_accuracy_kind(y_true, y_pred)]._values(y_true, y_pred)


_BY_NAME = {
    "mae": MeanAbsoluteError, "MAE": MeanAbsoluteError,
    "mean_absolute_error": MeanAbsoluteError, "MeanAbsoluteError": MeanAbsoluteError,
    "mse": MeanSquaredError, "MSE": MeanSquaredError,
    "mean_squared_error": MeanSquaredError, "MeanSquaredError": MeanSquaredError,
    "accuracy": AccuracyByShape, "acc": AccuracyByShape,
    "binary_accuracy": BinaryAccuracy, "BinaryAccuracy": BinaryAccuracy,
    "categorical_accuracy": CategoricalAccuracy, "CategoricalAccuracy": CategoricalAccuracy,
    "sparse_categorical_accuracy": SparseCategoricalAccuracy,
    "SparseCategoricalAccuracy": SparseCategoricalAccuracy,
}


def get(identifier, loss=None):
    """A fresh Metric for a Keras metric string ("mae", "mse", "accuracy", "acc",
    "mean_absolute_error", "binary_accuracy", ...; its name in the logs is the string as
    written, as in Keras 3), or a Metric (returned as is). `loss` (the compiled loss) is
    accepted for the contract; "accuracy" follows the shapes as Keras 3 does, which for
    the cross-entropy losses is the accuracy the loss implies. ValueError otherwise."""
    if isinstance(identifier, Metric):
        return identifier
    if isinstance(identifier, str) and identifier in _BY_NAME:
        return _BY_NAME[identifier](name=identifier)
    raise ValueError(f"unknown metric {identifier!r}: fastlstm.keras knows "
                     + ", ".join(repr(n) for n in _BY_NAME if n[0].islower()))
