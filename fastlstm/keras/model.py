"""Keras 3's Sequential on fastlstm: add, build, compile, fit, evaluate, predict, summary,
weights, configs and saving, with Keras's names, arguments and semantics.

    model = Sequential()
    model.add(LSTM(50, input_shape=(10, 1), return_sequences=True))
    model.add(LSTM(50))
    model.add(Dense(1))
    model.compile(optimizer="adam", loss="mse")
    history = model.fit(x, y, epochs=100, batch_size=32)

One training step runs each layer's `call(x, mask, training=True)`, the loss's
`value_and_grad`, each layer's `backward(dy)` in reverse, then ONE optimizer step over
every trainable layer's `update_variables()` (see layers.py). The loop around it is kept
lean on purpose: a small model's batch costs well under a millisecond, so the loop gathers
the batch order once per epoch, gathers batches into buffers allocated once per fit, and
leaves the progress bar's throttling to tqdm.

Data are NumPy arrays (or anything np.asarray takes), batch first. Every check on the
arguments and the data runs before anything changes (weights, optimizer state, states).
"""
import contextlib
import math
import sys
import time
from collections.abc import Mapping

import numpy as np

from . import layers as klayers
from . import random as krandom

__all__ = ["Sequential"]

_VERBOSE = ("auto", 0, 1, 2)
_sum = np.add.reduce


def _all_finite(arrays):
    """No NaN or inf in any item of `arrays`: one compiled pass over them all where the
    extension is built (a model's 8 gradients: ~3 us instead of ~9), else NumPy, item by
    item as well (a sum could overflow to inf from finite items)."""
    from .optimizers import _compiled
    compiled = _compiled()
    found = None if compiled is None else compiled.all_finite(arrays)
    if found is None:
        found = all(np.isfinite(a).all() for a in arrays)
    return bool(found)


class _NonFinite(Exception):
    """Raised inside a training step when the loss (or a gradient) is NaN or inf."""

    def __init__(self, what, value):
        super().__init__(what)
        self.what, self.value = what, value


# --------------------------------------------------------------------------- helpers

def _is_int(value):
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def _check_int(value, name, low):
    if not _is_int(value) or value < low:
        raise ValueError(f"{name} must be an int >= {low}, got {value!r}")
    return int(value)


def _check_verbose(verbose, name="verbose"):
    if isinstance(verbose, (bool, np.bool_)) or verbose not in _VERBOSE:
        raise ValueError(f"{name} must be 'auto', 0, 1 or 2, got {verbose!r}")
    return 1 if verbose == "auto" else int(verbose)


def _array(value, name):
    """value as an ndarray of numbers (a torch tensor is duck-typed), at least 1-D."""
    if value is None:
        raise ValueError(f"{name} is required (got None)")
    if isinstance(value, Mapping):
        raise TypeError(f"{name} must be an array; a dict of inputs is not supported by "
                        "Sequential (it has one input)")
    if hasattr(value, "detach") and hasattr(value, "cpu"):
        value = value.detach().cpu().numpy()
    try:
        arr = np.asarray(value)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{name} must be a rectangular array (sequences of different "
                         f"lengths: pad them first, e.g. fastlstm.keras.utils.pad_sequences): "
                         f"{exc}") from None
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"{name} must hold numbers, got dtype {arr.dtype}")
    if arr.ndim == 0:
        raise ValueError(f"{name} must have a batch dim (samples first), got a scalar")
    return arr


def _first_bad(arr):
    """Index of the first sample holding NaN or inf."""
    bad = ~np.isfinite(arr.reshape(len(arr), -1)).all(axis=1)
    return int(np.flatnonzero(bad)[0])


def _check_finite(arr, name):
    if arr.dtype.kind == "f" and arr.size and not np.isfinite(arr).all():
        raise ValueError(f"{name} holds NaN or inf (first in sample {_first_bad(arr)}): "
                         "clean or impute the data before training")


def _fmt_value(value):
    """A logged number as Keras's progress bar prints it."""
    return f"{value:.4f}" if abs(value) > 1e-3 else f"{value:.4e}"


def _fmt_logs(logs):
    return " - ".join(f"{k}: {_fmt_value(v)}" for k, v in logs.items())


def _shape_str(shape):
    return "(" + ", ".join("None" if d is None else str(d) for d in shape) + \
        ("," if len(shape) == 1 else "") + ")"


def _bytes_str(n):
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.2f} {unit}"
        n /= 1024.0


def _identifier_config(obj):
    """A compile argument as Keras's compile_config keeps it: a string stays a string, an
    object becomes {"class_name", "config"}."""
    if obj is None or isinstance(obj, str):
        return obj
    get_config = getattr(obj, "get_config", None)
    config = get_config() if callable(get_config) else {}
    return {"class_name": type(obj).__name__, "config": config}


class _Progress:
    """Keras's progress display for one epoch (or one evaluate/predict pass): a tqdm bar
    for verbose=1, one line at the end for verbose=2, nothing for 0. The bar's text is
    refreshed at most every `mininterval` seconds, so a batch costs tqdm's update only."""

    MININTERVAL = 0.1

    def __init__(self, verbose, total, desc, logs_fn=None):
        self.verbose, self.total, self.desc, self.logs_fn = verbose, total, desc, logs_fn
        self.bar = None
        self.start = time.perf_counter()
        self._next = self.start + self.MININTERVAL
        if verbose == 1:
            from tqdm import tqdm
            self.bar = tqdm(total=total, desc=desc, unit="step", file=sys.stdout,
                            leave=True, mininterval=self.MININTERVAL, dynamic_ncols=True)

    def update(self):
        bar = self.bar
        if bar is None:
            return
        if self.logs_fn is not None:
            now = time.perf_counter()
            if now >= self._next:
                self._next = now + self.MININTERVAL
                bar.set_postfix_str(_fmt_logs(self.logs_fn()), refresh=False)
        bar.update(1)

    def close(self, logs=None, steps=None):
        """End the display with the final logs (None: the run failed)."""
        if self.bar is not None:
            if logs is not None:
                self.bar.set_postfix_str(_fmt_logs(logs), refresh=False)
            self.bar.close()
            self.bar = None
        elif self.verbose == 2 and logs is not None:
            steps = self.total if steps is None else steps
            elapsed = time.perf_counter() - self.start
            per = elapsed / max(steps, 1)
            rate = f"{per * 1e3:.0f}ms/step" if per >= 1e-3 else f"{per * 1e6:.0f}us/step"
            text = _fmt_logs(logs)
            print(f"{self.desc} - {steps}/{self.total} - {elapsed:.0f}s - {rate}"
                  + (f" - {text}" if text else ""), file=sys.stdout, flush=True)


class _Callbacks:
    """The callbacks of one fit (History last), with per-batch hooks called only when a
    callback has them."""

    def __init__(self, callbacks, model, params):
        from . import callbacks as kcallbacks
        if callbacks is None:
            callbacks = []
        elif isinstance(callbacks, kcallbacks.Callback):
            callbacks = [callbacks]
        elif not isinstance(callbacks, (list, tuple)):
            raise TypeError(f"callbacks must be a list of Callback objects, got "
                            f"{type(callbacks).__name__}")
        for cb in callbacks:
            if not isinstance(cb, kcallbacks.Callback):
                raise TypeError(f"callbacks must hold fastlstm.keras.callbacks.Callback "
                                f"objects, got {type(cb).__name__}")
        self.history = kcallbacks.History()
        self.items = list(callbacks) + [self.history]
        for cb in self.items:
            cb.set_params(params)
            cb.set_model(model)
        self.batch_hooks = any(kcallbacks._has_batch_hooks(cb) for cb in self.items)

    def __getattr__(self, hook):
        items = self.items

        def call(*args):
            for cb in items:
                getattr(cb, hook)(*args)
        return call


# --------------------------------------------------------------------------- model

class Sequential:
    """Keras 3's Sequential: a stack of layers, each feeding the next.

    Parameters
    ----------
    layers : list of Layer, optional
        Added in order (an `Input(shape)` may come first).
    trainable : bool, default True
    name : str, optional
        Default "sequential", "sequential_1", ...

    Raises
    ------
    ValueError
        If name is not a non-empty str, or a layer cannot be added (see `add`).
    TypeError
        If layers is not a layer or a list/tuple of fastlstm.keras layers.

    Notes
    -----
    The input shape comes from an `Input(shape)` first item, from the first layer's
    `input_shape=` (with `batch_size=` for a stateful model), from `build(input_shape)`,
    or else from the first data the model sees (fit, predict, evaluate, ...).
    """

    def __init__(self, layers=None, trainable=True, name=None):
        """Create the model; the arguments are documented in the class docstring."""
        if name is not None and (not isinstance(name, str) or not name):
            raise ValueError(f"Sequential: name must be a non-empty str, got {name!r}")
        self.name = name if name is not None else klayers._unique_name("sequential")
        self._layers = []           # InputLayer (if any) first, as added
        self.built = False
        self._build_input_shape = None   # with the batch dim
        self._output_shape = None
        self.optimizer = None
        self.loss = None
        self.compiled_metrics = None
        self.compile_config = None
        self.compiled = False
        self._loss_fn = None
        self._metrics = []
        self.stop_training = False
        self.history = None
        if layers is not None:
            if isinstance(layers, klayers.Layer):
                layers = [layers]
            if not isinstance(layers, (list, tuple)):
                raise TypeError(f"Sequential: layers must be a list of layers, got "
                                f"{type(layers).__name__}")
            for layer in layers:
                self.add(layer)
        if not trainable:
            self.trainable = False

    def __repr__(self):
        return f"<Sequential name={self.name!r}, built={self.built}>"

    # --- layers ---------------------------------------------------------------------

    @property
    def layers(self):
        """The layers (an InputLayer is not listed, as in Keras)."""
        return [layer for layer in self._layers if not isinstance(layer, klayers.InputLayer)]

    @property
    def trainable(self):
        return all(layer.trainable for layer in self.layers) if self.layers else True

    @trainable.setter
    def trainable(self, value):
        if not isinstance(value, (bool, np.bool_)):
            raise ValueError(f"trainable must be True or False, got {value!r}")
        for layer in self.layers:
            layer.trainable = bool(value)

    def add(self, layer):
        """Append a layer to the model.

        An InputLayer (`Input(shape)`) may only come first; layer names must be unique
        within the model. A layer added to a built model is built at once for the previous
        layer's output; a model whose input shape is known is built when a layer is added.

        Parameters
        ----------
        layer : Layer
            A fastlstm.keras layer (LSTM, Dense, Input(shape), ...).

        Raises
        ------
        TypeError
            If layer is not a fastlstm.keras layer.
        ValueError
            If an InputLayer is not the first item, or another layer of the model already
            has layer's name. Errors from building the layer propagate (the layer is then
            not added).
        """
        if not isinstance(layer, klayers.Layer):
            raise TypeError(f"Sequential.add: layer must be a fastlstm.keras layer (e.g. "
                            f"LSTM, Dense, Input(shape)), got {type(layer).__name__}")
        if isinstance(layer, klayers.InputLayer) and self._layers:
            raise ValueError("Sequential.add: an InputLayer (Input(shape)) can only be the "
                             "first item of the model")
        if any(other.name == layer.name for other in self._layers):
            raise ValueError(f"Sequential.add: all layers added to a Sequential model should "
                             f"have unique names; {layer.name!r} is already the name of a "
                             "layer in this model: pass another name=")
        if self.built:
            layer.build(self._output_shape[1:])
            self._layers.append(layer)
            self._output_shape = (self._output_shape[0],) + tuple(
                layer.compute_output_shape(self._output_shape[1:]))
            return
        self._layers.append(layer)
        shape = self._declared_input_shape()
        if shape is not None and self.layers:
            try:
                self._build(shape)
            except Exception:
                self._layers.pop()
                raise

    def _declared_input_shape(self):
        """The input shape an Input(shape) first item or the first layer's input_shape=
        declares (batch dim first), or None."""
        inp = self._input_layer()
        if inp is not None:
            return tuple(inp.batch_shape)
        first = self.layers[0] if self.layers else None
        shape = getattr(first, "batch_input_shape", None)
        return None if shape is None else tuple(shape)

    def pop(self):
        """Remove and return the last layer (Keras's pop)."""
        if not self.layers:
            raise ValueError("Sequential.pop: the model has no layers to remove")
        layer = self._layers.pop()
        if self.built:
            if self.layers:
                self._output_shape = self._chain_shape(self._build_input_shape)
            else:
                self.built = False
                self._build_input_shape = self._output_shape = None
        return layer

    def get_layer(self, name=None, index=None):
        """A layer by name or by index (in `layers`)."""
        if index is not None:
            if not _is_int(index):
                raise ValueError(f"get_layer: index must be an int, got {index!r}")
            return self.layers[index]
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise ValueError(f"get_layer: no layer named {name!r} (layers: "
                         f"{[layer.name for layer in self.layers]})")

    # --- building -------------------------------------------------------------------

    def _input_layer(self):
        first = self._layers[0] if self._layers else None
        return first if isinstance(first, klayers.InputLayer) else None

    def _chain_shape(self, input_shape):
        shape = tuple(input_shape[1:])
        for layer in self.layers:
            shape = tuple(layer.compute_output_shape(shape))
        return (input_shape[0],) + shape

    def build(self, input_shape=None):
        """Create every layer's weights for inputs of `input_shape`.

        A built model only checks the shape against the one it was built for.

        Parameters
        ----------
        input_shape : tuple of int or None, optional
            The input shape with the batch dim first, e.g. (None, 10, 1) for 10 steps of 1
            feature. Default: the shape of the model's `Input(shape)` first item.

        Raises
        ------
        ValueError
            If input_shape is None and the model has no Input, if it is not a tuple/list of
            at least 2 positive ints or None, or if it does not match a built model's.
        """
        if input_shape is None:
            inp = self._input_layer()
            if inp is None:
                raise ValueError("Sequential.build: input_shape is required (with the batch "
                                 "dim, e.g. (None, 10, 1))")
            input_shape = inp.batch_shape
        if not isinstance(input_shape, (tuple, list)) or len(input_shape) < 2 or not all(
                d is None or (_is_int(d) and d > 0) for d in input_shape):
            raise ValueError(f"Sequential.build: input_shape must be a tuple of positive ints "
                             f"or None with the batch dim first, e.g. (None, 10, 1), got "
                             f"{input_shape!r}")
        input_shape = tuple(None if d is None else int(d) for d in input_shape)
        if self.built:
            self._check_shape(input_shape[1:], "input_shape", input_shape)
            return
        self._build(input_shape)

    def _build(self, input_shape):
        if not self.layers:
            raise ValueError("Sequential: the model has no layers to build (add some first)")
        inp = self._input_layer()
        if inp is not None:
            inp.build(input_shape[1:])
            want = inp.batch_shape
            input_shape = (want[0] if input_shape[0] is None else input_shape[0],) + tuple(
                w if w is not None else s for w, s in zip(want[1:], input_shape[1:]))
        shape = tuple(input_shape[1:])
        for layer in self.layers:
            layer.build(shape)
            shape = tuple(layer.compute_output_shape(shape))
        self._build_input_shape = input_shape
        self._output_shape = (input_shape[0],) + shape
        self.built = True

    @property
    def input_shape(self):
        """The input shape with the batch dim (the model must be built)."""
        if not self.built:
            raise AttributeError("the model is not built yet, so it has no input_shape")
        return self._build_input_shape

    @property
    def output_shape(self):
        if not self.built:
            raise AttributeError("the model is not built yet, so it has no output_shape")
        return self._output_shape

    def _check_shape(self, shape, name, full):
        """`shape` (without batch) of data called `name` against the built model: the rank
        and the feature count (the last dim) must fit; other dims may differ, as in Keras
        (an LSTM runs any number of steps; an Embedding's ids any length)."""
        want = self._build_input_shape[1:]
        embedding_first = isinstance(self.layers[0], klayers.Embedding)
        if len(shape) == len(want) and (embedding_first or want[-1] is None
                                        or shape[-1] == want[-1]):
            return
        want = (None,) * (len(want) - 1) + (None if embedding_first else want[-1],)
        what = "ids" if embedding_first else "features"
        raise ValueError(f"{name} must have shape {_shape_str((None,) + want)} for this model "
                         f"(batch first, None = any size, the last dim holds the {what}), got "
                         f"{name} of shape {_shape_str(full)}")

    # --- data -------------------------------------------------------------------------

    def _input_kind(self):
        """(dtype for x, Embedding or None) for the model's first layer."""
        first = self.layers[0]
        if isinstance(first, klayers.Embedding):
            return None, first
        return first.dtype, None

    def _prepare_x(self, x, name="x"):
        """x checked and converted for the model (built on its shape if needed)."""
        if not self.layers:
            raise ValueError("Sequential: the model has no layers (add some first)")
        arr = _array(x, name)
        if arr.ndim < 2 and not isinstance(self.layers[0], klayers.Embedding):
            raise ValueError(f"{name} must be batch first with a feature dim, e.g. (samples, "
                             f"steps, features) for an LSTM, got shape {arr.shape}")
        if len(arr) == 0:
            raise ValueError(f"{name} has no samples (shape {arr.shape})")
        if self.built:
            self._check_shape(arr.shape[1:], name, arr.shape)
        dtype, embedding = self._input_kind()
        if embedding is not None:
            _check_finite(arr, name)
            if arr.dtype.kind == "f" and not np.all(arr == np.round(arr)):
                raise ValueError(f"{name} must hold whole-number ids for layer "
                                 f"{embedding.name!r} (Embedding)")
            lo, hi = arr.min(), arr.max()
            if lo < 0 or hi >= embedding.input_dim:
                raise ValueError(f"{name} must hold ids in [0, {embedding.input_dim}) for "
                                 f"layer {embedding.name!r} (Embedding, input_dim="
                                 f"{embedding.input_dim}), got values from {lo} to {hi}")
            arr = np.ascontiguousarray(arr, dtype=np.intp)
        else:
            if arr.dtype != dtype or not arr.flags.c_contiguous:
                arr = np.ascontiguousarray(arr, dtype=dtype)
            _check_finite(arr, name)
        if not self.built:
            try:
                self._build((None,) + arr.shape[1:])
            except ValueError as exc:
                raise ValueError(f"{name} of shape {arr.shape} does not fit the model: "
                                 f"{exc}") from None
        return arr

    def _prepare_y(self, y, x, name="y", x_name="x"):
        """y checked (length, finiteness, shape and range via the loss) and converted."""
        arr = _array(y, name)
        if len(arr) != len(x):
            raise ValueError(f"{x_name} and {name} must have the same number of samples, got "
                             f"{len(x)} and {len(arr)} ({x_name} shape {x.shape}, {name} "
                             f"shape {arr.shape})")
        _check_finite(arr, name)
        y_pred_shape = (len(x),) + self._chain_shape((None,) + x.shape[1:])[1:]
        try:
            return self._loss_fn.check_targets(arr, y_pred_shape)
        except (ValueError, TypeError) as exc:
            raise type(exc)(f"{name}: {exc} (the model's output shape is "
                            f"{_shape_str(y_pred_shape)})") from None

    def _stateful_layers(self):
        return [layer for layer in self.layers if getattr(layer, "stateful", False)]

    def _batch_size(self, batch_size, n, what, name="batch_size"):
        """The batch size for n samples; a stateful model needs a fixed one dividing n."""
        if batch_size is not None:
            batch_size = _check_int(batch_size, name, 1)
        if not self._stateful_layers():
            return 32 if batch_size is None else batch_size
        fixed = self._build_input_shape[0] if self._build_input_shape else None
        if fixed is None:
            for layer in self._stateful_layers():
                states = getattr(layer, "states", None)
                if states is not None:
                    fixed = len(states[0])
                    break
        if fixed is not None and batch_size is not None and batch_size != fixed:
            raise ValueError(f"{name}={batch_size}: this model has a stateful LSTM with the "
                             f"fixed batch size {fixed}: pass {name}={fixed} (or leave it "
                             "out)")
        size = fixed if fixed is not None else (32 if batch_size is None else batch_size)
        if n % size:
            raise ValueError(f"{what} has {n} samples, which {name}={size} does not divide: "
                             "a stateful model runs fixed-size batches, in order (sample i "
                             "of each batch continues sample i of the previous one); trim "
                             f"the data to a multiple of {size}")
        return size

    # --- compile --------------------------------------------------------------------

    def compile(self, optimizer="rmsprop", loss=None, metrics=None, loss_weights=None,
                weighted_metrics=None, run_eagerly=False, steps_per_execution=1,
                jit_compile="auto", auto_scale_loss=True):
        """Configure the model for training (Keras's compile).

        Parameters
        ----------
        optimizer : str or Optimizer, default "rmsprop"
            "adam", "sgd", "rmsprop", "adamw" or an optimizer instance. An optimizer given
            by name starts fresh; an instance keeps its state.
        loss : str or Loss, optional
            "mse", "sparse_categorical_crossentropy", ... or a loss instance. Required
            before fit / evaluate.
        metrics : str or list, optional
            The metrics to log (["mae"], ["accuracy"], ...).
        loss_weights : None
            Not supported: anything but None raises ValueError.
        weighted_metrics : None
            Not supported: anything but None raises ValueError.
        run_eagerly : bool, default False
            Accepted for Keras compatibility; ignored.
        steps_per_execution : int, default 1
            Accepted for Keras compatibility; ignored.
        jit_compile : default "auto"
            Accepted for Keras compatibility; ignored.
        auto_scale_loss : bool, default True
            Accepted for Keras compatibility; ignored.

        Raises
        ------
        ValueError
            If loss_weights or weighted_metrics is given, if the optimizer, loss or a
            metric is an unknown name, or if metric names are not unique or are "loss".
        TypeError
            If the optimizer, loss or a metric is of a type that is not accepted.
        """
        from . import losses, metrics as kmetrics, optimizers
        if loss_weights is not None:
            raise ValueError("compile: loss_weights is not supported (a Sequential has one "
                             "output)")
        if weighted_metrics is not None:
            raise ValueError("compile: weighted_metrics is not supported (no sample weights)")
        try:
            opt = optimizers.get(optimizer)
        except (ValueError, TypeError) as exc:
            raise type(exc)(f"compile(optimizer={optimizer!r}): {exc}") from None
        loss_fn = None
        if loss is not None:
            try:
                loss_fn = losses.get(loss)
            except (ValueError, TypeError) as exc:
                raise type(exc)(f"compile(loss={loss!r}): {exc}") from None
        if metrics is None:
            metrics = []
        elif isinstance(metrics, (str, Mapping)) or not isinstance(metrics, (list, tuple)):
            metrics = [metrics]
        built_metrics = []
        for identifier in metrics:
            try:
                built_metrics.append(kmetrics.get(identifier, loss_fn))
            except (ValueError, TypeError) as exc:
                raise type(exc)(f"compile(metrics=[..., {identifier!r}, ...]): {exc}") \
                    from None
        names = [m.name for m in built_metrics]
        if len(set(names)) != len(names) or "loss" in names:
            raise ValueError(f"compile: metric names must be unique and not 'loss', got "
                             f"{names}")
        self.optimizer, self.loss, self._loss_fn = opt, loss, loss_fn
        self._metrics = built_metrics
        self.compiled_metrics = [m if isinstance(m, str) else n
                                 for m, n in zip(metrics, names)]
        self.compile_config = {"optimizer": _identifier_config(optimizer),
                               "loss": _identifier_config(loss),
                               "metrics": list(self.compiled_metrics) or None}
        self.compiled = True

    def get_compile_config(self):
        """The compile arguments (identifiers, or {"class_name", "config"} for objects)."""
        return None if self.compile_config is None else dict(self.compile_config)

    @property
    def metrics_names(self):
        return ["loss"] + [m.name for m in self._metrics] if self.compiled else []

    @property
    def metrics(self):
        """The compiled metric objects."""
        return list(self._metrics)

    def _require_compiled(self, method):
        if not self.compiled:
            raise ValueError(f"You must call compile() before {method}() (e.g. "
                             "model.compile(optimizer='adam', loss='mse'))")
        if self._loss_fn is None:
            raise ValueError(f"{method}(): no loss to compute: pass loss= to compile()")

    def _reset_metrics(self):
        for m in self._metrics:
            m.reset()

    def reset_metrics(self):
        self._reset_metrics()

    # --- the step -------------------------------------------------------------------

    def _plan(self):
        """(layers to run, layers to backpropagate through in reverse, trainable layers).
        Layers before the first trainable one with weights need no backward at all."""
        run = self.layers
        trainable = [layer for layer in run if layer.trainable and layer.count_params() > 0]
        if trainable:
            first = run.index(trainable[0])
            back = run[first:][::-1]
        else:
            back = []
        return run, back, trainable

    def _forward(self, run, x, training):
        mask = None
        for layer in run:
            x, mask = layer.call(x, mask, training)
        return x, mask

    def _train_step(self, plan, xb, yb):
        """One batch: forward, loss, backward, optimizer; returns the loss value.
        Raises _NonFinite before the update when the loss or a gradient is NaN or inf."""
        run, back, trainable = plan
        y_pred, mask = self._forward(run, xb, True)
        if mask is not None:
            raise ValueError("fit: the model's output carries a mask (a return_sequences "
                             "layer after Embedding(mask_zero=True)): a masked loss is not "
                             "supported by fastlstm.keras")
        value, dy = self._loss_fn.value_and_grad(yb, y_pred)
        value = float(value)
        if not math.isfinite(value):
            raise _NonFinite("loss", value)
        for m in self._metrics:
            m.update(yb, y_pred)
        for layer in back:
            dy = layer.backward(dy)
        with contextlib.ExitStack() as stack:
            variables = []
            for layer in trainable:
                variables.extend(stack.enter_context(layer.update_variables()))
            grads = [g for _, _, g in variables]
            if not _all_finite(grads):
                raise _NonFinite("gradient", sum(float(_sum(g, None)) for g in grads))
            self.optimizer.apply(variables)
        return value

    def _logs(self, loss_total, seen, prefix=""):
        logs = {prefix + "loss": loss_total / seen if seen else float("nan")}
        for m in self._metrics:
            logs[prefix + m.name] = float(m.result())
        return logs

    # --- fit ------------------------------------------------------------------------

    def fit(self, x=None, y=None, batch_size=None, epochs=1, verbose="auto", callbacks=None,
            validation_split=0.0, validation_data=None, shuffle=True, class_weight=None,
            sample_weight=None, initial_epoch=0, steps_per_epoch=None, validation_steps=None,
            validation_batch_size=None, validation_freq=1):
        """Train the model for `epochs` epochs (Keras's fit).

        Logged values are means over the epoch's batches weighted by batch size (Keras's).
        Every argument and the data are checked before training.

        Parameters
        ----------
        x : array_like
            The inputs, samples first.
        y : array_like
            The targets, one per sample of x (required).
        batch_size : int, optional
            Default 32 (a stateful model's fixed batch size).
        epochs : int, default 1
            The index of the last epoch + 1: epochs initial_epoch .. epochs - 1 run
            (as in Keras).
        verbose : "auto", 0, 1 or 2, default "auto"
            "auto"/1 a progress bar per epoch, 2 one line per epoch, 0 quiet.
        callbacks : list of Callback, optional
            fastlstm.keras.callbacks objects (EarlyStopping, ModelCheckpoint, ...).
        validation_split : float in [0, 1), default 0.0
            The LAST fraction of x and y (taken before shuffling) is held out for
            validation, as in Keras.
        validation_data : tuple, optional
            (x_val, y_val); it overrides validation_split.
        shuffle : bool, default True
            A fresh order each epoch from fastlstm.keras.random (a stateful model never
            shuffles: its batches run in order). "batch" is not supported.
        class_weight : None
            Not supported: anything but None raises ValueError.
        sample_weight : None
            Not supported: anything but None raises ValueError.
        initial_epoch : int, default 0
            The epoch to start at (for resuming a run).
        steps_per_epoch : None
            Not supported: anything but None raises ValueError.
        validation_steps : None
            Not supported: anything but None raises ValueError.
        validation_batch_size : int, optional
            The batch size of validation; default batch_size.
        validation_freq : int, default 1
            Validate after every validation_freq-th epoch.

        Returns
        -------
        History
            Its `history` dict holds "loss", each metric, and "val_loss" /
            "val_<metric>" with validation.

        Raises
        ------
        ValueError
            If the model is not compiled, an argument is invalid or unsupported, y is
            missing, or the data do not fit the model.
        FloatingPointError
            Naming the epoch and batch, if the loss (or a gradient) becomes NaN or inf;
            that batch's update is not applied, so the weights are those after the
            previous batch.
        """
        self._require_compiled("fit")
        verbose = _check_verbose(verbose)
        epochs = _check_int(epochs, "epochs", 0)
        initial_epoch = _check_int(initial_epoch, "initial_epoch", 0)
        validation_freq = _check_int(validation_freq, "validation_freq", 1)
        for key, value in (("class_weight", class_weight), ("sample_weight", sample_weight),
                           ("steps_per_epoch", steps_per_epoch),
                           ("validation_steps", validation_steps)):
            if value is not None:
                raise ValueError(f"fit: {key} is not supported by fastlstm.keras (only None)")
        if not isinstance(shuffle, (bool, np.bool_)):
            raise ValueError(f"fit: shuffle must be True or False, got {shuffle!r}"
                             + (" ('batch' shuffling is not supported)"
                                if isinstance(shuffle, str) and shuffle == "batch" else ""))
        if isinstance(validation_split, (bool, np.bool_)) or not isinstance(
                validation_split, (int, float, np.integer, np.floating)) \
                or not 0.0 <= validation_split < 1.0:
            raise ValueError(f"fit: validation_split must be a float in [0, 1), got "
                             f"{validation_split!r}")
        x = self._prepare_x(x)
        if y is None:
            raise ValueError("fit: y is required (the targets)")
        y = self._prepare_y(y, x)
        val = None
        if validation_data is not None:
            if not isinstance(validation_data, (tuple, list)) or len(validation_data) not in (
                    2, 3):
                raise ValueError("fit: validation_data must be a tuple (x_val, y_val), got "
                                 f"{type(validation_data).__name__}"
                                 + (f" of length {len(validation_data)}"
                                    if isinstance(validation_data, (tuple, list)) else ""))
            if len(validation_data) == 3 and validation_data[2] is not None:
                raise ValueError("fit: validation_data's sample weights (its third item) are "
                                 "not supported")
            vx = self._prepare_x(validation_data[0], "validation_data[0]")
            vy = self._prepare_y(validation_data[1], vx, "validation_data[1]",
                                 "validation_data[0]")
            val = (vx, vy)
        elif validation_split:
            split_at = int(math.floor(len(x) * (1.0 - validation_split)))
            if split_at == 0 or split_at == len(x):
                raise ValueError(f"fit: the training data has {len(x)} samples, which is not "
                                 "enough to split into a training and a validation set as "
                                 f"validation_split={validation_split} asks")
            x, y, val = x[:split_at], y[:split_at], (x[split_at:], y[split_at:])
        n = len(x)
        bs = self._batch_size(batch_size, n, "x")
        vbs = bs
        if val is not None:
            vbs = self._batch_size(bs if validation_batch_size is None
                                   else validation_batch_size, len(val[0]),
                                   "the validation data", "validation_batch_size")
        steps = -(-n // bs)
        cbs = _Callbacks(callbacks, self, {"verbose": verbose, "epochs": epochs,
                                           "steps": steps})
        stateful = bool(self._stateful_layers())
        shuffling = bool(shuffle) and not stateful and n > 1
        plan = self._plan()
        if shuffling:  # batch buffers, allocated once
            full = (np.empty((bs,) + x.shape[1:], x.dtype), np.empty((bs,) + y.shape[1:],
                                                                     y.dtype))
            rem = n - (n // bs) * bs
            part = (np.empty((rem,) + x.shape[1:], x.dtype),
                    np.empty((rem,) + y.shape[1:], y.dtype)) if rem else None
        rng = krandom.generator
        step = self._train_step
        self.stop_training = False
        self.history = cbs.history
        cbs.on_train_begin(None)
        epoch_logs = None
        for epoch in range(initial_epoch, epochs):
            self._reset_metrics()
            cbs.on_epoch_begin(epoch, None)
            order = rng().permutation(n) if shuffling else None
            loss_total, seen = 0.0, 0
            progress = _Progress(verbose, steps, f"Epoch {epoch + 1}/{epochs}",
                                 lambda: self._logs(loss_total, seen))
            batch = 0
            try:
                for batch in range(steps):
                    s = batch * bs
                    e = min(s + bs, n)
                    if order is None:
                        xb, yb = x[s:e], y[s:e]
                    else:
                        bx, by = full if e - s == bs else part
                        idx = order[s:e]
                        xb = np.take(x, idx, axis=0, out=bx)
                        yb = np.take(y, idx, axis=0, out=by)
                    if cbs.batch_hooks:
                        cbs.on_train_batch_begin(batch, None)
                    value = step(plan, xb, yb)
                    loss_total += value * (e - s)
                    seen += e - s
                    progress.update()
                    if cbs.batch_hooks:
                        cbs.on_train_batch_end(batch, self._logs(loss_total, seen))
                    if self.stop_training:
                        break
            except _NonFinite as exc:
                progress.close()
                raise FloatingPointError(
                    f"fit: the {exc.what} became {exc.value} at epoch {epoch + 1}/{epochs}, "
                    f"batch {batch + 1}/{steps}; training stopped before that batch's update "
                    "(the weights are those after the previous batch). Lower the learning "
                    "rate, scale the data, or clip gradients (optimizer clipnorm=...)") \
                    from None
            except BaseException:
                progress.close()
                raise
            epoch_logs = self._logs(loss_total, seen)
            if val is not None and (epoch + 1) % validation_freq == 0:  # Keras's rule
                epoch_logs.update(self._evaluate_arrays(val[0], val[1], vbs, 0, "val_"))
            progress.close(epoch_logs, batch + 1)
            cbs.on_epoch_end(epoch, epoch_logs)
            if self.stop_training:
                break
        cbs.on_train_end(epoch_logs)
        return self.history

    # --- evaluate / predict -----------------------------------------------------------

    def _evaluate_arrays(self, x, y, bs, verbose, prefix=""):
        self._reset_metrics()
        run = self.layers
        loss_fn = self._loss_fn
        n = len(x)
        steps = -(-n // bs)
        loss_total, seen = 0.0, 0
        progress = _Progress(verbose, steps, "evaluate", lambda: self._logs(loss_total, seen))
        try:
            for s in range(0, n, bs):
                xb, yb = x[s:s + bs], y[s:s + bs]
                y_pred, _ = self._forward(run, xb, False)
                loss_total += loss_fn(yb, y_pred) * len(xb)
                seen += len(xb)
                for m in self._metrics:
                    m.update(yb, y_pred)
                progress.update()
        except BaseException:
            progress.close()
            raise
        logs = self._logs(loss_total, seen, prefix)
        progress.close(logs)
        return logs

    def evaluate(self, x=None, y=None, batch_size=None, verbose="auto", sample_weight=None,
                 steps=None, callbacks=None, return_dict=False):
        """The loss and metrics on (x, y), in inference mode.

        Parameters
        ----------
        x : array_like
            The inputs, samples first.
        y : array_like
            The targets (required).
        batch_size : int, optional
            Default 32 (a stateful model's fixed batch size).
        verbose : "auto", 0, 1 or 2, default "auto"
            Progress display, as in fit.
        sample_weight : None
            Not supported: anything but None raises ValueError.
        steps : None
            Not supported: anything but None raises ValueError.
        callbacks : list of Callback, optional
            Their on_test_begin / on_test_end hooks are called.
        return_dict : bool, default False
            Return a dict {name: value}.

        Returns
        -------
        float, list of float or dict
            The loss alone, or [loss, *metrics], or a dict with return_dict=True.

        Raises
        ------
        ValueError
            If the model is not compiled, sample_weight or steps is given, y is missing, or
            the data do not fit the model.
        """
        self._require_compiled("evaluate")
        verbose = _check_verbose(verbose)
        if sample_weight is not None or steps is not None:
            raise ValueError("evaluate: sample_weight and steps are not supported (only None)")
        x = self._prepare_x(x)
        if y is None:
            raise ValueError("evaluate: y is required (the targets)")
        y = self._prepare_y(y, x)
        bs = self._batch_size(batch_size, len(x), "x")
        cbs = _Callbacks(callbacks, self, {"verbose": verbose, "steps": -(-len(x) // bs)})
        cbs.on_test_begin(None)
        logs = self._evaluate_arrays(x, y, bs, verbose)
        cbs.on_test_end(logs)
        if return_dict:
            return logs
        values = list(logs.values())
        return values[0] if len(values) == 1 else values

    def _predict_array(self, x, bs, verbose):
        run = self.layers
        n = len(x)
        out = None
        progress = _Progress(verbose, -(-n // bs), "predict")
        try:
            for s in range(0, n, bs):
                y, _ = self._forward(run, x[s:s + bs], False)
                if out is None:
                    if len(y) == n:  # one batch: its output is the result
                        out = y.copy() if np.may_share_memory(y, x) else y
                        progress.update()
                        break
                    out = np.empty((n,) + y.shape[1:], y.dtype)
                out[s:s + len(y)] = y
                progress.update()
        except BaseException:
            progress.close()
            raise
        progress.close({})
        return out

    def predict(self, x, batch_size=None, verbose="auto", steps=None, callbacks=None):
        """The model's outputs for x, in inference mode (dropout off), batch by batch.

        A stateful model runs its batches in order, carrying its state across them and
        across calls until reset_states().

        Parameters
        ----------
        x : array_like
            The inputs, samples first.
        batch_size : int, optional
            Default 32 (a stateful model's fixed batch size).
        verbose : "auto", 0, 1 or 2, default "auto"
            Progress display, as in fit.
        steps : None
            Not supported: anything but None raises ValueError.
        callbacks : list of Callback, optional
            Their on_predict_begin / on_predict_end hooks are called.

        Returns
        -------
        ndarray
            The outputs, of the last layer's dtype (float32 unless built as float64).

        Raises
        ------
        ValueError
            If steps is given or x does not fit the model.
        """
        verbose = _check_verbose(verbose)
        if steps is not None:
            raise ValueError("predict: steps is not supported (only None)")
        x = self._prepare_x(x)
        bs = self._batch_size(batch_size, len(x), "x")
        cbs = _Callbacks(callbacks, self, {"verbose": verbose, "steps": -(-len(x) // bs)})
        cbs.on_predict_begin(None)
        out = self._predict_array(x, bs, verbose)
        cbs.on_predict_end(None)
        return out

    def predict_on_batch(self, x):
        """The outputs for x as one batch, in inference mode.

        Parameters
        ----------
        x : array_like
            The inputs, samples first (a stateful model's fixed batch size of them).

        Returns
        -------
        ndarray
            The outputs.
        """
        x = self._prepare_x(x)
        self._check_one_batch(x)
        y, _ = self._forward(self.layers, x, False)
        return y

    def __call__(self, x, training=False):
        """Keras's model(x): the outputs for x as one batch (training=True runs dropout)."""
        x = self._prepare_x(x)
        y, _ = self._forward(self.layers, x, bool(training))
        return y

    def train_on_batch(self, x, y=None, sample_weight=None, class_weight=None,
                       return_dict=False):
        """One optimizer step on (x, y) as one batch.

        Parameters
        ----------
        x : array_like
            The inputs, samples first.
        y : array_like
            The targets (required).
        sample_weight : None
            Not supported: anything but None raises ValueError.
        class_weight : None
            Not supported: anything but None raises ValueError.
        return_dict : bool, default False
            Return a dict {name: value}.

        Returns
        -------
        float, list of float or dict
            This batch's loss, or [loss, *metrics] (a dict with return_dict=True); the
            values are computed before the update, as in fit.

        Raises
        ------
        ValueError
            If the model is not compiled, sample_weight or class_weight is given, y is
            missing, or the data do not fit the model.
        FloatingPointError
            If the loss or a gradient becomes NaN or inf; the update is then not applied.
        """
        self._require_compiled("train_on_batch")
        if sample_weight is not None or class_weight is not None:
            raise ValueError("train_on_batch: sample_weight and class_weight are not "
                             "supported (only None)")
        x = self._prepare_x(x)
        if y is None:
            raise ValueError("train_on_batch: y is required (the targets)")
        y = self._prepare_y(y, x)
        self._check_one_batch(x)
        self._reset_metrics()
        try:
            value = self._train_step(self._plan(), x, y)
        except _NonFinite as exc:
            raise FloatingPointError(
                f"train_on_batch: the {exc.what} became {exc.value}; the update was not "
                "applied (the weights are unchanged)") from None
        return self._batch_result(value, len(x), return_dict)

    def test_on_batch(self, x, y=None, sample_weight=None, return_dict=False):
        """The loss (and metrics) on (x, y) as one batch, in inference mode.

        Parameters
        ----------
        x : array_like
            The inputs, samples first.
        y : array_like
            The targets (required).
        sample_weight : None
            Not supported: anything but None raises ValueError.
        return_dict : bool, default False
            Return a dict {name: value}.

        Returns
        -------
        float, list of float or dict
            The loss, or [loss, *metrics], or a dict with return_dict=True.

        Raises
        ------
        ValueError
            If the model is not compiled, sample_weight is given, y is missing, or the data
            do not fit the model.
        """
        self._require_compiled("test_on_batch")
        if sample_weight is not None:
            raise ValueError("test_on_batch: sample_weight is not supported (only None)")
        x = self._prepare_x(x)
        if y is None:
            raise ValueError("test_on_batch: y is required (the targets)")
        y = self._prepare_y(y, x)
        logs = self._evaluate_arrays(x, y, len(x), 0)
        return logs if return_dict else (list(logs.values()) if len(logs) > 1
                                         else logs["loss"])

    def _check_one_batch(self, x):
        """A stateful model's batch must have its fixed batch size."""
        if self._stateful_layers():
            size = self._batch_size(None, len(x), "x")
            if len(x) != size:
                raise ValueError(f"x has {len(x)} samples: this model has a stateful LSTM "
                                 f"with the fixed batch size {size}, and a batch method runs "
                                 "x as one batch")

    def _batch_result(self, value, n, return_dict):
        logs = self._logs(value * n, n)
        if return_dict:
            return logs
        return list(logs.values()) if len(logs) > 1 else logs["loss"]

    # --- states and weights -----------------------------------------------------------

    def reset_states(self):
        """Zero the carried state of every stateful layer.

        Takes no parameters and returns nothing.
        """
        for layer in self.layers:
            layer.reset_states()

    reset_state = reset_states

    def _require_built(self, what):
        if not self.built:
            raise ValueError(f"{what}: the model is not built yet: give the first layer "
                             "input_shape=, start with Input(shape), call build(input_shape) "
                             "or run it on data first")

    def get_weights(self):
        """Copies of every layer's weights, layer after layer, each in Keras's order.

        Returns
        -------
        list of ndarray
            The weights (empty for a model that is not built).
        """
        return [w for layer in self.layers for w in layer.get_weights()]

    def set_weights(self, weights):
        """Replace every weight of the model.

        The count and every shape are checked, and every value must be finite, before
        anything changes.

        Parameters
        ----------
        weights : list of array_like
            In get_weights()'s order and shapes.

        Raises
        ------
        ValueError
            If the model is not built, the count or a shape differs, or a value is NaN or
            inf.
        TypeError
            If weights is not a list or tuple.
        """
        self._require_built("set_weights")
        if not isinstance(weights, (list, tuple)):
            raise TypeError(f"set_weights takes a list of arrays, got "
                            f"{type(weights).__name__}")
        current = [(layer, [w.shape for w in layer.get_weights()]) for layer in self.layers]
        total = sum(len(shapes) for _, shapes in current)
        if len(weights) != total:
            raise ValueError(f"set_weights: the model has {total} weights ("
                             + ", ".join(f"{layer.name}: {len(s)}" for layer, s in current if s)
                             + f"), got a list of {len(weights)}")
        arrays, i = [], 0
        for layer, shapes in current:
            for shape in shapes:
                arr = _array(weights[i], f"weights[{i}]")
                if arr.shape != shape:
                    raise ValueError(f"set_weights: weights[{i}] (layer {layer.name!r}) must "
                                     f"have shape {shape}, got {arr.shape}")
                if arr.dtype.kind == "f" and not np.isfinite(arr).all():
                    raise ValueError(f"set_weights: weights[{i}] (layer {layer.name!r}) "
                                     "holds NaN or inf")
                arrays.append(arr)
                i += 1
        i = 0
        for layer, shapes in current:
            if shapes:
                layer.set_weights(arrays[i:i + len(shapes)])
            i += len(shapes)

    @property
    def weights(self):
        return self.get_weights()

    @property
    def trainable_weights(self):
        return [w for layer in self.layers if layer.trainable for w in layer.get_weights()]

    @property
    def non_trainable_weights(self):
        return [w for layer in self.layers if not layer.trainable
                for w in layer.get_weights()]

    def count_params(self):
        """The number of weights (the model must be built)."""
        self._require_built("count_params")
        return int(sum(layer.count_params() for layer in self.layers))

    # --- summary --------------------------------------------------------------------

    def summary(self, line_length=None, positions=None, print_fn=None, expand_nested=False,
                show_trainable=False, layer_range=None):
        """Print Keras's summary table.

        Each layer's name (type), output shape and parameter count, then the totals.

        Parameters
        ----------
        line_length : int, optional
            The table's width (default 80 when positions is given, else fitted).
        positions : list of float, optional
            The columns' right edges as fractions of line_length.
        print_fn : callable, optional
            Called with each line; default print to stdout.
        expand_nested : bool, default False
            Accepted for Keras compatibility; ignored.
        show_trainable : bool, default False
            Accepted for Keras compatibility; ignored.
        layer_range : default None
            Accepted for Keras compatibility; ignored.
        """
        print_fn = print_fn or (lambda line: print(line, file=sys.stdout))
        rows = []
        shape = self._build_input_shape
        trainable_count = non_trainable = 0
        for layer in self.layers:
            if self.built:
                shape = (shape[0],) + tuple(layer.compute_output_shape(shape[1:]))
                out, params = _shape_str(shape), layer.count_params()
                if layer.trainable:
                    trainable_count += params
                else:
                    non_trainable += params
                params = f"{params:,}"
            else:
                out, params = "?", "0 (unbuilt)"
            rows.append((f"{layer.name} ({type(layer).__name__})", out, params))
        if positions is not None or line_length is not None:
            width = line_length or 80
            cols = [int(width * p) if p <= 1 else int(p)
                    for p in (positions or [0.42, 0.75, 1.0])]
        else:  # Keras 3's widths (33, 24, 15), widened to fit the longest entries
            widths = [max(33, 3 + max((len(r[0]) for r in rows), default=0)),
                      max(24, 2 + max((len(r[1]) for r in rows), default=0)), 15]
            cols = [widths[0], widths[0] + widths[1], sum(widths)]

        def line(fields):
            text, start = "", 0
            for field, end, right in zip(fields, cols, (False, False, True)):
                span = end - start
                field = str(field)
                text += (field.rjust(span - 1) + " ") if right else (" " + field).ljust(span)
                start = end
            return text.rstrip()
        print_fn(f'Model: "{self.name}"')
        print_fn("_" * cols[-1])
        print_fn(line(("Layer (type)", "Output Shape", "Param #")))
        print_fn("=" * cols[-1])
        for k, row in enumerate(rows):
            print_fn(line(row))
            if k < len(rows) - 1:
                print_fn("-" * cols[-1])
        print_fn("=" * cols[-1])
        total = trainable_count + non_trainable
        item = 8 if any(getattr(layer, "dtype", None) == np.float64
                        for layer in self.layers) else 4
        print_fn(f" Total params: {total:,} ({_bytes_str(total * item)})")
        print_fn(f" Trainable params: {trainable_count:,} ({_bytes_str(trainable_count * item)})")
        print_fn(f" Non-trainable params: {non_trainable:,} "
                 f"({_bytes_str(non_trainable * item)})")
        print_fn("_" * cols[-1])

    # --- configs and files ----------------------------------------------------------

    def get_config(self):
        """Keras's Sequential config: {"name", "trainable", "layers": [{"module",
        "class_name", "config", "registered_name"}, ...], "build_input_shape"}."""
        entries = [{"module": "keras.layers", "class_name": type(layer).__name__,
                    "config": layer.get_config(), "registered_name": None}
                   for layer in self._layers]
        config = {"name": self.name, "trainable": self.trainable, "layers": entries}
        if self.built:
            config["build_input_shape"] = list(self._build_input_shape)
        return config

    @classmethod
    def from_config(cls, config, custom_objects=None):
        """A Sequential from get_config()'s dict (or Keras's, layers from
        layers.deserialize; an unsupported layer class is a ValueError naming it)."""
        if isinstance(config, list):  # Keras 2's oldest form: the layer list alone
            config = {"layers": config}
        if not isinstance(config, Mapping):
            raise TypeError(f"Sequential.from_config takes a dict, got "
                            f"{type(config).__name__}")
        entries = config.get("layers")
        if not isinstance(entries, list):
            raise ValueError("Sequential.from_config: config['layers'] must be a list of "
                             "{'class_name', 'config'} entries")
        built = []
        for k, entry in enumerate(entries):
            if not isinstance(entry, Mapping) or "class_name" not in entry \
                    or not isinstance(entry.get("config"), Mapping):
                raise ValueError(f"Sequential.from_config: config['layers'][{k}] must be a "
                                 "dict with 'class_name' and 'config'")
            built.append(klayers.deserialize(entry["class_name"], dict(entry["config"])))
        model = cls(built, name=config.get("name"))
        shape = config.get("build_input_shape")
        if shape is None and isinstance(config.get("build_config"), Mapping):
            shape = config["build_config"].get("input_shape")
        if shape is not None and not model.built:
            model.build(tuple(shape))
        if config.get("trainable") is False:
            model.trainable = False
        return model

    def save(self, filepath, overwrite=True):
        """Write a Keras 3 `.keras` file (fastlstm.keras.saving.save_model).

        Parameters
        ----------
        filepath : str or path-like
            The file to write.
        overwrite : bool, default True
            False refuses to replace an existing file.

        Raises
        ------
        FileExistsError
            If filepath exists and overwrite is False.
        """
        import os

        from . import saving
        if not overwrite and os.path.exists(os.fspath(filepath)):
            raise FileExistsError(f"save: {os.fspath(filepath)!r} exists and overwrite=False")
        saving.save_model(self, filepath)

    def save_weights(self, filepath, overwrite=True):
        """Write the weights as a Keras 3 `.weights.h5` file."""
        import os

        from . import saving
        if not overwrite and os.path.exists(os.fspath(filepath)):
            raise FileExistsError(f"save_weights: {os.fspath(filepath)!r} exists and "
                                  "overwrite=False")
        saving.save_weights(self, filepath)

    def load_weights(self, filepath):
        """Read weights saved by Keras or save_weights (fastlstm.keras.saving)."""
        from . import saving
        saving.load_weights(self, filepath)
