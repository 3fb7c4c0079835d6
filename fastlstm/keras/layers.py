"""Keras 3 layers on NumPy and the fastlstm engine: LSTM, Bidirectional, Dense, Dropout,
Embedding, InputLayer (Keras's names, arguments, weights, configs and semantics).

Arrays are batch-first NumPy arrays, float32 unless a layer is built with dtype="float64".
A Sequential drives each layer through one small protocol::

    layer.build(input_shape)                    # the shape without the batch dim
    y, mask = layer.call(x, mask, training)     # training keeps what backward needs
    dx = layer.backward(dy)                     # dL/dx; fills the layer's gradients
    with layer.update_variables() as v:         # [(key, param, grad), ...]
        optimizer.apply(v)                      # params updated in place

`layer(x)` works as in Keras: it builds the layer on its first input and returns y.
Each LSTM runs on one `fastlstm.LSTM`; a Bidirectional runs on one bidirectional engine.
Masked steps are never computed: each row's kept steps are gathered to the front and the
engine runs them with per-row lengths (see `_Compaction`).
"""
import contextlib
import inspect
import re
import threading
from collections.abc import Mapping

import numpy as np

import fastlstm

from . import random as krandom
from .cudnn import from_cudnn_weights

__all__ = ["Layer", "LSTM", "Bidirectional", "Dense", "Dropout", "Embedding", "InputLayer",
           "Input", "LAYER_CLASSES", "deserialize", "reset_names"]


# --------------------------------------------------------------------------- names

_name_lock = threading.Lock()
_name_counts = {}


def _snake(name):
    """Keras's to_snake_case: "InputLayer" -> "input_layer", "LSTM" -> "lstm"."""
    name = re.sub(r"\W+", "", name)
    name = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub("([a-z])([A-Z])", r"\1_\2", name).lower()


def _unique_name(base):
    """Keras's default names: "lstm", then "lstm_1", "lstm_2", ... per base name."""
    with _name_lock:
        n = _name_counts.get(base, 0)
        _name_counts[base] = n + 1
    return base if n == 0 else f"{base}_{n}"


def reset_names():
    """Restart the default layer names ("lstm", "dense", ...), as keras's clear_session."""
    with _name_lock:
        _name_counts.clear()


# --------------------------------------------------------------------------- checks

def _where(layer):
    return f"layer {layer.name!r} ({type(layer).__name__})"


def _positive_int(value, key, where):
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) \
            or value < 1:
        raise ValueError(f"{where}: {key} must be a positive int, got {value!r}")
    return int(value)


def _boolean(value, key, where):
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{where}: {key} must be True or False, got {value!r}")
    return bool(value)


def _rate(value, key, where, allow_one=False):
    ok = isinstance(value, (int, float, np.integer, np.floating)) \
        and not isinstance(value, (bool, np.bool_))
    if ok:
        value = float(value)
        ok = 0.0 <= value < 1.0 or (allow_one and value == 1.0)
    if not ok:
        upper = "1]" if allow_one else "1)"
        raise ValueError(f"{where}: {key} must be a float in [0, {upper}, got {value!r}")
    return value


def _seed(value, key, where):
    if value is None:
        return None
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) \
            or value < 0:
        raise ValueError(f"{where}: {key} must be a non-negative int or None, got {value!r}")
    return int(value)


def _only_none(where, **settings):
    """ValueError for the Keras settings fastlstm.keras does not implement (regularizers,
    constraints, quantization, ...) unless they are left at None."""
    for key, value in settings.items():
        if value is not None:
            raise ValueError(f"{where}: {key}={value!r} is not supported by fastlstm.keras "
                             "(only None)")


def _shape(value, key, where, allow_none=True):
    """A shape as a tuple of positive ints (or None where allowed)."""
    if isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_)):
        value = (value,)
    if not isinstance(value, (tuple, list)):
        raise ValueError(f"{where}: {key} must be a tuple of ints, got {value!r}")
    out = []
    for d in value:
        if d is None and allow_none:
            out.append(None)
        elif isinstance(d, (int, np.integer)) and not isinstance(d, (bool, np.bool_)) \
                and d > 0:
            out.append(int(d))
        else:
            raise ValueError(f"{where}: {key} must hold positive ints"
                             f"{' or None' if allow_none else ''}, got {tuple(value)!r}")
    return tuple(out)


_COMPUTE_DTYPES = {"float64": np.float64, "float32": np.float32,
                   # lower-precision Keras policies compute in float32 here
                   "float16": np.float32, "bfloat16": np.float32,
                   "mixed_float16": np.float32, "mixed_bfloat16": np.float32}


def _compute_dtype(dtype, where):
    """The float dtype of a Keras `dtype=` argument (a name, a NumPy dtype, or a
    serialized DTypePolicy); None is float32."""
    if dtype is None:
        return np.dtype(np.float32)
    name = dtype
    if isinstance(dtype, Mapping):
        name = (dtype.get("config") or {}).get("name") if isinstance(
            dtype.get("config"), Mapping) else dtype.get("name")
    elif not isinstance(dtype, str):
        try:
            name = np.dtype(dtype).name
        except TypeError:
            name = None
    if name not in _COMPUTE_DTYPES:
        raise ValueError(f"{where}: dtype must be 'float32' or 'float64' (or a Keras float "
                         f"dtype policy), got {dtype!r}")
    return np.dtype(_COMPUTE_DTYPES[name])


def _policy(dtype):
    return {"module": "keras", "class_name": "DTypePolicy", "config": {"name": dtype.name},
            "registered_name": None}


def _as_array(value, what, where):
    """ndarray from an array, a list or a torch tensor (duck-typed), holding numbers."""
    if hasattr(value, "detach") and hasattr(value, "cpu"):
        value = value.detach().cpu().numpy()
    try:
        arr = np.asarray(value)
    except Exception as exc:
        raise TypeError(f"{where}: {what} must be array-like, got {type(value).__name__}: "
                        f"{exc}") from None
    if arr.dtype.kind not in "fiub":
        raise TypeError(f"{where}: {what} must hold numbers, got dtype {arr.dtype}")
    return arr


# --------------------------------------------------------------------------- initializers

_INIT_ALIASES = {
    "glorot_uniform": "GlorotUniform", "glorot_normal": "GlorotNormal",
    "he_uniform": "HeUniform", "he_normal": "HeNormal",
    "lecun_uniform": "LecunUniform", "lecun_normal": "LecunNormal",
    "orthogonal": "Orthogonal", "zeros": "Zeros", "zero": "Zeros", "ones": "Ones",
    "one": "Ones", "constant": "Constant", "random_uniform": "RandomUniform",
    "uniform": "RandomUniform", "random_normal": "RandomNormal", "normal": "RandomNormal",
    "truncated_normal": "TruncatedNormal",
}
_AXES = {"seed": None, "input_axes": None, "output_axes": None}
_INIT_DEFAULTS = {
    "GlorotUniform": _AXES, "GlorotNormal": _AXES, "HeUniform": _AXES, "HeNormal": _AXES,
    "LecunUniform": _AXES, "LecunNormal": _AXES,
    "Orthogonal": {"seed": None, "gain": 1.0}, "Zeros": {}, "Ones": {},
    "Constant": {"value": 0.0},
    "RandomUniform": {"seed": None, "minval": -0.05, "maxval": 0.05},
    "RandomNormal": {"seed": None, "mean": 0.0, "stddev": 0.05},
    "TruncatedNormal": {"seed": None, "mean": 0.0, "stddev": 0.05},
}
# VarianceScaling's (scale, mode, distribution) of Keras's named initializers
_VARIANCE = {"GlorotUniform": (1.0, "fan_avg", "uniform"),
             "GlorotNormal": (1.0, "fan_avg", "normal"),
             "HeUniform": (2.0, "fan_in", "uniform"), "HeNormal": (2.0, "fan_in", "normal"),
             "LecunUniform": (1.0, "fan_in", "uniform"),
             "LecunNormal": (1.0, "fan_in", "normal")}


def _truncated_normal(rng, shape):
    """Standard normal draws, redrawn until all lie within two standard deviations."""
    out = rng.standard_normal(shape)
    bad = np.abs(out) > 2.0
    while bad.any():
        out[bad] = rng.standard_normal(int(bad.sum()))
        bad = np.abs(out) > 2.0
    return out


class _Initializer:
    """One of Keras's weight initializers, from its name or serialized config. Draws come
    from fastlstm.keras.random's generator (an initializer's own `seed` is kept in the
    config but not used)."""

    def __init__(self, class_name, config):
        self.class_name, self.config = class_name, config

    @classmethod
    def get(cls, identifier, key, where):
        if isinstance(identifier, cls):
            return identifier
        class_name, config = identifier, {}
        if isinstance(identifier, Mapping):
            class_name = identifier.get("class_name")
            config = identifier.get("config") or {}
        if isinstance(class_name, str):
            class_name = _INIT_ALIASES.get(class_name, class_name)
        if class_name not in _INIT_DEFAULTS or not isinstance(config, Mapping):
            raise ValueError(f"{where}: {key}={identifier!r} is not supported (supported: "
                             f"{', '.join(sorted(_INIT_ALIASES))})")
        unknown = sorted(set(config) - set(_INIT_DEFAULTS[class_name]))
        if unknown:
            raise ValueError(f"{where}: {key} {class_name} has settings fastlstm.keras does "
                             f"not know: {unknown}")
        return cls(class_name, {**_INIT_DEFAULTS[class_name], **config})

    def serialize(self):
        return {"module": "keras.initializers", "class_name": self.class_name,
                "config": dict(self.config), "registered_name": None}

    def __call__(self, shape, dtype):
        rng, c, name = krandom.generator(), self.config, self.class_name
        if name == "Zeros":
            out = np.zeros(shape)
        elif name == "Ones":
            out = np.ones(shape)
        elif name == "Constant":
            out = np.full(shape, float(c["value"]))
        elif name == "RandomUniform":
            out = rng.uniform(c["minval"], c["maxval"], shape)
        elif name == "RandomNormal":
            out = c["mean"] + c["stddev"] * rng.standard_normal(shape)
        elif name == "TruncatedNormal":
            out = c["mean"] + c["stddev"] * _truncated_normal(rng, shape)
        elif name == "Orthogonal":
            out = self._orthogonal(rng, shape, c["gain"])
        else:
            scale, mode, dist = _VARIANCE[name]
            fan_in, fan_out = (shape[0], shape[0]) if len(shape) == 1 else shape[-2:]
            n = {"fan_in": fan_in, "fan_avg": (fan_in + fan_out) / 2.0}[mode]
            scale /= max(1.0, n)
            if dist == "uniform":
                limit = np.sqrt(3.0 * scale)
                out = rng.uniform(-limit, limit, shape)
            else:  # Keras's truncated normal, its stddev corrected for the truncation
                out = np.sqrt(scale) / 0.87962566103423978 * _truncated_normal(rng, shape)
        return np.asarray(out, dtype)

    @staticmethod
    def _orthogonal(rng, shape, gain):
        """Keras's Orthogonal: QR of a normal matrix, signs fixed by diag(R); for a wide
        shape (rows < cols, e.g. the recurrent kernel (H, 4H)) the rows are orthonormal."""
        rows, cols = int(np.prod(shape[:-1])), shape[-1]
        a = rng.standard_normal((max(rows, cols), min(rows, cols)))
        q, r = np.linalg.qr(a)
        q *= np.sign(np.diag(r))
        if rows < cols:
            q = q.T
        return gain * q.reshape(shape)


# --------------------------------------------------------------------------- base layer

class Layer:
    """The base of every layer: name, dtype, build, the call/backward protocol, weights
    in Keras's order, configs and the optimizer's view of the variables.

    Parameters (Keras's base-layer keywords)
    ----------------------------------------
    name : str, optional
        Default: the class name in snake case, made unique ("lstm", "lstm_1", ...).
    input_shape : tuple, optional
        The input shape without the batch dim, for a model's first layer.
    batch_size : int, optional
        With input_shape: a fixed batch size (a stateful model's).
    trainable : bool, default True
        False: update_variables() yields nothing, so optimizers leave the weights alone.
    dtype : "float32" (default) or "float64", or a Keras dtype policy

    Attributes
    ----------
    batch_input_shape : tuple or None
        (batch_size or None, *input_shape) when input_shape was given, else None.
    built : bool
    """

    def __init__(self, name=None, input_shape=None, batch_size=None, batch_input_shape=None,
                 trainable=True, dtype=None, **kwargs):
        cls = type(self).__name__
        if kwargs:
            raise TypeError(f"{cls}: unrecognized keyword arguments {sorted(kwargs)}")
        if name is not None and (not isinstance(name, str) or not name):
            raise ValueError(f"{cls}: name must be a non-empty str, got {name!r}")
        self.name = name if name is not None else _unique_name(_snake(cls))
        where = _where(self)
        self.trainable = _boolean(trainable, "trainable", where)
        self.dtype = _compute_dtype(dtype, where)
        if batch_input_shape is None and input_shape is not None:
            if batch_size is not None:
                batch_size = _positive_int(batch_size, "batch_size", where)
            batch_input_shape = (batch_size,) + _shape(input_shape, "input_shape", where)
        elif batch_input_shape is not None:
            batch_input_shape = _shape(batch_input_shape, "batch_input_shape", where)
        self.batch_input_shape = batch_input_shape
        self.built = False
        self.input_shape_built = None  # the shape (without batch) the layer was built for
        self._tape = None  # what backward needs from the last training-mode call

    def __repr__(self):
        return f"<{type(self).__name__} name={self.name!r}, built={self.built}>"

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_tape"] = None  # activations of the last call: not part of the layer
        return state

    # --- building ---------------------------------------------------------------------

    def build(self, input_shape):
        """Create the weights for inputs of `input_shape` (without the batch dim). A built
        layer only checks that the shape fits what it was built for."""
        shape = _shape(input_shape, "input_shape", _where(self))
        if self.built:
            self._check_built_shape(shape)
            return
        self.input_shape_built = shape  # before _build: initial weights are checked on it
        try:
            self._build(shape)
        except BaseException:
            self.input_shape_built = None
            raise
        self.built = True

    def _build(self, shape):
        pass

    def _check_built_shape(self, shape):
        built = self.input_shape_built
        if built is not None and (len(shape) != len(built) or shape[-1:] != built[-1:]):
            raise ValueError(f"{_where(self)} was built for inputs of shape (batch, "
                             f"{', '.join(map(str, built))}) ({built[-1]} features), got "
                             f"input_shape (batch, {', '.join(map(str, shape))})")

    def compute_output_shape(self, input_shape):
        """The output shape (without batch) for inputs of `input_shape` (without batch)."""
        return tuple(input_shape)

    # --- running ------------------------------------------------------------------------

    def __call__(self, x, mask=None, training=False):
        """Run the layer as Keras's layer(x): builds it on the first input, returns y."""
        if not self.built:
            self.build(np.shape(x)[1:])
        return self.call(x, mask=mask, training=training)[0]

    def call(self, x, mask=None, training=False):
        """(y, mask_out) for x; in training mode keeps what backward needs."""
        raise NotImplementedError

    def backward(self, dy):
        """dL/dx of the last training-mode call from dL/dy; sets the weights' gradients."""
        raise NotImplementedError

    def reset_states(self):
        """Forget the state a stateful layer carries between calls (no-op here)."""

    def _taped(self):
        if self._tape is None:
            raise RuntimeError(f"{_where(self)}: backward() needs a call(..., training=True) "
                               "first (the last call ran in inference mode, or none ran)")
        return self._tape

    def _float_input(self, x, rank=None):
        """x as an array of the layer's dtype, its rank and last dim checked."""
        if not (type(x) is np.ndarray and x.dtype == self.dtype):
            x = _as_array(x, "x", _where(self)).astype(self.dtype)
        if rank is not None and x.ndim != rank:
            want = {2: "(batch, features)", 3: "(batch, steps, features)"}[rank]
            raise ValueError(f"{_where(self)} expects x of shape {want} ({rank}-D), got shape "
                             f"{x.shape}")
        if x.ndim < 2:
            raise ValueError(f"{_where(self)} expects x with a batch dim and a feature dim, "
                             f"got shape {x.shape}")
        built = self.input_shape_built
        if built and built[-1] is not None and x.shape[-1] != built[-1]:
            raise ValueError(f"{_where(self)} was built for {built[-1]} features in x's last "
                             f"dim, got x of shape {x.shape}")
        return x

    def _grad_input(self, dy, shape):
        if not (type(dy) is np.ndarray and dy.dtype == self.dtype):
            dy = _as_array(dy, "dy", _where(self)).astype(self.dtype)
        if dy.shape != shape:
            raise ValueError(f"{_where(self)}: dy must have the shape of the last call's y, "
                             f"{shape}, got {dy.shape}")
        return dy

    def _checked_mask(self, mask, x):
        """mask as a bool (batch, steps) array matching x, or None."""
        if mask is None:
            return None
        if not (type(mask) is np.ndarray and mask.dtype == bool):
            mask = _as_array(mask, "mask", _where(self)) != 0
        if mask.shape != x.shape[:2]:
            raise ValueError(f"{_where(self)}: mask must have shape (batch, steps) = "
                             f"{x.shape[:2]} to match x {x.shape}, got {mask.shape}")
        return mask

    # --- weights ----------------------------------------------------------------------

    def _weight_specs(self):
        """[(Keras variable path, shape)] in Keras's order (empty before build)."""
        return []

    def get_weights(self):
        """Copies of the weights, in Keras's order and shapes."""
        return []

    def _assign(self, arrays):
        pass

    def set_weights(self, weights):
        """Replace the weights (Keras's order and shapes). Every array is checked (count,
        shape, finite numbers) before any weight changes."""
        self._assign(self._checked_weights(weights))

    def _adapt_weights(self, weights):
        return weights

    def _checked_weights(self, weights):
        where = _where(self)
        if not isinstance(weights, (list, tuple)):
            raise TypeError(f"{where}: set_weights takes a list of arrays, got "
                            f"{type(weights).__name__}")
        specs = self._weight_specs()
        if not specs and not self.built and weights:
            raise ValueError(f"{where} is not built yet: build it (or call it on data) "
                             "before set_weights")
        weights = self._adapt_weights(list(weights))
        if len(weights) != len(specs):
            raise ValueError(f"{where} expects {len(specs)} weights "
                             f"({', '.join(p for p, _ in specs) or 'none'}), got "
                             f"{len(weights)}")
        out = []
        for (path, shape), w in zip(specs, weights):
            arr = _as_array(w, f"weight {path!r}", where)
            if arr.shape != shape:
                raise ValueError(f"{where}: weight {path!r} must have shape {shape}, got "
                                 f"{arr.shape}")
            if not np.all(np.isfinite(arr)):
                raise ValueError(f"{where}: weight {path!r} holds NaN or inf")
            out.append(np.array(arr, dtype=self.dtype))
        return out

    @property
    def weights(self):
        """The weights (copies), in Keras's order and shapes."""
        return self.get_weights()

    @property
    def trainable_weights(self):
        return self.get_weights() if self.trainable else []

    @property
    def non_trainable_weights(self):
        return [] if self.trainable else self.get_weights()

    @property
    def grads(self):
        """The gradients of the last backward, aligned with get_weights()."""
        return []

    def count_params(self):
        """The number of weights (the layer must be built)."""
        if not self.built:
            raise ValueError(f"{_where(self)} is not built yet: count_params needs its "
                             "weights")
        return int(sum(int(np.prod(shape)) for _, shape in self._weight_specs()))

    def _variables(self):
        """[(key, param, grad)]: writable views of the weights and their gradients."""
        return []

    @contextlib.contextmanager
    def update_variables(self):
        """For an optimizer step: yields [(key, param, grad), ...], `param` a writable view
        of a weight (Keras's shape) updated in place, `grad` its gradient from the last
        backward (read it, do not write it), `key` the Keras variable path. Yields [] for
        a layer that is not trainable or has no weights."""
        yield self._variables() if self.trainable and self.built else []

    # --- configs ----------------------------------------------------------------------

    def get_config(self):
        """The layer's Keras config (Keras's keys)."""
        return {"name": self.name, "trainable": self.trainable, "dtype": _policy(self.dtype)}

    @classmethod
    def _config_keys(cls):
        params = inspect.signature(cls.__init__).parameters
        keys = {k for k, p in params.items() if k != "self" and p.kind in (
            p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
        return keys | {"name", "trainable", "dtype", "input_shape", "batch_size",
                       "batch_input_shape"}

    @classmethod
    def from_config(cls, config):
        """A layer from its Keras config. Keys that do not change the math are accepted
        (and kept where Keras keeps them); an unknown key or a setting fastlstm.keras does
        not implement is a ValueError naming it."""
        if not isinstance(config, Mapping):
            raise TypeError(f"{cls.__name__}.from_config takes a dict, got "
                            f"{type(config).__name__}")
        unknown = sorted(set(config) - cls._config_keys())
        if unknown:
            raise ValueError(f"{cls.__name__} config has keys fastlstm.keras does not "
                             f"support: {unknown}")
        return cls(**config)


# --------------------------------------------------------------------------- masks

class _Compaction:
    """A masked batch laid out for the engine, so that masked steps cost nothing: each
    row's kept steps (in processing order) are gathered to the front and run with
    lengths = their count. Keras's semantics follow: a masked step leaves the state
    alone; its output is 0 ("zero" mode, Keras's zero_output_for_mask=True) or the
    previous step's output ("carry" mode, Keras's default for a plain RNN layer), 0
    before the first kept step. A row with no kept step runs one zeroed dummy step whose
    results are thrown away (the engine needs lengths >= 1).

    Index maps (B rows, T steps): order[b, j] = position of row b's j-th kept step (then
    its masked positions); inv = its inverse. None when every row's kept steps are
    already a prefix (post-padding): no gather at all.
    """

    def __init__(self, mask, carry):
        B, T = mask.shape
        counts = mask.sum(axis=1)
        self.B, self.T, self.carry = B, T, carry
        empty = counts == 0
        self.empty = np.flatnonzero(empty) if empty.any() else None
        self.nonempty = ~empty
        self.lengths = np.maximum(counts, 1)
        if np.array_equal(mask, np.arange(T) < counts[:, None]):
            self.order = self.inv = None
        else:
            self.order = np.argsort(~mask, axis=1, kind="stable")
            self.inv = np.empty_like(self.order)
            np.put_along_axis(self.inv, self.order, np.broadcast_to(np.arange(T), (B, T)),
                              axis=1)
        if carry:
            kept = np.cumsum(mask, axis=1)  # kept steps up to and including t
            # position t reads the slot of the last kept step; before any, slot T-1, which
            # is past the row's length (the row has a masked step), so the engine wrote 0
            self.out_index = np.where(kept > 0, kept - 1, T - 1)
            # backward: each position's gradient summed into the slot it read
            src = np.flatnonzero(kept.ravel() > 0)
            tgt = (np.arange(B)[:, None] * T + kept - 1).ravel()[src]
            starts = np.flatnonzero(np.r_[True, tgt[1:] != tgt[:-1]]) if src.size else src
            self._src, self._starts, self._dst = src, starts, tgt[starts]
        else:
            self.out_index = self.inv

    def inputs(self, x):
        """x (B, T, F) in processing order -> the engine's input."""
        xc = x if self.order is None else np.take_along_axis(x, self.order[:, :, None], 1)
        if self.empty is not None:
            xc = xc.copy() if xc is x else xc
            xc[self.empty, 0] = 0
        return xc

    def outputs(self, yc):
        """The engine's y (B, T, K) -> the layer's y at every position."""
        y = yc if self.out_index is None else np.take_along_axis(
            yc, self.out_index[:, :, None], 1)
        if self.empty is not None:
            y[self.empty] = 0
        return y

    def output_grad(self, dy):
        """dL/dy at every position -> dL/d(the engine's y)."""
        if self.carry:
            K = dy.shape[2]
            dyc = np.zeros((self.B * self.T, K), dy.dtype)
            if self._src.size:
                dyc[self._dst] = np.add.reduceat(dy.reshape(-1, K)[self._src], self._starts,
                                                 axis=0)
            return dyc.reshape(self.B, self.T, K)
        # zero mode: masked positions land past each length, where the engine ignores dy
        dyc = dy if self.order is None else np.take_along_axis(dy, self.order[:, :, None], 1)
        if self.empty is not None:
            dyc = dyc.copy() if dyc is dy else dyc
            dyc[self.empty] = 0
        return dyc

    def input_grad(self, dxc):
        """The engine's dx -> dL/dx at every position (0 at masked steps)."""
        dx = dxc if self.inv is None else np.take_along_axis(dxc, self.inv[:, :, None], 1)
        if self.empty is not None:
            dx[self.empty] = 0
        return dx


# --------------------------------------------------------------------------- recurrent

class _Recurrent(Layer):
    """What LSTM and Bidirectional share: one fastlstm.LSTM engine, its Keras weights,
    input dropout, masks and a reusable zero dy."""

    _DIRECTIONS = 1

    def _new_engine(self, features):
        self._engine = fastlstm.LSTM(features, self.units, bias=self.use_bias,
                                     batch_first=True, bidirectional=self._DIRECTIONS == 2,
                                     dtype=self.dtype.name, seed=krandom.child_seed())
        self._zeros = None
        H, F = self.units, features
        for d in range(self._DIRECTIONS):
            kernel = self.kernel_initializer((F, 4 * H), self.dtype)
            recurrent = self.recurrent_initializer((H, 4 * H), self.dtype)
            weights = [kernel, recurrent]
            if self.use_bias:
                if self.unit_forget_bias:
                    bias = np.concatenate([self.bias_initializer((H,), self.dtype),
                                           np.ones(H, self.dtype),
                                           self.bias_initializer((2 * H,), self.dtype)])
                else:
                    bias = self.bias_initializer((4 * H,), self.dtype)
                weights.append(bias)
            self._load(d, weights)

    def _names(self, d):
        s = "_reverse" if d else ""
        names = [f"weight_ih_l0{s}", f"weight_hh_l0{s}"]
        return names + ([f"bias_ih_l0{s}", f"bias_hh_l0{s}"] if self.use_bias else [])

    def _load(self, d, weights, state=None):
        """Direction d's Keras weights into the engine (bias_hh held at 0)."""
        state = self._engine.state_dict() if state is None else state
        names = self._names(d)
        state[names[0]] = weights[0].T
        state[names[1]] = weights[1].T
        if self.use_bias:
            state[names[2]] = weights[2]
            state[names[3]] = np.zeros_like(weights[2])
        self._engine.load_state_dict(state)

    def _direction_specs(self, prefix):
        F, H = self.input_shape_built[-1], self.units
        specs = [(f"{prefix}/lstm_cell/kernel", (F, 4 * H)),
                 (f"{prefix}/lstm_cell/recurrent_kernel", (H, 4 * H))]
        if self.use_bias:
            specs.append((f"{prefix}/lstm_cell/bias", (4 * H,)))
        return specs

    def _direction_weights(self, d):
        return fastlstm.to_keras(self._engine, reverse=bool(d))

    def _adapt_weights(self, weights):
        # a Keras 2 CuDNNLSTM's weights (told apart by their 8H bias: input and recurrent
        # biases) are converted whole: its kernels are in cuDNN's layout too
        per = 3 if self.use_bias else 2
        if self.use_bias and len(weights) == per * self._DIRECTIONS:
            for d in range(self._DIRECTIONS):
                k, rk, b = weights[per * d:per * d + 3]
                if np.shape(b) == (8 * self.units,) and np.ndim(k) == 2 and np.ndim(rk) == 2 \
                        and np.shape(k)[1:] == np.shape(rk)[1:] == (4 * self.units,):
                    where = _where(self)
                    weights[per * d:per * d + 3] = from_cudnn_weights(
                        _as_array(k, "kernel", where), _as_array(rk, "recurrent_kernel", where),
                        _as_array(b, "bias", where))
        return weights

    def _assign(self, arrays):
        per = len(arrays) // self._DIRECTIONS
        state = self._engine.state_dict()
        for d in range(self._DIRECTIONS):
            names = self._names(d)
            state[names[0]] = arrays[per * d].T
            state[names[1]] = arrays[per * d + 1].T
            if self.use_bias:
                state[names[2]] = arrays[per * d + 2]
                state[names[3]] = np.zeros_like(arrays[per * d + 2])
        self._engine.load_state_dict(state)

    def _direction_grads(self, d):
        g = self._engine.grads
        names = self._names(d)
        out = [g[names[0]].T, g[names[1]].T]
        return out + [g[names[2]]] if self.use_bias else out

    def _direction_variables(self, w, d, prefix):
        g = self._engine.grads
        names = self._names(d)
        keys = ("kernel", "recurrent_kernel", "bias")
        # Keras's variables are these up to a transpose: the transposed views are
        # Keras-shaped and write straight into the engine's storage
        return [(f"{prefix}/lstm_cell/{key}", w[n] if key == "bias" else w[n].T,
                 g[n] if key == "bias" else g[n].T)
                for key, n in zip(keys, names)]

    @contextlib.contextmanager
    def update_variables(self):
        if not (self.trainable and self.built):
            yield []
            return
        with self._engine.update_weights() as w:
            yield [v for d, prefix in enumerate(self._prefixes())
                   for v in self._direction_variables(w, d, prefix)]

    def _zero_dy(self, shape):
        """A read-only zero dy for the engine's backward (when only h_n has a gradient)."""
        if self._zeros is None or self._zeros.shape != shape:
            self._zeros = np.zeros(shape, self.dtype)
            self._zeros.flags.writeable = False
        return self._zeros

    def _generator(self):
        return self._rng if self._rng is not None else krandom.generator()

    def _dropout_scale(self, x, training):
        """Keras 3's LSTM input dropout: one (B, 1, F) mask per call, kept units scaled by
        1/(1-rate); None when inactive."""
        if not training or self.dropout == 0:
            return None
        B, _, F = x.shape
        keep = self._generator().random((B, 1, F)) >= self.dropout
        return keep.astype(self.dtype) * self.dtype.type(1.0 / (1.0 - self.dropout))

    def __getstate__(self):
        state = super().__getstate__()
        state["_zeros"] = None
        return state


_LSTM_INITS = (("kernel_initializer", "glorot_uniform"),
               ("recurrent_initializer", "orthogonal"), ("bias_initializer", "zeros"))


class LSTM(_Recurrent):
    """Keras 3's LSTM layer, on one fastlstm.LSTM engine.

    x (batch, steps, features) -> (batch, steps, units) with return_sequences, else
    (batch, units). Weights: kernel (features, 4*units), recurrent_kernel (units,
    4*units), bias (4*units,), gates i, f, c, o (the engine holds kernel^T, recurrent^T,
    bias_ih = bias and bias_hh = 0). Masks as Keras: a masked step leaves the state
    unchanged and outputs the previous output (0 with zero_output_for_mask=True); the
    mask is passed on with return_sequences. With go_backwards the steps run last to
    first and outputs come in that (processing) order, as in Keras.

    Supported: activation "tanh", recurrent_activation "sigmoid", recurrent_dropout 0,
    no regularizers or constraints; the others are ValueErrors naming the setting.
    `unroll`, `use_cudnn`, `implementation` change nothing here and are accepted.

    Parameters
    ----------
    units : int
        The size of the state and output (positive).
    activation : "tanh"
        Only "tanh" is supported (anything else is a ValueError).
    recurrent_activation : "sigmoid"
        Only "sigmoid" is supported (anything else is a ValueError).
    use_bias : bool, default True
    kernel_initializer : str or dict, default "glorot_uniform"
    recurrent_initializer : str or dict, default "orthogonal"
    bias_initializer : str or dict, default "zeros"
    unit_forget_bias : bool, default True
        Add 1 to the forget gate's bias at initialisation.
    kernel_regularizer, recurrent_regularizer, bias_regularizer : None
        Not supported: anything but None is a ValueError.
    activity_regularizer : None
        Not supported: anything but None is a ValueError.
    kernel_constraint, recurrent_constraint, bias_constraint : None
        Not supported: anything but None is a ValueError.
    dropout : float in [0, 1), default 0.0
        Input dropout in training.
    recurrent_dropout : 0
        Only 0 is supported (anything else is a ValueError).
    seed : int, optional
        Seed of the dropout masks.
    return_sequences : bool, default False
        Output every step (batch, steps, units) instead of the last (batch, units).
    return_state : bool, default False
        Calling the layer returns [y, h, c].
    go_backwards : bool, default False
        Run the steps last to first.
    stateful : bool, default False
        Carry the final state of a batch into the next (a fixed batch size is needed).
    unroll : bool, default False
        Accepted for Keras compatibility; ignored.
    zero_output_for_mask : bool, default False
        Masked steps output 0 instead of the previous output.
    use_cudnn : "auto", True or False, default "auto"
        Accepted for Keras compatibility; ignored (other values are a ValueError).
    implementation : int, default 2
        Accepted for Keras compatibility; ignored.
    **kwargs
        Keras's base-layer keywords (name, input_shape, batch_size, batch_input_shape,
        trainable, dtype): see Layer. Any other keyword is a TypeError.

    Raises
    ------
    ValueError
        For an unsupported setting (see above) or an invalid value.
    TypeError
        For an unknown keyword argument.
    """

    def __init__(self, units, activation="tanh", recurrent_activation="sigmoid",
                 use_bias=True, kernel_initializer="glorot_uniform",
                 recurrent_initializer="orthogonal", bias_initializer="zeros",
                 unit_forget_bias=True, kernel_regularizer=None, recurrent_regularizer=None,
                 bias_regularizer=None, activity_regularizer=None, kernel_constraint=None,
                 recurrent_constraint=None, bias_constraint=None, dropout=0.0,
                 recurrent_dropout=0.0, seed=None, return_sequences=False,
                 return_state=False, go_backwards=False, stateful=False, unroll=False,
                 zero_output_for_mask=False, use_cudnn="auto", implementation=2, **kwargs):
        """Create the layer; the arguments are documented in the class docstring."""
        super().__init__(**kwargs)
        where = _where(self)
        self.units = _positive_int(units, "units", where)
        if activation not in ("tanh",):
            raise ValueError(f"{where}: activation={activation!r} is not supported "
                             "(fastlstm.keras's LSTM uses 'tanh')")
        if recurrent_activation not in ("sigmoid",):
            raise ValueError(f"{where}: recurrent_activation={recurrent_activation!r} is not "
                             "supported (fastlstm.keras's LSTM uses 'sigmoid')")
        if _rate(recurrent_dropout, "recurrent_dropout", where, allow_one=True) != 0:
            raise ValueError(f"{where}: recurrent_dropout={recurrent_dropout!r} is not "
                             "supported (only 0)")
        _only_none(where, kernel_regularizer=kernel_regularizer,
                   recurrent_regularizer=recurrent_regularizer,
                   bias_regularizer=bias_regularizer,
                   activity_regularizer=activity_regularizer,
                   kernel_constraint=kernel_constraint,
                   recurrent_constraint=recurrent_constraint, bias_constraint=bias_constraint)
        self.use_bias = _boolean(use_bias, "use_bias", where)
        self.kernel_initializer = _Initializer.get(kernel_initializer, "kernel_initializer",
                                                   where)
        self.recurrent_initializer = _Initializer.get(recurrent_initializer,
                                                      "recurrent_initializer", where)
        self.bias_initializer = _Initializer.get(bias_initializer, "bias_initializer", where)
        self.unit_forget_bias = _boolean(unit_forget_bias, "unit_forget_bias", where)
        self.dropout = _rate(dropout, "dropout", where)
        self.seed = _seed(seed, "seed", where)
        self._rng = None if self.seed is None else np.random.default_rng(self.seed)
        self.return_sequences = _boolean(return_sequences, "return_sequences", where)
        self.return_state = _boolean(return_state, "return_state", where)
        self.go_backwards = _boolean(go_backwards, "go_backwards", where)
        self.stateful = _boolean(stateful, "stateful", where)
        self.unroll = _boolean(unroll, "unroll", where)
        self.zero_output_for_mask = _boolean(zero_output_for_mask, "zero_output_for_mask",
                                             where)
        if use_cudnn not in ("auto", True, False):
            raise ValueError(f"{where}: use_cudnn must be 'auto', True or False, got "
                             f"{use_cudnn!r}")
        self.use_cudnn, self.implementation = use_cudnn, implementation
        self._engine = None
        self._zeros = None
        self.states = None  # a stateful layer's (h, c), each (batch, units)
        self._state_batch = None if self.batch_input_shape is None \
            else self.batch_input_shape[0]
        self.last_states = None  # (h, c) after the last call, for return_state

    def _build(self, shape):
        if len(shape) != 2 or shape[-1] is None:
            raise ValueError(f"{_where(self)} expects inputs of shape (batch, steps, "
                             f"features) with a known number of features: input_shape "
                             f"(without batch) must be (steps, features), got {shape}")
        self._new_engine(shape[-1])

    def _check_built_shape(self, shape):
        if len(shape) != 2:
            raise ValueError(f"{_where(self)} expects input_shape (steps, features), got "
                             f"{shape}")
        super()._check_built_shape(shape)

    def compute_output_shape(self, input_shape):
        """(steps, units) with return_sequences, else (units,): the output y's shape
        (return_state's h and c are (units,) each)."""
        input_shape = tuple(input_shape)
        return (input_shape[0], self.units) if self.return_sequences else (self.units,)

    # --- running ----------------------------------------------------------------------

    def __call__(self, x, mask=None, training=False):
        """Keras's layer(x): y, or [y, h, c] with return_state."""
        y = super().__call__(x, mask=mask, training=training)
        return [y, *self.last_states] if self.return_state else y

    def _initial_state(self, B):
        if not self.stateful:
            return None
        if self._state_batch is not None and B != self._state_batch:
            raise ValueError(f"{_where(self)} is stateful with batch size "
                             f"{self._state_batch}: x must have {self._state_batch} rows, "
                             f"got {B} (reset_states() keeps the batch size)")
        if self.states is None:
            return None
        return self.states[0][None], self.states[1][None]

    def call(self, x, mask=None, training=False):
        x = self._float_input(x, rank=3)
        mask = self._checked_mask(mask, x)
        B, T, _ = x.shape
        hx = self._initial_state(B)
        self._tape = None  # a call that fails half way leaves no stale tape for backward
        training = bool(training)
        # Keras passes the input mask on unchanged (even with go_backwards)
        mask_out = mask if self.return_sequences else None
        scale = self._dropout_scale(x, training)
        if scale is not None:
            x = x * scale
        if self.go_backwards:
            x = x[:, ::-1]
            mask = None if mask is None else mask[:, ::-1]
        plan = None
        if mask is not None and not mask.all():
            plan = _Compaction(mask, carry=self.return_sequences
                               and not self.zero_output_for_mask)
        engine = self._engine.train(training)
        if plan is None and T == 1 and not training:
            # one reading per call (a stateful model fed a stream): the engine's one-step
            # path, the same arithmetic without a whole call's setup
            y1, (h_n, c_n) = engine.step(np.ascontiguousarray(x[:, 0]), hx)
            yc = y1[:, None]
        elif plan is None:
            yc, (h_n, c_n) = engine(x, hx)
        else:
            yc, (h_n, c_n) = engine(plan.inputs(x), hx, plan.lengths)
        h, c = h_n[0], c_n[0]
        keep = None  # rows whose last output is h_n (return_sequences=False)
        if plan is not None:
            if plan.empty is not None:  # no step ran: the state stays the initial one
                h[plan.empty] = 0 if hx is None else hx[0][0, plan.empty]
                c[plan.empty] = 0 if hx is None else hx[1][0, plan.empty]
            if not self.return_sequences:
                keep = mask[:, -1] if self.zero_output_for_mask else plan.nonempty
                keep = None if keep.all() else keep.astype(self.dtype)[:, None]
        if self.return_sequences:
            y = yc if plan is None else plan.outputs(yc)
        else:
            y = h.copy() if keep is None else h * keep
        if self.stateful:
            self._state_batch = B
            self.states = (h.copy(), c.copy())
        self.last_states = (h, c)
        self._tape = (plan, scale, keep, y.shape, (B, T, self.units)) if training else None
        return y, mask_out

    def backward(self, dy):
        plan, scale, keep, y_shape, engine_y_shape = self._taped()
        dy = self._grad_input(dy, y_shape)
        if self.return_sequences:
            dyc = dy if plan is None else plan.output_grad(dy)
            dxc, _ = self._engine.backward(dyc)
        else:
            dh = dy if keep is None else dy * keep
            dxc, _ = self._engine.backward(self._zero_dy(engine_y_shape), dh[None])
        dx = dxc if plan is None else plan.input_grad(dxc)
        if self.go_backwards:
            dx = dx[:, ::-1]
        return dx if scale is None else dx * scale

    def reset_states(self):
        """Zero the carried state of a stateful layer (the batch size stays fixed)."""
        self.states = None

    reset_state = reset_states

    # --- weights and config -------------------------------------------------------------

    def _prefixes(self):
        return [self.name]

    def _weight_specs(self):
        return self._direction_specs(self.name) if self._engine is not None else []

    def get_weights(self):
        return self._direction_weights(0) if self.built else []

    @property
    def grads(self):
        return self._direction_grads(0) if self.built else []

    def get_config(self):
        return {**super().get_config(), "return_sequences": self.return_sequences,
                "return_state": self.return_state, "go_backwards": self.go_backwards,
                "stateful": self.stateful, "unroll": self.unroll,
                "zero_output_for_mask": self.zero_output_for_mask, "units": self.units,
                "activation": "tanh", "recurrent_activation": "sigmoid",
                "use_bias": self.use_bias,
                "kernel_initializer": self.kernel_initializer.serialize(),
                "recurrent_initializer": self.recurrent_initializer.serialize(),
                "bias_initializer": self.bias_initializer.serialize(),
                "unit_forget_bias": self.unit_forget_bias, "kernel_regularizer": None,
                "recurrent_regularizer": None, "bias_regularizer": None,
                "activity_regularizer": None, "kernel_constraint": None,
                "recurrent_constraint": None, "bias_constraint": None,
                "dropout": self.dropout, "recurrent_dropout": 0.0, "seed": self.seed}


class _DirectionView(LSTM):
    """A Bidirectional's forward_layer or backward_layer as Keras exposes them: the LSTM
    config of that direction, and its weights, which live in the Bidirectional's one
    engine (get_weights/set_weights work on that half). It does not run on its own."""

    built = property(lambda self: self._parent.built, lambda self, value: None)

    def __init__(self, parent, direction, config):
        self._parent, self._direction = parent, direction
        super().__init__(**config)

    @property
    def input_shape_built(self):
        return self._parent.input_shape_built

    @input_shape_built.setter
    def input_shape_built(self, value):
        pass

    def _refuse(self, *args, **kwargs):
        raise TypeError(f"{_where(self)} is one direction of Bidirectional layer "
                        f"{self._parent.name!r}: run (and build) the Bidirectional instead")

    build = call = backward = __call__ = _refuse

    def _half(self, items):
        n = len(items) // 2
        return items[n * self._direction:n * (self._direction + 1)]

    def _weight_specs(self):
        return self._half(self._parent._weight_specs())

    def get_weights(self):
        return self._half(self._parent.get_weights())

    @property
    def grads(self):
        return self._half(self._parent.grads)

    def _assign(self, arrays):
        both = self._parent.get_weights()
        n = len(both) // 2
        both[n * self._direction:n * (self._direction + 1)] = arrays
        self._parent.set_weights(both)

    @contextlib.contextmanager
    def update_variables(self):
        yield []  # the Bidirectional lends its variables


def _layer_entry(config):
    """A serialized layer ({"class_name", "config", ...}) -> (class_name, config)."""
    if isinstance(config, Mapping) and isinstance(config.get("config"), Mapping):
        return config.get("class_name"), config["config"]
    return None, None


class Bidirectional(_Recurrent):
    """Keras 3's Bidirectional(LSTM) on ONE bidirectional fastlstm.LSTM engine.

    The forward direction reads x first to last; the backward one last to first (Keras's
    backward_layer, go_backwards=True, its outputs flipped back into place); merge_mode
    "concat" (default), "sum", "mul" or "ave" combines them. Weights: the forward
    layer's kernel, recurrent_kernel, bias, then the backward layer's. With masks the
    backward direction starts at each row's last kept step (pre-padding, post-padding
    and holes alike), as Keras's. Input dropout (the wrapped LSTM's `dropout`) draws one
    mask shared by both directions (Keras draws one per direction).
    merge_mode=None (two outputs), a go_backwards or stateful LSTM, and a backward_layer
    that is not the mirror of `layer` are ValueErrors.

    Parameters
    ----------
    layer : LSTM or dict
        The forward LSTM (or its Keras config entry); its settings (units, dropout,
        return_sequences, return_state, seed, initializers, ...) are the wrapper's.
    merge_mode : "concat", "sum", "mul" or "ave", default "concat"
        How the two directions' outputs are combined (None is not supported).
    weights : list of array_like, optional
        Initial weights, set when the layer is built (get_weights()'s order).
    backward_layer : LSTM or dict, optional
        The backward LSTM; it must mirror `layer` with go_backwards=True.
    **kwargs
        Keras's base-layer keywords (name, input_shape, batch_size, batch_input_shape,
        trainable, dtype): see Layer. Any other keyword is a TypeError.

    Raises
    ------
    ValueError
        For merge_mode None or unknown, a go_backwards or stateful `layer`, a wrapped
        config that is not an LSTM, or a backward_layer that is not the mirror of `layer`.
    TypeError
        If layer (or backward_layer) is not an LSTM layer.
    """

    _DIRECTIONS = 2

    def __init__(self, layer, merge_mode="concat", weights=None, backward_layer=None,
                 **kwargs):
        """Create the layer; the arguments are documented in the class docstring."""
        if isinstance(layer, Mapping):
            cls_name, cfg = _layer_entry(layer)
            if cls_name != "LSTM":
                raise ValueError(f"Bidirectional wraps an LSTM layer here, got a "
                                 f"{cls_name or layer!r}")
            layer = LSTM.from_config(cfg)
        if not isinstance(layer, LSTM):
            raise TypeError(f"Bidirectional wraps an LSTM layer here, got "
                            f"{type(layer).__name__}")
        kwargs.setdefault("dtype", layer.dtype.name)
        super().__init__(**kwargs)
        where = _where(self)
        if merge_mode is None:
            raise ValueError(f"{where}: merge_mode=None (two separate outputs) is not "
                             "supported: use 'concat', 'sum', 'mul' or 'ave'")
        if merge_mode not in ("concat", "sum", "mul", "ave"):
            raise ValueError(f"{where}: merge_mode must be 'concat', 'sum', 'mul' or 'ave', "
                             f"got {merge_mode!r}")
        if layer.go_backwards:
            raise ValueError(f"{where}: the wrapped layer must have go_backwards=False "
                             "(the backward direction is made from it)")
        if layer.stateful:
            raise ValueError(f"{where}: stateful=True is not supported in a Bidirectional")
        self.merge_mode = merge_mode
        config = layer.get_config()
        for key in ("units", "use_bias", "unit_forget_bias", "dropout", "return_sequences",
                    "return_state", "seed"):
            setattr(self, key, getattr(layer, key))
        for key, _ in _LSTM_INITS:
            setattr(self, key, getattr(layer, key))
        self._rng = None if self.seed is None else np.random.default_rng(self.seed)
        base = layer.name[len("forward_"):] if layer.name.startswith("forward_") \
            else layer.name
        config.update(name=f"forward_{base}", zero_output_for_mask=self.return_sequences)
        backward_config = dict(config, name=f"backward_{base}", go_backwards=True)
        if backward_layer is not None:
            backward_config = self._mirror(backward_layer, config, where)
        self.forward_layer = _DirectionView(self, 0, config)
        self.backward_layer = _DirectionView(self, 1, backward_config)
        self.stateful = False
        self._engine = None
        self._zeros = None
        self._initial_weights = weights
        self.last_states = None

    @staticmethod
    def _mirror(backward_layer, config, where):
        """backward_layer's config, checked to be `config` run backwards."""
        if isinstance(backward_layer, Mapping):
            cls_name, cfg = _layer_entry(backward_layer)
            if cls_name != "LSTM":
                raise ValueError(f"{where}: backward_layer must be an LSTM, got "
                                 f"{cls_name or backward_layer!r}")
            backward_layer = LSTM.from_config(cfg)
        if not isinstance(backward_layer, LSTM):
            raise TypeError(f"{where}: backward_layer must be an LSTM layer, got "
                            f"{type(backward_layer).__name__}")
        cfg = backward_layer.get_config()
        if not cfg["go_backwards"]:
            raise ValueError(f"{where}: backward_layer must have go_backwards=True")
        for key in ("units", "use_bias", "return_sequences", "return_state", "stateful",
                    "dropout"):
            if cfg[key] != config[key]:
                raise ValueError(f"{where}: backward_layer must have the same {key} as the "
                                 f"forward layer ({config[key]!r}), got {cfg[key]!r}: "
                                 "fastlstm.keras runs both directions on one engine")
        cfg["zero_output_for_mask"] = config["zero_output_for_mask"]
        return cfg

    def _build(self, shape):
        if len(shape) != 2 or shape[-1] is None:
            raise ValueError(f"{_where(self)} expects inputs of shape (batch, steps, "
                             f"features) with a known number of features: input_shape "
                             f"(without batch) must be (steps, features), got {shape}")
        self._new_engine(shape[-1])
        if self._initial_weights is not None:
            self.set_weights(self._initial_weights)
            self._initial_weights = None

    def _check_built_shape(self, shape):
        if len(shape) != 2:
            raise ValueError(f"{_where(self)} expects input_shape (steps, features), got "
                             f"{shape}")
        super()._check_built_shape(shape)

    def compute_output_shape(self, input_shape):
        units = 2 * self.units if self.merge_mode == "concat" else self.units
        input_shape = tuple(input_shape)
        return (input_shape[0], units) if self.return_sequences else (units,)

    def __call__(self, x, mask=None, training=False):
        """Keras's layer(x): y, or [y, h_fwd, c_fwd, h_bwd, c_bwd] with return_state."""
        y = Layer.__call__(self, x, mask=mask, training=training)
        return [y, *self.last_states] if self.return_state else y

    def call(self, x, mask=None, training=False):
        x = self._float_input(x, rank=3)
        mask = self._checked_mask(mask, x)
        B, T, _ = x.shape
        H = self.units
        self._tape = None
        training = bool(training)
        scale = self._dropout_scale(x, training)
        if scale is not None:
            x = x * scale
        plan = None
        if mask is not None and not mask.all():
            plan = _Compaction(mask, carry=False)
        engine = self._engine.train(training)
        if plan is None:
            yc, (h_n, c_n) = engine(x)
        else:
            yc, (h_n, c_n) = engine(plan.inputs(x), None, plan.lengths)
        if plan is not None and plan.empty is not None:
            h_n[:, plan.empty] = 0
            c_n[:, plan.empty] = 0
        if self.return_sequences:
            both = yc if plan is None else plan.outputs(yc)  # (B, T, 2H): forward | backward
        else:
            both = np.concatenate([h_n[0], h_n[1]], axis=1)  # empty rows already 0
        yf, yb = both[..., :H], both[..., H:]
        if self.merge_mode == "concat":
            y = both
        elif self.merge_mode == "sum":
            y = yf + yb
        elif self.merge_mode == "ave":
            y = (yf + yb) * self.dtype.type(0.5)
        else:
            y = yf * yb
        self.last_states = (h_n[0], c_n[0], h_n[1], c_n[1])
        self._tape = (plan, scale, y.shape, (B, T, 2 * H), yf, yb) if training else None
        return y, (mask if self.return_sequences else None)

    def backward(self, dy):
        plan, scale, y_shape, engine_y_shape, yf, yb = self._taped()
        dy = self._grad_input(dy, y_shape)
        if self.merge_mode == "concat":
            d_both = dy
        else:
            if self.merge_mode == "sum":
                dyf = dyb = dy
            elif self.merge_mode == "ave":
                dyf = dyb = dy * self.dtype.type(0.5)
            else:
                dyf, dyb = dy * yb, dy * yf
            d_both = np.concatenate([dyf, dyb], axis=-1)
        if self.return_sequences:
            dyc = d_both if plan is None else plan.output_grad(d_both)
            dxc, _ = self._engine.backward(dyc)
        else:
            H = self.units
            dh = np.stack([d_both[:, :H], d_both[:, H:]])  # (2, B, H)
            if plan is not None and plan.empty is not None:
                dh[:, plan.empty] = 0
            dxc, _ = self._engine.backward(self._zero_dy(engine_y_shape), dh)
        dx = dxc if plan is None else plan.input_grad(dxc)
        return dx if scale is None else dx * scale

    # --- weights and config -------------------------------------------------------------

    def _prefixes(self):
        return [f"{self.name}/{self.forward_layer.name}",
                f"{self.name}/{self.backward_layer.name}"]

    def _weight_specs(self):
        if self._engine is None:
            return []
        p = self._prefixes()
        return self._direction_specs(p[0]) + self._direction_specs(p[1])

    def get_weights(self):
        return self._direction_weights(0) + self._direction_weights(1) if self.built else []

    @property
    def grads(self):
        return self._direction_grads(0) + self._direction_grads(1) if self.built else []

    def get_config(self):
        def entry(view):
            return {"module": "keras.layers", "class_name": "LSTM",
                    "config": view.get_config(), "registered_name": None}
        return {**super().get_config(), "merge_mode": self.merge_mode,
                "layer": entry(self.forward_layer),
                "backward_layer": entry(self.backward_layer)}


# --------------------------------------------------------------------------- dense

class Dense(Layer):
    """Keras's Dense: y = activation(x @ kernel + bias) on the last axis (per step on
    (batch, steps, features) input). kernel (in, units) glorot_uniform, bias zeros.
    Activations from fastlstm.keras.activations ("linear", "relu", "sigmoid", "tanh",
    "softmax"). The mask passes through.

    Parameters
    ----------
    units : int
        The output size (positive).
    activation : str or callable, optional
        From fastlstm.keras.activations; None is "linear".
    use_bias : bool, default True
    kernel_initializer : str or dict, default "glorot_uniform"
    bias_initializer : str or dict, default "zeros"
    kernel_regularizer, bias_regularizer, activity_regularizer : None
        Not supported: anything but None is a ValueError.
    kernel_constraint, bias_constraint : None
        Not supported: anything but None is a ValueError.
    lora_rank : None
        Not supported: anything but None is a ValueError.
    lora_alpha : optional
        Accepted for Keras compatibility; ignored.
    quantization_config : None
        Not supported: anything but None is a ValueError.
    **kwargs
        Keras's base-layer keywords (name, input_shape, batch_size, batch_input_shape,
        trainable, dtype): see Layer. Any other keyword is a TypeError.

    Raises
    ------
    ValueError
        For an unknown activation, an unsupported setting or an invalid value.
    TypeError
        For an unknown keyword argument.
    """

    def __init__(self, units, activation=None, use_bias=True,
                 kernel_initializer="glorot_uniform", bias_initializer="zeros",
                 kernel_regularizer=None, bias_regularizer=None, activity_regularizer=None,
                 kernel_constraint=None, bias_constraint=None, lora_rank=None,
                 lora_alpha=None, quantization_config=None, **kwargs):
        """Create the layer; the arguments are documented in the class docstring."""
        super().__init__(**kwargs)
        from . import activations
        where = _where(self)
        self.units = _positive_int(units, "units", where)
        try:
            self.activation = activations.get(activation)
        except ValueError as exc:
            raise ValueError(f"{where}: activation: {exc}") from None
        self.use_bias = _boolean(use_bias, "use_bias", where)
        self.kernel_initializer = _Initializer.get(kernel_initializer, "kernel_initializer",
                                                   where)
        self.bias_initializer = _Initializer.get(bias_initializer, "bias_initializer", where)
        _only_none(where, kernel_regularizer=kernel_regularizer,
                   bias_regularizer=bias_regularizer,
                   activity_regularizer=activity_regularizer,
                   kernel_constraint=kernel_constraint, bias_constraint=bias_constraint,
                   lora_rank=lora_rank, quantization_config=quantization_config)
        self._linear = self.activation.name == "linear"
        self.kernel = self.bias = None

    def _build(self, shape):
        if not shape or shape[-1] is None:
            raise ValueError(f"{_where(self)} needs a known last dim (features), got input "
                             f"shape {shape}")
        n = shape[-1]
        self.kernel = self.kernel_initializer((n, self.units), self.dtype)
        self.d_kernel = np.zeros_like(self.kernel)
        if self.use_bias:
            self.bias = self.bias_initializer((self.units,), self.dtype)
            self.d_bias = np.zeros_like(self.bias)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)[:-1] + (self.units,)

    def call(self, x, mask=None, training=False):
        x = self._float_input(x)
        self._tape = None
        z = np.matmul(x, self.kernel)
        if self.use_bias:
            z += self.bias
        a = z if self._linear else self.activation.forward(z)
        self._tape = (x, z, a) if training else None
        return a, mask

    def backward(self, dy):
        x, z, a = self._taped()
        dy = self._grad_input(dy, a.shape)
        dz = dy if self._linear else self.activation.backward(z, a, dy)
        dz2 = dz.reshape(-1, self.units)
        np.matmul(x.reshape(-1, x.shape[-1]).T, dz2, out=self.d_kernel)
        if self.use_bias:
            np.sum(dz2, axis=0, out=self.d_bias)
        return np.matmul(dz, self.kernel.T)

    def _weight_specs(self):
        if self.kernel is None:
            return []
        specs = [(f"{self.name}/kernel", self.kernel.shape)]
        return specs + [(f"{self.name}/bias", self.bias.shape)] if self.use_bias else specs

    def get_weights(self):
        if not self.built:
            return []
        return [self.kernel.copy()] + ([self.bias.copy()] if self.use_bias else [])

    def _assign(self, arrays):
        self.kernel[...] = arrays[0]
        if self.use_bias:
            self.bias[...] = arrays[1]

    @property
    def grads(self):
        if not self.built:
            return []
        return [self.d_kernel] + ([self.d_bias] if self.use_bias else [])

    def _variables(self):
        out = [(f"{self.name}/kernel", self.kernel, self.d_kernel)]
        if self.use_bias:
            out.append((f"{self.name}/bias", self.bias, self.d_bias))
        return out

    def get_config(self):
        return {**super().get_config(), "units": self.units,
                "activation": self.activation.name, "use_bias": self.use_bias,
                "kernel_initializer": self.kernel_initializer.serialize(),
                "bias_initializer": self.bias_initializer.serialize(),
                "kernel_regularizer": None, "bias_regularizer": None,
                "kernel_constraint": None, "bias_constraint": None,
                "quantization_config": None}


# --------------------------------------------------------------------------- dropout

class Dropout(Layer):
    """Keras's Dropout: in training, each unit is zeroed with probability `rate` and the
    kept ones scaled by 1/(1-rate); identity in inference. noise_shape (None entries
    take x's size) shares the mask over axes of size 1. The mask passes through.

    Parameters
    ----------
    rate : float in [0, 1]
        The probability of zeroing a unit.
    noise_shape : tuple of int or None, optional
        The mask's shape; None entries take x's size.
    seed : int, optional
        Seed of the masks.
    **kwargs
        Keras's base-layer keywords (name, input_shape, batch_size, batch_input_shape,
        trainable, dtype): see Layer. Any other keyword is a TypeError.

    Raises
    ------
    ValueError
        If rate, noise_shape or seed is invalid.
    TypeError
        For an unknown keyword argument.
    """

    def __init__(self, rate, noise_shape=None, seed=None, **kwargs):
        """Create the layer; the arguments are documented in the class docstring."""
        super().__init__(**kwargs)
        where = _where(self)
        self.rate = _rate(rate, "rate", where, allow_one=True)
        if noise_shape is not None:
            if not isinstance(noise_shape, (tuple, list)) or not all(
                    d is None or (isinstance(d, (int, np.integer)) and d > 0)
                    for d in noise_shape):
                raise ValueError(f"{where}: noise_shape must be a tuple of positive ints or "
                                 f"None, got {noise_shape!r}")
            noise_shape = tuple(None if d is None else int(d) for d in noise_shape)
        self.noise_shape = noise_shape
        self.seed = _seed(seed, "seed", where)
        self._rng = None if self.seed is None else np.random.default_rng(self.seed)
        self.built = True  # no weights

    def call(self, x, mask=None, training=False):
        x = self._float_input(x)
        if not training or self.rate == 0:
            self._tape = (None, np.shape(x)) if training else None
            return x, mask
        shape = x.shape
        if self.noise_shape is not None:
            if len(self.noise_shape) != x.ndim:
                raise ValueError(f"{_where(self)}: noise_shape {self.noise_shape} must have "
                                 f"x's rank {x.ndim} (x shape {x.shape})")
            shape = tuple(s if d is None else d for d, s in zip(self.noise_shape, x.shape))
        rng = self._rng if self._rng is not None else krandom.generator()
        if self.rate == 1:
            scale = np.zeros(shape, self.dtype)
        else:
            scale = (rng.random(shape) >= self.rate).astype(self.dtype)
            scale *= self.dtype.type(1.0 / (1.0 - self.rate))
        self._tape = (scale, x.shape)
        return x * scale, mask

    def backward(self, dy):
        scale, shape = self._taped()
        dy = self._grad_input(dy, shape)
        return dy if scale is None else dy * scale

    def get_config(self):
        return {**super().get_config(), "rate": self.rate, "seed": self.seed,
                "noise_shape": None if self.noise_shape is None else list(self.noise_shape)}


# --------------------------------------------------------------------------- embedding

class Embedding(Layer):
    """Keras's Embedding: integer ids (any shape) -> rows of `embeddings` (input_dim,
    output_dim), initialised uniform in [-0.05, 0.05]. Ids must be whole numbers in
    [0, input_dim) (a ValueError otherwise). With mask_zero=True the output's mask is
    ids != 0. backward returns None (ids have no gradient).

    Parameters
    ----------
    input_dim : int
        The number of ids (positive).
    output_dim : int
        The size of each row (positive).
    embeddings_initializer : str or dict, default "uniform"
    embeddings_regularizer, embeddings_constraint : None
        Not supported: anything but None is a ValueError.
    mask_zero : bool, default False
        Output the mask ids != 0.
    weights : list of array_like, optional
        Initial weights ([embeddings]), set when the layer is built.
    lora_rank, quantization_config, activity_regularizer : None
        Not supported: anything but None is a ValueError.
    lora_alpha : optional
        Accepted for Keras compatibility; ignored.
    input_length : optional
        Accepted for Keras compatibility (deprecated there); ignored.
    **kwargs
        Keras's base-layer keywords (name, input_shape, batch_size, batch_input_shape,
        trainable, dtype): see Layer. Any other keyword is a TypeError.

    Raises
    ------
    ValueError
        For an unsupported setting or an invalid value.
    TypeError
        For an unknown keyword argument.
    """

    def __init__(self, input_dim, output_dim, embeddings_initializer="uniform",
                 embeddings_regularizer=None, embeddings_constraint=None, mask_zero=False,
                 weights=None, lora_rank=None, lora_alpha=None, quantization_config=None,
                 input_length=None, activity_regularizer=None, **kwargs):
        """Create the layer; the arguments are documented in the class docstring."""
        super().__init__(**kwargs)
        where = _where(self)
        self.input_dim = _positive_int(input_dim, "input_dim", where)
        self.output_dim = _positive_int(output_dim, "output_dim", where)
        self.embeddings_initializer = _Initializer.get(embeddings_initializer,
                                                       "embeddings_initializer", where)
        self.mask_zero = _boolean(mask_zero, "mask_zero", where)
        _only_none(where, embeddings_regularizer=embeddings_regularizer,
                   embeddings_constraint=embeddings_constraint, lora_rank=lora_rank,
                   quantization_config=quantization_config,
                   activity_regularizer=activity_regularizer)
        self._initial_weights = weights
        self.embeddings = None

    def _build(self, shape):
        self.embeddings = self.embeddings_initializer((self.input_dim, self.output_dim),
                                                      self.dtype)
        self.d_embeddings = np.zeros_like(self.embeddings)
        if self._initial_weights is not None:
            self.set_weights(self._initial_weights)
            self._initial_weights = None

    def _check_built_shape(self, shape):
        pass  # any id shape

    def compute_output_shape(self, input_shape):
        return tuple(input_shape) + (self.output_dim,)

    def _ids(self, x):
        where = _where(self)
        ids = _as_array(x, "x", where)
        if ids.dtype.kind == "b":
            raise TypeError(f"{where}: x must hold integer ids, got dtype bool")
        if ids.dtype.kind == "f":
            if not np.all(np.isfinite(ids) & (ids == np.round(ids))):
                raise ValueError(f"{where}: x must hold whole-number ids, got non-integer "
                                 "values")
        if ids.size and (ids.min() < 0 or ids.max() >= self.input_dim):
            raise ValueError(f"{where}: x must hold ids in [0, {self.input_dim}) "
                             f"(input_dim={self.input_dim}), got values from {ids.min()} to "
                             f"{ids.max()}")
        return ids.astype(np.intp, copy=False)

    def call(self, x, mask=None, training=False):
        ids = self._ids(x)
        self._tape = None
        y = np.take(self.embeddings, ids, axis=0)
        self._tape = (ids, y.shape) if training else None
        return y, (ids != 0 if self.mask_zero else None)

    def backward(self, dy):
        ids, shape = self._taped()
        dy = self._grad_input(dy, shape)
        g = self.d_embeddings
        g[...] = 0
        flat = ids.ravel()
        if flat.size:
            order = np.argsort(flat, kind="stable")
            sorted_ids = flat[order]
            starts = np.flatnonzero(np.r_[True, sorted_ids[1:] != sorted_ids[:-1]])
            g[sorted_ids[starts]] = np.add.reduceat(dy.reshape(-1, self.output_dim)[order],
                                                    starts, axis=0)
        return None

    def _weight_specs(self):
        if self.embeddings is None:
            return []
        return [(f"{self.name}/embeddings", self.embeddings.shape)]

    def get_weights(self):
        return [self.embeddings.copy()] if self.built else []

    def _assign(self, arrays):
        self.embeddings[...] = arrays[0]

    @property
    def grads(self):
        return [self.d_embeddings] if self.built else []

    def _variables(self):
        return [(f"{self.name}/embeddings", self.embeddings, self.d_embeddings)]

    def get_config(self):
        return {**super().get_config(), "input_dim": self.input_dim,
                "output_dim": self.output_dim,
                "embeddings_initializer": self.embeddings_initializer.serialize(),
                "embeddings_regularizer": None, "activity_regularizer": None,
                "embeddings_constraint": None, "mask_zero": self.mask_zero,
                "quantization_config": None}


# --------------------------------------------------------------------------- input

class InputLayer(Layer):
    """Keras's InputLayer: declares the input shape (and dtype, e.g. "int32" ids for an
    Embedding) as a Sequential's first item. call passes x (and mask) through after
    checking its rank and its fixed dims."""

    def __init__(self, shape=None, batch_size=None, dtype=None, sparse=None, ragged=None,
                 batch_shape=None, input_tensor=None, optional=False, name=None,
                 input_shape=None, batch_input_shape=None, **kwargs):
        kwargs.pop("trainable", None)
        super().__init__(name=name, **kwargs)
        where = _where(self)
        shape = input_shape if shape is None else shape
        batch_shape = batch_input_shape if batch_shape is None else batch_shape
        if shape is not None and batch_shape is not None:
            raise ValueError(f"{where}: give shape or batch_shape, not both")
        if batch_shape is not None:
            batch_shape = _shape(batch_shape, "batch_shape", where)
        elif shape is not None:
            if batch_size is not None:
                batch_size = _positive_int(batch_size, "batch_size", where)
            batch_shape = (batch_size,) + _shape(shape, "shape", where)
        else:
            raise ValueError(f"{where}: shape (or batch_shape) is required")
        for key, value in (("sparse", sparse), ("ragged", ragged), ("optional", optional)):
            if value:
                raise ValueError(f"{where}: {key}=True is not supported")
        if input_tensor is not None:
            raise ValueError(f"{where}: input_tensor is not supported")
        if dtype is None:
            dtype = "float32"
        elif isinstance(dtype, Mapping):
            dtype = (dtype.get("config") or {}).get("name", "float32")
        try:
            self.input_dtype = np.dtype(dtype).name
        except TypeError:
            raise ValueError(f"{where}: dtype must be a NumPy dtype name, got "
                             f"{dtype!r}") from None
        self.batch_shape = batch_shape
        self.batch_input_shape = batch_shape
        self.input_shape_built = batch_shape[1:]
        self.built = True

    def build(self, input_shape):
        self._check_shape(tuple(input_shape), "input_shape")

    def _check_shape(self, shape, what):
        want = self.batch_shape[1:]
        if len(shape) != len(want) or any(w is not None and s is not None and s != w
                                          for s, w in zip(shape, want)):
            raise ValueError(f"{_where(self)}: {what} must be (batch, "
                             f"{', '.join(map(str, want))}), got (batch, "
                             f"{', '.join(map(str, shape))})")

    def call(self, x, mask=None, training=False):
        if not isinstance(x, np.ndarray):
            x = _as_array(x, "x", _where(self))
        self._check_shape(x.shape[1:], "x's shape")
        if self.batch_shape[0] is not None and x.shape[0] != self.batch_shape[0]:
            raise ValueError(f"{_where(self)}: x must have batch size {self.batch_shape[0]}, "
                             f"got shape {x.shape}")
        self._tape = (True,) if training else None
        return x, mask

    def backward(self, dy):
        return dy

    def get_config(self):
        return {"batch_shape": list(self.batch_shape), "dtype": self.input_dtype,
                "sparse": False, "ragged": False, "name": self.name, "optional": False}


def Input(shape=None, batch_size=None, dtype=None, sparse=None, batch_shape=None, name=None,
          tensor=None, optional=False):
    """keras.Input: an InputLayer (a Sequential's first item) declaring the input shape.

    Parameters
    ----------
    shape : tuple of int or None
        The input shape without the batch dim, e.g. (10, 1) for 10 steps of 1 feature.
    batch_size : int, optional
        A fixed batch size (a stateful model's).
    dtype : str, optional
        The input's NumPy dtype name, default "float32" (e.g. "int32" ids for an
        Embedding).
    sparse : bool, optional
        Not supported: True is a ValueError.
    batch_shape : tuple, optional
        The shape with the batch dim, instead of shape and batch_size.
    name : str, optional
        The layer's name.
    tensor : None
        Not supported: anything but None is a ValueError.
    optional : bool, default False
        Not supported: True is a ValueError.

    Returns
    -------
    InputLayer
        The layer, to put first in a Sequential.

    Raises
    ------
    ValueError
        If neither or both of shape and batch_shape are given, a shape or dtype is
        invalid, or an unsupported setting is used.
    """
    return InputLayer(shape=shape, batch_size=batch_size, dtype=dtype, sparse=sparse,
                      batch_shape=batch_shape, input_tensor=tensor, optional=optional,
                      name=name)


# --------------------------------------------------------------------------- registry

LAYER_CLASSES = {"LSTM": LSTM, "Bidirectional": Bidirectional, "Dense": Dense,
                 "Dropout": Dropout, "Embedding": Embedding, "InputLayer": InputLayer}


def deserialize(class_name, config):
    """A layer from Keras's class name and config (as in a .keras file's config.json)."""
    cls = LAYER_CLASSES.get(class_name)
    if cls is None:
        raise ValueError(f"layer class {class_name!r} is not supported by fastlstm.keras "
                         f"(supported: {', '.join(sorted(LAYER_CLASSES))})")
    return cls.from_config(config)
