"""Keras files: Keras 3's `.keras` archives and `.weights.h5` files, Keras 2's `.h5` files.

    model = load_model("model.keras")    # written by Keras 3 (or by save_model)
    save_model(model, "copy.keras")      # keras.saving.load_model("copy.keras") reads it
    save_weights(model, "w.weights.h5"); load_weights(model, "w.weights.h5")

The formats, as Keras 3.15 writes them:
- `.keras`: a zip (members stored, not compressed) of `metadata.json` ({"keras_version",
  "date_saved"}), `config.json` (the model serialized: {"module", "class_name", "config",
  "registered_name", "build_config", "compile_config"}) and `model.weights.h5`.
- `model.weights.h5` and `.weights.h5` files: one group per object that owns variables,
  named by where it sits in the model. A Sequential's layers (InputLayer left out; a
  Functional model counts it) are `layers/<class name in snake case>`, then `_1`, `_2`, ...
  for later layers of the same class. Each object's datasets "0", "1", ... (its variables
  in order) live in its `vars` group, whose attr `name` is the object's name:
  LSTM `layers/lstm/cell/vars/{0,1,2}` = kernel (F, 4H), recurrent_kernel (H, 4H),
  bias (4H); Bidirectional `layers/bidirectional/{forward,backward}_layer/cell/vars/...`;
  Dense `layers/dense/vars/{0,1}`; Embedding `layers/embedding/vars/0`; the optimizer
  `optimizer/vars/...` (iterations, learning_rate, then its slots per variable).
- Keras 2 (and Keras 3 legacy) `.h5`: root attrs `model_config` (JSON, layer entries
  without "module") and `training_config`; group `model_weights` (the root itself in a
  weights-only file) with attr `layer_names`; each layer's group lists its datasets, in the
  layer's weight order, in attr `weight_names` (paths below that group).
  Keras 2's CuDNNLSTM keeps kernel and recurrent kernel in cuDNN's layout and a bias of 8H
  (input bias, then recurrent bias); they are converted as Keras 2 converted them.

Every file is untrusted: the zip's members are checked (names, sizes against the bytes
stored, the archive's length) before one is read, the config's structure and types before
a model is made, the parameter count it implies against the bytes the file holds before
any weight is allocated, and every weight's shape and dtype before its data is read.
Problems raise ValueError naming the file and what is wrong; a model is never half-loaded.
No pickle anywhere; h5py is imported only when a file is read or written.
"""
import copy
import datetime
import io
import json
import math
import os
import re
import uuid
import warnings
import zipfile

import numpy as np

from .cudnn import from_cudnn_weights

CONFIG_NAME = "config.json"
METADATA_NAME = "metadata.json"
WEIGHTS_NAME = "model.weights.h5"
KERAS_VERSION = "3.15.1"  # the Keras 3 whose files these are checked against

MAX_JSON_BYTES = 16 << 20      # config.json / model_config: Keras's are a few KB a layer
MAX_MEMBERS = 10000
MAX_EXPANSION = 64             # deflated weights (floats) shrink ~1.1x; 64x is a bomb
EXPANSION_SLACK = 1 << 20
MAX_LAYERS = 100000

_HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
_ZIP_MAGIC = b"PK\x03\x04"


def _h5py():
    try:
        import h5py
    except ImportError:
        raise ImportError("reading and writing Keras files needs h5py: pip install h5py "
                          "(or pip install fastlstm[keras])") from None
    return h5py


# --------------------------------------------------------------------------- errors

class _FileError(ValueError):
    """A problem with the file's content (caught and re-raised naming the file)."""


def _bad(what):
    return _FileError(what)


class _Reading:
    """Context manager: turns what a malformed file makes zipfile, json and h5py raise
    into one ValueError that names the file."""

    def __init__(self, where):
        self.where = where

    def __enter__(self):
        return self

    def __exit__(self, kind, exc, tb):
        if exc is None or isinstance(exc, FileNotFoundError):
            return False
        if isinstance(exc, _FileError):
            raise ValueError(f"path {self.where!r}: {exc}") from None
        if isinstance(exc, (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError,
                            KeyError, UnicodeError, RecursionError, json.JSONDecodeError,
                            TypeError, ValueError, RuntimeError, OverflowError)):
            raise ValueError(f"path {self.where!r}: not a readable Keras file (damaged or "
                             f"truncated?): {type(exc).__name__}: {exc}") from None
        return False


def _fspath(path, what="path"):
    if isinstance(path, bytes):
        path = os.fsdecode(path)
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"{what} must be a str, bytes or os.PathLike path, "
                        f"got {type(path).__name__}")
    return os.fspath(path)


# --------------------------------------------------------------------------- zip archives

def _plain_member_name(name):
    """A relative path with no tricks: no leading /, no backslash, drive or control
    characters, no empty, '.' or '..' parts (only a trailing / for a folder)."""
    parts = (name[:-1] if name.endswith("/") else name).split("/")
    return (0 < len(name) <= 512 and not any(c in name for c in "\\:")
            and not any(ord(c) < 32 or ord(c) == 127 for c in name)
            and not any(p in ("", ".", "..") for p in parts))




class _Archive:
    """A `.keras` zip, its directory checked; `read(name, limit)` reads one member."""

    def __init__(self, path):
        self.size = os.path.getsize(path)
        self.zip = zipfile.ZipFile(path)
        try:
            self.members = self._check_directory()
        except BaseException:
            self.zip.close()
            raise

    def _check_directory(self):
        infos = self.zip.infolist()
        if len(infos) > MAX_MEMBERS:
            raise _bad(f"the archive has {len(infos)} members (at most {MAX_MEMBERS})")
        members = {}
        for info in infos:
            name = info.filename
            if not _plain_member_name(name):
                raise _bad(f"the archive has a member named {name!r}: not a plain relative "
                           "path (a .keras file's members are config.json, metadata.json, "
                           "model.weights.h5 and assets/...)")
            if name in members:
                raise _bad(f"the archive holds {name!r} twice")
            if info.flag_bits & 0x1:
                raise _bad(f"member {name!r} is encrypted")
            if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
                raise _bad(f"member {name!r} uses compression method {info.compress_type} "
                           "(Keras stores members, at most deflated)")
            if info.header_offset + info.compress_size > self.size:
                raise _bad(f"member {name!r} claims {info.compress_size} bytes at offset "
                           f"{info.header_offset} of a {self.size}-byte file: the file is "
                           "truncated")
            members[name] = info
        return members

    def has(self, name):
        return name in self.members

    def read(self, name, limit=None):
        info = self.members.get(name)
        if info is None:
            raise _bad(f"the archive has no {name!r} (members: {sorted(self.members)[:8]}): "
                       "not a Keras 3 .keras file")
        if limit is not None and info.file_size > limit:
            raise _bad(f"member {name!r} claims {info.file_size} bytes (at most {limit})")
        if info.file_size > MAX_EXPANSION * info.compress_size + EXPANSION_SLACK:
            raise _bad(f"member {name!r} claims {info.file_size} bytes from "
                       f"{info.compress_size} stored bytes: refusing a decompression bomb")
        with self.zip.open(info) as fp:
            data = fp.read(info.file_size + 1)  # reading to the end checks the CRC
        if len(data) != info.file_size:
            raise _bad(f"member {name!r} holds {len(data)} bytes, its header says "
                       f"{info.file_size}")
        return data

    def json(self, name):
        return _parse_json(self.read(name, MAX_JSON_BYTES), name)

    def close(self):
        self.zip.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _parse_json(data, what):
    if isinstance(data, np.ndarray) and data.shape == ():
        data = data.item()
    if isinstance(data, (bytes, np.bytes_)):
        if len(data) > MAX_JSON_BYTES:
            raise _bad(f"{what} is {len(data)} bytes (at most {MAX_JSON_BYTES})")
        data = bytes(data).decode("utf-8")
    if not isinstance(data, str):
        raise _bad(f"{what} is not JSON text (got {type(data).__name__})")
    if len(data) > MAX_JSON_BYTES:
        raise _bad(f"{what} is {len(data)} characters (at most {MAX_JSON_BYTES})")
    try:
        return json.loads(data)
    except RecursionError:
        raise _bad(f"{what} nests too deeply") from None
    except json.JSONDecodeError as exc:
        raise _bad(f"{what} is not valid JSON: {exc}") from None


# --------------------------------------------------------------------------- configs

def _snake(name):
    """Keras's naming.to_snake_case: the group name of a layer of class `name`."""
    name = re.sub(r"\W+", "", name)
    name = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub("([a-z])([A-Z])", r"\1_\2", name).lower()


def _expect_dict(value, where):
    if not isinstance(value, dict):
        raise _bad(f"{where} must be a JSON object, got {type(value).__name__}")
    return value


def _expect_list(value, where, limit=MAX_LAYERS):
    if not isinstance(value, list):
        raise _bad(f"{where} must be a JSON list, got {type(value).__name__}")
    if len(value) > limit:
        raise _bad(f"{where} has {len(value)} entries (at most {limit})")
    return value


def _expect_str(value, where):
    if not isinstance(value, str) or not value or len(value) > 1000:
        raise _bad(f"{where} must be a non-empty string, got {value!r:.80}")
    return value


def _expect_int(value, where, low=1):
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < low or value >= 2**40:
        raise _bad(f"{where} must be an integer >= {low}, got {value!r:.80}")
    return value


def _expect_shape(value, where):
    """A batch shape: a list of ints >= 0 or nulls (first = batch)."""
    _expect_list(value, where, limit=32)
    out = []
    for i, d in enumerate(value):
        out.append(None if d is None else _expect_int(d, f"{where}[{i}]", low=0))
    return tuple(out)


def _entry(entry, where):
    """(class_name, config) of one serialized object {"class_name", "config", ...}."""
    _expect_dict(entry, where)
    class_name = _expect_str(entry.get("class_name"), f"{where}.class_name")
    config = _expect_dict(entry.get("config"), f"{where}.config")
    return class_name, config


def _layer_name(config, class_name):
    name = config.get("name")
    return name if isinstance(name, str) else _snake(class_name)


# Keras 2 layer configs carry keys Keras 3 dropped; CuDNNLSTM is an LSTM with tanh/sigmoid.
_LEGACY_DROPPED = ("batch_input_shape", "input_dim", "input_length", "implementation",
                   "time_major", "batch_size")
_CUDNN_KEPT = ("name", "trainable", "units", "return_sequences", "return_state",
               "go_backwards", "stateful", "dtype")


def _modernize(class_name, config, where):
    """A Keras 2 layer entry as Keras 3 writes it: (class_name, config, batch_input_shape)."""
    config = dict(config)
    batch_input_shape = config.get("batch_input_shape")
    if config.get("time_major"):
        raise _bad(f"{where}: layer {_layer_name(config, class_name)!r} has time_major=True, "
                   "which fastlstm.keras does not support (inputs are batch-first)")
    if class_name == "CuDNNLSTM":
        class_name = "LSTM"
        config = {k: config[k] for k in _CUDNN_KEPT if k in config}
        config.update(activation="tanh", recurrent_activation="sigmoid", use_bias=True)
    elif class_name == "InputLayer":
        if batch_input_shape is not None and "batch_shape" not in config:
            config["batch_shape"] = batch_input_shape
        config.pop("batch_input_shape", None)
        config.pop("input_shape", None)
        return class_name, config, None
    elif class_name == "Bidirectional":
        for key in ("layer", "backward_layer"):
            if config.get(key) is not None:
                inner_cls, inner_cfg = _entry(config[key], f"{where}.config.{key}")
                inner_cls, inner_cfg, _ = _modernize(inner_cls, inner_cfg,
                                                     f"{where}.config.{key}")
                config[key] = {"module": "keras.layers", "class_name": inner_cls,
                               "config": inner_cfg, "registered_name": None}
    for key in _LEGACY_DROPPED:
        config.pop(key, None)
    return class_name, config, batch_input_shape


class _Spec:
    """What a file says about a model: its name, layers as (class_name, config), input
    shape (with the batch dim, or None), compile settings (or None)."""

    def __init__(self, name, layers, input_shape, compile_config):
        self.name, self.layers = name, layers
        self.input_shape, self.compile_config = input_shape, compile_config


def _model_spec(config, where, legacy=False):
    _expect_dict(config, where)
    class_name = config.get("class_name")
    inner = config.get("config")
    if class_name == "Sequential":
        if isinstance(inner, list):  # Keras <= 2.1: the config is the list of layers
            inner = {"layers": inner}
        _expect_dict(inner, f"{where}.config")
        entries = _expect_list(inner.get("layers"), f"{where}.config.layers")
    elif class_name in ("Functional", "Model"):
        _expect_dict(inner, f"{where}.config")
        entries = _linear_chain(inner, f"{where}.config")
    else:
        raise _bad(f"{where} holds a model of class {class_name!r:.80}: fastlstm.keras loads "
                   "Sequential models (and Functional models that are one chain of layers)")
    name = inner.get("name") if isinstance(inner.get("name"), str) else "sequential"
    layers, input_shape = [], None
    for i, entry in enumerate(entries):
        layer_where = f"{where}.config.layers[{i}]"
        class_name, layer_config = _entry(entry, layer_where)
        batch_input_shape = None
        if legacy or "module" not in entry:
            class_name, layer_config, batch_input_shape = _modernize(class_name, layer_config,
                                                                     layer_where)
        if i == 0 and class_name != "InputLayer" and batch_input_shape is not None:
            shape = _expect_shape(batch_input_shape, f"{layer_where}.config.batch_input_shape")
            name = f"{_layer_name(layer_config, class_name)}_input"  # Keras 2's name
            layers.append(("InputLayer", {"batch_shape": list(shape), "name": name}))
        layers.append((class_name, layer_config))
    _check_supported(layers, where)
    if layers and layers[0][0] == "InputLayer":
        cfg = layers[0][1]
        shape = cfg.get("batch_shape", cfg.get("batch_input_shape"))
        if shape is None and cfg.get("input_shape") is not None:
            shape = [None] + list(_expect_list(cfg["input_shape"], "input_shape", 32))
        if shape is not None:
            input_shape = _expect_shape(shape, f"{where}.config.layers[0].config.batch_shape")
    if input_shape is None:
        shape = inner.get("build_input_shape")
        if shape is None and isinstance(config.get("build_config"), dict):
            shape = config["build_config"].get("input_shape")
        if shape is not None:
            input_shape = _expect_shape(shape, f"{where}.build_input_shape")
    if input_shape is not None and input_shape[0] is not None and not any(
            cfg.get("stateful") for _, cfg in layers):
        # a model built by calling it on one batch records that batch size; Keras runs
        # it on any batch size, and so does the loaded model unless a layer is stateful
        input_shape = (None,) + input_shape[1:]
        if layers and layers[0][0] == "InputLayer":
            cfg = {k: v for k, v in layers[0][1].items()
                   if k not in ("batch_input_shape", "input_shape", "batch_size", "shape")}
            layers[0] = ("InputLayer", {**cfg, "batch_shape": list(input_shape)})
    compile_config = config.get("compile_config")
    if compile_config is not None:
        _expect_dict(compile_config, f"{where}.compile_config")
    return _Spec(name, layers, input_shape, compile_config or None)


def _inbound_source(node, where):
    """The layer name a Functional node reads from (Keras 3 or Keras 2 node format), or
    None if the node is anything but one plain input."""
    if isinstance(node, dict):  # Keras 3: {"args": [tensor], "kwargs": {...}}
        args, kwargs = node.get("args"), node.get("kwargs") or {}
        if (not isinstance(args, list) or len(args) != 1 or not isinstance(kwargs, dict)
                or any(k not in ("training", "mask") or (k == "mask" and v is not None)
                       for k, v in kwargs.items())):
            return None
        tensor = args[0]
        if not isinstance(tensor, dict) or tensor.get("class_name") != "__keras_tensor__":
            return None
        history = (tensor.get("config") or {}).get("keras_history")
    else:  # Keras 2: [[name, node_index, tensor_index, kwargs], ...]
        if not isinstance(node, list) or len(node) != 1:
            return None
        history = node[0]
        if isinstance(history, list) and len(history) == 4 and history[3]:
            return None
    if (not isinstance(history, list) or len(history) < 3 or not isinstance(history[0], str)
            or history[1:3] != [0, 0]):
        return None
    return history[0]


def _io_name(value):
    """The one layer name in a Functional config's input_layers / output_layers."""
    if isinstance(value, list) and len(value) == 1 and isinstance(value[0], list):
        value = value[0]
    if isinstance(value, list) and len(value) == 3 and isinstance(value[0], str):
        return value[0]
    return None


def _linear_chain(inner, where):
    """The layer entries of a Functional config that is one chain Input -> ... -> output."""
    entries = _expect_list(inner.get("layers"), f"{where}.layers")
    reason = None
    if not entries:
        reason = "it has no layers"
    else:
        first = entries[0]
        if not isinstance(first, dict) or first.get("class_name") != "InputLayer":
            reason = "its first layer is not an InputLayer"
        elif _io_name(inner.get("input_layers")) != first.get("name"):
            reason = "it has several inputs"
        elif _io_name(inner.get("output_layers")) != entries[-1].get("name"):
            reason = "its output is not its last layer"
    for i in range(1, len(entries)):
        if reason:
            break
        entry = entries[i]
        nodes = entry.get("inbound_nodes") if isinstance(entry, dict) else None
        if not isinstance(nodes, list) or len(nodes) != 1:
            reason = f"layer {entry.get('name') if isinstance(entry, dict) else i!r} is " \
                     "called more than once or not at all"
        elif _inbound_source(nodes[0], where) != entries[i - 1].get("name"):
            cls = entry.get("class_name")
            reason = (f"layer {entry.get('name')!r} ({cls}) does not simply read the output "
                      f"of the layer before it")
    if reason:
        raise _bad(f"{where}: only Sequential models and Functional models that are one "
                   f"chain of layers are supported, and this Functional model is not: {reason}")
    return entries


def _check_supported(layers, where):
    from . import layers as klayers
    known = klayers.LAYER_CLASSES
    for i, (class_name, config) in enumerate(layers):
        name = _layer_name(config, class_name)
        if class_name not in known:
            raise _bad(f"{where}: layer {name!r} is a {class_name}, which fastlstm.keras does "
                       f"not support (supported: {', '.join(sorted(known))})")
        if class_name == "InputLayer" and i != 0:
            raise _bad(f"{where}: layer {name!r} is an InputLayer after the first layer")
        if class_name == "Bidirectional":
            for key in ("layer", "backward_layer"):
                if config.get(key) is None and key == "backward_layer":
                    continue
                inner_cls, _ = _entry(config.get(key), f"{where}: layer {name!r} config.{key}")
                if inner_cls != "LSTM":
                    raise _bad(f"{where}: layer {name!r} is a Bidirectional({inner_cls}); "
                               "fastlstm.keras supports Bidirectional(LSTM) only")


# ---------------------------------------------------------------- parameter count bound

def _lstm_params(config, features, where):
    units = _expect_int(config.get("units"), f"{where}.units")
    bias = config.get("use_bias", True) is not False
    return 4 * units * (features + units + bias), units


def _count_params(spec, where):
    """A lower bound on the number of weights the config asks for (features of unknown
    size count as 1), computed before anything is allocated."""
    shape = list(spec.input_shape[1:]) if spec.input_shape else []
    total = 0
    for class_name, config in spec.layers:
        lw = f"{where}: layer {_layer_name(config, class_name)!r}"
        features = shape[-1] if shape and shape[-1] else 1
        if class_name == "Embedding":
            out = _expect_int(config.get("output_dim"), f"{lw} output_dim")
            total += _expect_int(config.get("input_dim"), f"{lw} input_dim") * out
            shape = shape + [out]
        elif class_name == "LSTM":
            params, units = _lstm_params(config, features, lw)
            total += params
            shape = shape[:-1] + [units] if config.get("return_sequences") else [units]
        elif class_name == "Bidirectional":
            fwd = _entry(config.get("layer"), f"{lw} layer")[1]
            bwd_entry = config.get("backward_layer")
            bwd = _entry(bwd_entry, f"{lw} backward_layer")[1] if bwd_entry else fwd
            p1, u1 = _lstm_params(fwd, features, lw)
            p2, u2 = _lstm_params(bwd, features, lw)
            total += p1 + p2
            units = u1 + u2 if config.get("merge_mode", "concat") == "concat" else u1
            shape = shape[:-1] + [units] if fwd.get("return_sequences") else [units]
        elif class_name == "Dense":
            units = _expect_int(config.get("units"), f"{lw} units")
            total += (features + (config.get("use_bias", True) is not False)) * units
            shape = (shape[:-1] or [None]) + [units]
    return total


def _check_size(spec, stored_bytes, where):
    """Weights take at least 2 bytes each (float16): a config that asks for more than the
    file could hold is refused before the model allocates them."""
    needed = _count_params(spec, where)
    if 2 * needed > stored_bytes + EXPANSION_SLACK:
        raise _bad(f"the config describes at least {needed} weights but the file holds only "
                   f"{stored_bytes} bytes of weights")


# --------------------------------------------------------------------------- building

def _without_initializers(config):
    """The layer config without its *_initializer settings (a wrapped layer's too)."""
    out = {k: v for k, v in config.items() if not k.endswith("_initializer")}
    for key in ("layer", "backward_layer"):
        entry = out.get(key)
        if isinstance(entry, dict) and isinstance(entry.get("config"), dict):
            out[key] = {**entry, "config": _without_initializers(entry["config"])}
    return out


def _build_model(spec, where):
    from . import layers as klayers
    from .model import Sequential
    built = []
    for class_name, config in spec.layers:
        try:
            try:
                layer = klayers.deserialize(class_name, config)
            except ValueError as exc:
                # initializers never touch loaded weights: one fastlstm.keras lacks
                # (Keras 2's VarianceScaling, say) is dropped rather than refused
                plain = _without_initializers(config)
                if "initializer" not in str(exc) or plain == config:
                    raise
                layer = klayers.deserialize(class_name, plain)
            built.append(layer)
        except (ValueError, TypeError, KeyError) as exc:
            name = _layer_name(config, class_name)
            named = "" if repr(name) in str(exc) else f"layer {name!r} ({class_name}): "
            raise ValueError(f"path {where!r}: {named}{exc}") from None
    try:
        model = Sequential(built, name=spec.name)
        if not getattr(model, "built", False) and spec.input_shape is not None:
            model.build(spec.input_shape)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"path {where!r}: the model cannot be built: {exc}") from None
    return model


def _weighted_layers(model):
    """[(group key, layer)] for the model's layers as Keras names their weight groups."""
    from . import layers as klayers
    used, out = {}, []
    for layer in model.layers:
        if isinstance(layer, klayers.InputLayer):
            continue
        base = _snake(type(layer).__name__)
        if base in used:
            used[base] += 1
            key = f"{base}_{used[base]}"
        else:
            used[base] = 0
            key = base
        out.append((key, layer))
    return out


def _weight_labels(layer, count):
    kind = type(layer).__name__
    names = {"LSTM": ["kernel", "recurrent_kernel", "bias"], "Dense": ["kernel", "bias"],
             "Embedding": ["embeddings"]}.get(kind)
    if kind == "Bidirectional":
        half = ["kernel", "recurrent_kernel", "bias"][:count // 2]
        names = [f"forward {n}" for n in half] + [f"backward {n}" for n in half]
    if not names or len(names) < count:
        names = [f"weight {i}" for i in range(count)]
    return names[:count]


def _keras3_paths(key, layer, count, top="layers"):
    """Paths of the layer's weights in a Keras 3 weights file, in get_weights order."""
    kind = type(layer).__name__
    if kind == "LSTM":
        return [f"{top}/{key}/cell/vars/{i}" for i in range(count)]
    if kind == "Bidirectional":
        half = count // 2
        return ([f"{top}/{key}/forward_layer/cell/vars/{i}" for i in range(half)]
                + [f"{top}/{key}/backward_layer/cell/vars/{i}" for i in range(half)])
    return [f"{top}/{key}/vars/{i}" for i in range(count)]


# --------------------------------------------------------------------------- h5 reading

def _h5_child(h5py, group, name, kind, where):
    """group[name] if it is a hard-linked object of `kind` (h5py.Group or h5py.Dataset)."""
    if not name or name in (".", "..") or name not in group:
        return None
    link = group.get(name, getlink=True)
    if not isinstance(link, h5py.HardLink):
        raise _bad(f"{where}: {name!r} is a {type(link).__name__}; only plain (hard) links "
                   "are allowed in a weights file")
    obj = group[name]
    if not isinstance(obj, kind):
        raise _bad(f"{where}: {name!r} is a {type(obj).__name__}, expected a "
                   f"{kind.__name__}")
    return obj


def _h5_path(h5py, root, path, kind, where):
    """The object at a /-separated path below root, or None if any part is missing."""
    parts = path.split("/")
    node = root
    for i, part in enumerate(parts):
        node = _h5_child(h5py, node, part,
                         kind if i == len(parts) - 1 else h5py.Group, where)
        if node is None:
            return None
    return node


def _check_dataset(ds, expected, where, label):
    """Shape, dtype and storage of one dataset checked against what the layer expects,
    before a byte of it is read."""
    if ds.dtype.kind != "f" or ds.dtype.itemsize not in (2, 4, 8):
        raise _bad(f"{where}: {label} has dtype {ds.dtype}; weights must be float16, "
                   "float32 or float64")
    if tuple(ds.shape) != tuple(expected):
        raise _bad(f"{where}: {label} has shape {tuple(ds.shape)}, the layer expects "
                   f"{tuple(expected)}")
    if ds.external:
        raise _bad(f"{where}: {label} keeps its data in external files")
    if ds.is_virtual:
        raise _bad(f"{where}: {label} is a virtual dataset")
    declared = math.prod(ds.shape) * ds.dtype.itemsize
    stored = ds.id.get_storage_size()
    if declared > MAX_EXPANSION * stored + EXPANSION_SLACK:
        raise _bad(f"{where}: {label} declares {declared} bytes but stores {stored}")


def _read_datasets(pending):
    """Read the checked datasets: [(layer, datasets, dtypes, labels, where)] ->
    [(layer, arrays)], the arrays in the layer's dtypes and checked to be finite."""
    out = []
    for layer, datasets, dtypes, labels, where in pending:
        arrays = []
        for ds, dtype, label in zip(datasets, dtypes, labels):
            arr = np.asarray(ds[()], dtype=dtype)
            if not np.all(np.isfinite(arr)):
                raise _bad(f"{where}: {label} holds NaN or infinite values")
            arrays.append(arr)
        out.append((layer, arrays))
    return out


def _read_keras3_weights(h5py, f, model, where):
    """[(layer, arrays)] for every layer with weights, read from a Keras 3 weights file
    after every dataset was found and checked."""
    top = "layers"
    if "layers" not in f and "_layer_checkpoint_dependencies" in f:  # Keras 2.13-2.15
        top = "_layer_checkpoint_dependencies"
    pending, keys = [], set()
    for key, layer in _weighted_layers(model):
        keys.add(key)
        current = layer.get_weights()
        lw = f"layer {layer.name!r} ({type(layer).__name__}, group {top}/{key})"
        if not current:
            probe = _keras3_paths(key, layer, 2, top)
            if any(_h5_path(h5py, f, p, h5py.Dataset, where) is not None for p in probe):
                raise _bad(f"{lw}: the file holds weights for it but the layer has none "
                           "(is the model built? a model saved unbuilt has no input shape)")
            continue
        labels = _weight_labels(layer, len(current))
        paths = _keras3_paths(key, layer, len(current), top)
        datasets = []
        for path, arr, label in zip(paths, current, labels):
            ds = _h5_path(h5py, f, path, h5py.Dataset, where)
            if ds is None:
                raise _bad(f"{lw}: the file has no {label} (dataset {path}); it was saved "
                           "from a model with other layers")
            _check_dataset(ds, arr.shape, lw, f"{label} ({path})")
            datasets.append(ds)
        for parent in dict.fromkeys(p.rsplit("/", 1)[0] for p in paths):
            count = sum(p.rsplit("/", 1)[0] == parent for p in paths)
            held = len(_h5_path(h5py, f, parent, h5py.Group, where).keys())
            if held != count:
                raise _bad(f"{lw}: the file holds {held} variables in {parent}, the layer "
                           f"has {count}")
        pending.append((layer, datasets, [a.dtype for a in current], labels, lw))
    group = _h5_path(h5py, f, top, h5py.Group, where)
    if group is not None:
        extra = sorted(k for k in group.keys()
                       if k not in keys and not k.startswith("input_layer"))
        if extra:
            raise _bad(f"the file has weights for layers the model lacks: {extra[:8]} (the "
                       f"model's: {sorted(keys)[:8]})")
    return _read_datasets(pending)


def _assign(model, loaded):
    """Set every layer's weights, or none: on any failure the old ones come back."""
    old = [(layer, layer.get_weights()) for layer, _ in loaded]
    try:
        for layer, arrays in loaded:
            layer.set_weights(arrays)
    except BaseException:
        for layer, arrays in old:
            layer.set_weights(arrays)
        raise


# ---------------------------------------------------------------- legacy (Keras 2) h5

def _attr_list(group, name):
    """A list-of-names attribute (possibly chunked as name0, name1, ...) as strings."""
    def decode(values):
        values = np.atleast_1d(np.asarray(values))
        if values.size > MAX_LAYERS or values.dtype.kind not in "SUO":
            raise _bad(f"attribute {name!r} is not a list of names")
        return [v.decode("utf-8") if isinstance(v, (bytes, np.bytes_)) else str(v)
                for v in values.tolist()]
    if name in group.attrs:
        return decode(group.attrs[name])
    out, chunk = [], 0
    while f"{name}{chunk}" in group.attrs and len(out) <= MAX_LAYERS:
        out.extend(decode(group.attrs[f"{name}{chunk}"]))
        chunk += 1
    return out


def _legacy_name_path(name, where):
    parts = name.split("/")
    if len(name) > 1000 or any(p in ("", ".", "..") for p in parts):
        raise _bad(f"{where}: weight name {name!r:.80} is not a plain path")
    return name


def _read_legacy_weights(h5py, group, model, where):
    """[(layer, arrays)] from a Keras 2 weights group: layers in order, each with its
    weight_names list (Keras 2 loads by order, not by name)."""
    names = _attr_list(group, "layer_names")
    in_file = []
    for name in names:
        if "/" in name:
            raise _bad(f"{where}: layer name {name!r:.80} is not a plain name")
        sub = _h5_child(h5py, group, name, h5py.Group, where)
        if sub is None:
            raise _bad(f"layer_names lists {name!r} but the file has no group for it")
        weight_names = _attr_list(sub, "weight_names")
        if weight_names:
            in_file.append((name, sub, weight_names))
    targets = [(layer, layer.get_weights()) for layer in model.layers]
    targets = [(layer, current) for layer, current in targets if current]
    if len(in_file) != len(targets):
        raise _bad(f"the file has weights for {len(in_file)} layers "
                   f"({[n for n, _, _ in in_file][:8]}), the model has {len(targets)} layers "
                   "with weights")
    pending, cudnn = [], []
    for (fname, sub, weight_names), (layer, current) in zip(in_file, targets):
        lw = f"layer {layer.name!r} ({type(layer).__name__}, file layer {fname!r})"
        labels = _weight_labels(layer, len(current))
        if len(weight_names) != len(current):
            raise _bad(f"{lw}: the file holds {len(weight_names)} weights, the layer has "
                       f"{len(current)}")
        expected = [a.shape for a in current]
        is_lstm = type(layer).__name__ in ("LSTM", "Bidirectional") and len(current) % 3 == 0
        datasets = []
        for i, (wname, shape, label) in enumerate(zip(weight_names, expected, labels)):
            ds = _h5_path(h5py, sub, _legacy_name_path(wname, lw), h5py.Dataset, where)
            if ds is None:
                raise _bad(f"{lw}: weight_names lists {wname!r} but the file has no such "
                           "dataset")
            if is_lstm and i % 3 == 2 and tuple(ds.shape) == (2 * shape[0],):
                shape = ds.shape  # a CuDNNLSTM's bias: input bias, then recurrent bias
            _check_dataset(ds, shape, lw, f"{label} ({wname})")
            datasets.append(ds)
        pending.append((layer, datasets, [a.dtype for a in current], labels, lw))
        cudnn.append(is_lstm)
    loaded = _read_datasets(pending)
    for k, ((layer, arrays), is_lstm) in enumerate(zip(loaded, cudnn)):
        if not is_lstm:
            continue
        for j in range(0, len(arrays), 3):
            if arrays[j + 2].shape[0] == 2 * arrays[j].shape[1]:
                arrays[j:j + 3] = from_cudnn_weights(*arrays[j:j + 3])
    return loaded


def _legacy_compile_config(training_config):
    """A Keras 2 training_config in the shape of a Keras 3 compile_config."""
    if not isinstance(training_config, dict):
        return None
    out = {k: training_config.get(k) for k in ("loss", "metrics", "loss_weights",
                                               "weighted_metrics")}
    optimizer = training_config.get("optimizer_config")
    if isinstance(optimizer, dict):
        config = dict(optimizer.get("config") or {})
        if "lr" in config and "learning_rate" not in config:
            config["learning_rate"] = config.pop("lr")
        optimizer = {"class_name": optimizer.get("class_name"), "config": config}
    out["optimizer"] = optimizer
    metrics = out["metrics"]
    if isinstance(metrics, list) and len(metrics) == 1 and isinstance(metrics[0], list):
        out["metrics"] = metrics[0]  # one output's list of metrics
    return out


def _load_legacy_model(path, compile):
    h5py = _h5py()
    with _Reading(path):
        with h5py.File(path, "r") as f:
            if "model_config" not in f.attrs:
                raise _bad("the .h5 file has no model_config: it holds weights only (use "
                           "load_weights on a model built to match)")
            config = _parse_json(f.attrs["model_config"], "model_config")
            spec = _model_spec(config, "model_config", legacy=True)
            if "training_config" in f.attrs:
                spec.compile_config = _legacy_compile_config(
                    _parse_json(f.attrs["training_config"], "training_config"))
        _check_size(spec, os.path.getsize(path), "model_config")
    model = _build_model(spec, path)
    with _Reading(path):
        with h5py.File(path, "r") as f:
            group = _h5_child(h5py, f, "model_weights", h5py.Group, "the file")
            loaded = _read_legacy_weights(h5py, group, model, "model_weights") if group else []
    _assign(model, loaded)
    if compile and spec.compile_config:
        _compile_from_config(model, spec.compile_config, path)
    return model


# --------------------------------------------------------------------------- compiling

_METRIC_CLASSES = {"MeanAbsoluteError": "mae", "MeanSquaredError": "mse",
                   "BinaryAccuracy": "accuracy", "CategoricalAccuracy": "accuracy",
                   "SparseCategoricalAccuracy": "accuracy"}


class _Unsupported(Exception):
    pass


def _optimizer_from_config(entry):
    from . import optimizers
    if isinstance(entry, dict) and isinstance(entry.get("config"), dict) \
            and entry["config"].get("is_legacy_optimizer") is False:
        # a file-format marker of Keras 2.11+ .h5 files, not a setting
        entry = dict(entry, config={k: v for k, v in entry["config"].items()
                                    if k != "is_legacy_optimizer"})
    return optimizers.get(entry)  # Keras's names and config dicts; ValueError otherwise


def _loss_from_config(entry):
    from . import losses
    if isinstance(entry, dict) and entry.get("class_name") == "function":
        entry = entry.get("config")  # a loss saved by name
    return losses.get(entry)


def _metrics_from_config(entries):
    if entries is None:
        return None
    if not isinstance(entries, list):
        raise _Unsupported(f"metrics {entries!r:.80}")
    out = []
    for entry in entries:
        if isinstance(entry, dict):
            if entry.get("class_name") == "function":
                entry = entry.get("config")
            else:
                entry = _METRIC_CLASSES.get(entry.get("class_name"))
        if not isinstance(entry, str):
            raise _Unsupported(f"metric {entry!r:.80}")
        out.append("accuracy" if entry == "acc" else entry)
    return out


def _compile_from_config(model, config, where):
    """Compile as the file says; settings fastlstm.keras lacks leave the model uncompiled
    with a warning, as Keras does when a saved compile config cannot be restored."""
    try:
        if config.get("loss_weights") or config.get("weighted_metrics"):
            raise _Unsupported("loss_weights / weighted_metrics")
        if config.get("optimizer") is None or config.get("loss") is None:
            raise _Unsupported("a compile config without optimizer or loss")
        model.compile(optimizer=_optimizer_from_config(config["optimizer"]),
                      loss=_loss_from_config(config["loss"]),
                      metrics=_metrics_from_config(config.get("metrics")))
    except (_Unsupported, ValueError, TypeError) as exc:
        warnings.warn(f"{where}: the model was not compiled (its compile settings use "
                      f"something fastlstm.keras does not support: {exc}); call "
                      "model.compile() yourself", stacklevel=3)


# --------------------------------------------------------------------------- loading

def _sniff(path):
    if os.path.isdir(path):
        raise ValueError(f"path {path!r} is a folder: fastlstm.keras reads .keras archives "
                         "(zip files), not unzipped ones")
    with open(path, "rb") as f:
        head = f.read(8)
    if head.startswith(_ZIP_MAGIC) or (head[:4] == b"PK\x05\x06"):
        return "zip"
    if head == _HDF5_MAGIC:
        return "h5"
    if head[:4] == b"PK" or zipfile.is_zipfile(path):
        return "zip"
    if path.endswith(".h5") or path.endswith(".hdf5"):
        return "h5"
    return None


def load_model(path, compile=True):
    """A Sequential from a Keras 3 `.keras` file or a Keras 2 `.h5` model file.

    Same layers, same weights (so the same predictions).

    Parameters
    ----------
    path : str, bytes or os.PathLike
        The `.keras` or `.h5` file.
    compile : bool, default True
        Compile the model as saved, when the file holds compile settings and the saved
        optimizer, loss and metrics are ones fastlstm.keras has.

    Returns
    -------
    Sequential
        The loaded model.

    Raises
    ------
    ValueError
        For a file that is not one of these, is damaged, or holds a model fastlstm.keras
        cannot run (naming the layer), before any weight is allocated.
    TypeError
        If path is not a str, bytes or os.PathLike.
    ImportError
        If h5py is not installed.
    """
    path = _fspath(path)
    kind = _sniff(path)
    if kind == "h5":
        return _load_legacy_model(path, compile)
    if kind != "zip":
        raise ValueError(f"path {path!r}: not a Keras file (a .keras zip archive or an .h5 "
                         "file)")
    h5py = _h5py()
    with _Reading(path):
        with _Archive(path) as archive:
            config = archive.json(CONFIG_NAME)
            spec = _model_spec(config, CONFIG_NAME)
            if not archive.has(WEIGHTS_NAME):
                other = "model.weights.npz" if archive.has("model.weights.npz") else None
                raise _bad(f"the archive has no {WEIGHTS_NAME}" + (
                    " (its weights are in model.weights.npz, which fastlstm.keras does not "
                    "read: save with weights_format='h5')" if other else ""))
            info = archive.members[WEIGHTS_NAME]
            _check_size(spec, info.file_size, CONFIG_NAME)
            weights = archive.read(WEIGHTS_NAME)
    model = _build_model(spec, path)
    with _Reading(path):
        with h5py.File(io.BytesIO(weights), "r") as f:
            loaded = _read_keras3_weights(h5py, f, model, WEIGHTS_NAME)
    _assign(model, loaded)
    if compile and spec.compile_config:
        _compile_from_config(model, spec.compile_config, path)
    return model


def load_weights(model, path):
    """Load weights saved by Keras (3: `.weights.h5` or `.keras`; 2: `.h5`) or by
    save_weights into `model`.

    All weights are checked (shapes, dtypes, values) before any is set; on error the
    model is unchanged.

    Parameters
    ----------
    model : Sequential
        A built model whose layers match the saved ones.
    path : str, bytes or os.PathLike
        The weights file.

    Raises
    ------
    ValueError
        If the model is not built, the file is not a Keras weights file or is damaged, or
        its weights do not match the model's.
    TypeError
        If path is not a str, bytes or os.PathLike.
    ImportError
        If h5py is not installed.
    """
    path = _fspath(path)
    if not getattr(model, "built", True):
        raise ValueError("load_weights: the model is not built yet, so it has no weights to "
                         "load into: build it first (model.build(input_shape), an Input "
                         "first layer, or a call on data)")
    kind = _sniff(path)
    h5py = _h5py()
    if kind == "zip":
        with _Reading(path):
            with _Archive(path) as archive:
                weights = archive.read(WEIGHTS_NAME)
            with h5py.File(io.BytesIO(weights), "r") as f:
                loaded = _read_keras3_weights(h5py, f, model, WEIGHTS_NAME)
    elif kind == "h5":
        with _Reading(path):
            with h5py.File(path, "r") as f:
                if "layer_names" in f.attrs or "layer_names0" in f.attrs:
                    loaded = _read_legacy_weights(h5py, f, model, "the file")
                elif "model_weights" in f and "layers" not in f:
                    group = _h5_child(h5py, f, "model_weights", h5py.Group, "the file")
                    loaded = _read_legacy_weights(h5py, group, model, "model_weights")
                else:
                    loaded = _read_keras3_weights(h5py, f, model, "the file")
    else:
        raise ValueError(f"path {path!r}: not a Keras weights file (.weights.h5, .keras "
                         "or a Keras 2 .h5)")
    _assign(model, loaded)


# --------------------------------------------------------------------------- writing

_DTYPE_POLICY = {"module": "keras", "class_name": "DTypePolicy",
                 "config": {"name": "float32"}, "registered_name": None}


def _init(class_name, **config):
    return {"module": "keras.initializers", "class_name": class_name, "config": config,
            "registered_name": None}


_GLOROT = _init("GlorotUniform", seed=None, input_axes=None, output_axes=None)
_REGULARIZED = {"kernel_regularizer": None, "bias_regularizer": None,
                "kernel_constraint": None, "bias_constraint": None}

# Keras 3.15's get_config() of each class with its defaults: the keys Keras accepts back.
_LAYER_TEMPLATES = {
    "InputLayer": {"batch_shape": None, "dtype": "float32", "sparse": False, "ragged": False,
                   "name": "input_layer", "optional": False},
    "LSTM": {"name": "lstm", "trainable": True, "dtype": _DTYPE_POLICY,
             "return_sequences": False, "return_state": False, "go_backwards": False,
             "stateful": False, "unroll": False, "zero_output_for_mask": False, "units": 1,
             "activation": "tanh", "recurrent_activation": "sigmoid", "use_bias": True,
             "kernel_initializer": _GLOROT,
             "recurrent_initializer": _init("Orthogonal", seed=None, gain=1.0),
             "bias_initializer": _init("Zeros"), "unit_forget_bias": True,
             "kernel_regularizer": None, "recurrent_regularizer": None,
             "bias_regularizer": None, "activity_regularizer": None,
             "kernel_constraint": None, "recurrent_constraint": None,
             "bias_constraint": None, "dropout": 0.0, "recurrent_dropout": 0.0,
             "seed": None},
    "Dense": {"name": "dense", "trainable": True, "dtype": _DTYPE_POLICY, "units": 1,
              "activation": "linear", "use_bias": True, "kernel_initializer": _GLOROT,
              "bias_initializer": _init("Zeros"), **_REGULARIZED,
              "quantization_config": None},
    "Dropout": {"name": "dropout", "trainable": True, "dtype": _DTYPE_POLICY, "rate": 0.5,
                "seed": None, "noise_shape": None},
    "Embedding": {"name": "embedding", "trainable": True, "dtype": _DTYPE_POLICY,
                  "input_dim": 1, "output_dim": 1,
                  "embeddings_initializer": _init("RandomUniform", seed=None, minval=-0.05,
                                                  maxval=0.05),
                  "embeddings_regularizer": None, "activity_regularizer": None,
                  "embeddings_constraint": None, "mask_zero": False,
                  "quantization_config": None},
    "Bidirectional": {"name": "bidirectional", "trainable": True, "dtype": _DTYPE_POLICY,
                      "merge_mode": "concat"},
}
_OPTIMIZER_BASE = {"name": None, "learning_rate": 0.001, "weight_decay": None,
                   "clipnorm": None, "global_clipnorm": None, "clipvalue": None,
                   "use_ema": False, "ema_momentum": 0.99, "ema_overwrite_frequency": None,
                   "loss_scale_factor": None, "gradient_accumulation_steps": None}
_OPTIMIZER_TEMPLATES = {
    "SGD": {**_OPTIMIZER_BASE, "name": "sgd", "learning_rate": 0.01, "momentum": 0.0,
            "nesterov": False},
    "Adam": {**_OPTIMIZER_BASE, "name": "adam", "beta_1": 0.9, "beta_2": 0.999,
             "epsilon": 1e-07, "amsgrad": False},
    "AdamW": {**_OPTIMIZER_BASE, "name": "adam_w", "weight_decay": 0.004, "beta_1": 0.9,
              "beta_2": 0.999, "epsilon": 1e-07, "amsgrad": False},
    "RMSprop": {**_OPTIMIZER_BASE, "name": "rm_sprop", "rho": 0.9, "momentum": 0.0,
                "epsilon": 1e-07, "centered": False},
}
_LOSS_TEMPLATES = {
    "MeanSquaredError": {"name": "mean_squared_error", "reduction": "sum_over_batch_size"},
    "MeanAbsoluteError": {"name": "mean_absolute_error", "reduction": "sum_over_batch_size"},
    "Huber": {"name": "huber_loss", "reduction": "sum_over_batch_size", "delta": 1.0},
    "BinaryCrossentropy": {"name": "binary_crossentropy", "reduction": "sum_over_batch_size",
                           "from_logits": False, "label_smoothing": 0.0, "axis": -1},
    "CategoricalCrossentropy": {"name": "categorical_crossentropy",
                                "reduction": "sum_over_batch_size", "from_logits": False,
                                "label_smoothing": 0.0, "axis": -1},
    "SparseCategoricalCrossentropy": {"name": "sparse_categorical_crossentropy",
                                      "reduction": "sum_over_batch_size",
                                      "from_logits": False, "ignore_class": None},
}


def _plain(value):
    """A JSON-ready copy: tuples -> lists, NumPy scalars and arrays -> Python values."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value


def _merged(template, config, skip=()):
    """The template (Keras's keys and defaults) with the config's values for its keys."""
    out = copy.deepcopy(template)
    for key in template:
        if key in config and key not in skip:
            out[key] = _plain(config[key])
    return out


def _serialized(module, class_name, config, build_shape=None):
    entry = {"module": module, "class_name": class_name, "config": config,
             "registered_name": None}
    if build_shape is not None:
        entry["build_config"] = {"input_shape": list(build_shape)}
    return entry


def _inner_config(value):
    """The config dict of a Bidirectional's wrapped layer, however get_config gave it."""
    if hasattr(value, "get_config"):
        return value.get_config()
    if isinstance(value, dict) and isinstance(value.get("config"), dict):
        return value["config"]
    return value if isinstance(value, dict) else {}


def _strip(name, prefix):
    return name[len(prefix):] if name.startswith(prefix) else name


def _keras_layer(layer, build_shape):
    """One layer as Keras 3 serializes it."""
    class_name = type(layer).__name__
    if class_name not in _LAYER_TEMPLATES or class_name == "InputLayer":
        raise ValueError(f"layer {getattr(layer, 'name', '?')!r} is a {class_name}, which "
                         "cannot be written to a .keras file")
    config = layer.get_config()
    out = _merged(_LAYER_TEMPLATES[class_name], config)
    out["name"] = layer.name
    if class_name == "Bidirectional":
        forward_config = _inner_config(getattr(layer, "forward_layer", None)
                                       or config.get("layer"))
        backward_config = _inner_config(getattr(layer, "backward_layer", None)
                                        or config.get("backward_layer") or forward_config)
        base = _strip(_strip(forward_config.get("name", "lstm"), "forward_"), "backward_")
        for key, inner, backwards in (("layer", forward_config, False),
                                      ("backward_layer", backward_config, True)):
            inner_out = _merged(_LAYER_TEMPLATES["LSTM"], inner, skip=("name",))
            inner_out["name"] = f"{'backward' if backwards else 'forward'}_{base}"
            inner_out["go_backwards"] = backwards
            inner_out["zero_output_for_mask"] = bool(inner_out["return_sequences"])
            out[key] = _serialized("keras.layers", "LSTM", inner_out, build_shape)
    return _serialized("keras.layers", class_name, out, build_shape)


def _model_config(model):
    """serialize_keras_object(model) as Keras 3 writes it."""
    from . import layers as klayers
    try:
        base = model.get_config()
    except (AttributeError, ValueError, TypeError):
        base = {}
    entries_in = base.get("layers") or []
    input_config = {}
    if entries_in and entries_in[0].get("class_name") == "InputLayer":
        input_config = entries_in[0].get("config") or {}
    layers = [layer for layer in model.layers if not isinstance(layer, klayers.InputLayer)]
    shape = base.get("build_input_shape") or input_config.get("batch_shape")
    input_shape = None
    if shape is not None:
        stateful = any(getattr(layer, "stateful", False) for layer in layers)
        input_shape = [int(shape[0]) if stateful and shape[0] is not None else None] + [
            None if d is None else int(d) for d in list(shape)[1:]]
    entries = []
    if input_shape is not None:
        dtype = input_config.get("dtype")
        entries.append(_serialized("keras.layers", "InputLayer", {
            **_LAYER_TEMPLATES["InputLayer"], "batch_shape": input_shape,
            "dtype": dtype if isinstance(dtype, str) else "float32",
            "name": input_config.get("name") or "input_layer"}))
    shape = input_shape
    for layer in layers:
        entries.append(_keras_layer(layer, shape))
        if shape is not None:
            shape = [shape[0]] + [None if d is None else int(d)
                                  for d in layer.compute_output_shape(tuple(shape[1:]))]
    config = {"name": model.name, "trainable": bool(getattr(model, "trainable", True)),
              "dtype": _DTYPE_POLICY, "layers": entries}
    if input_shape is not None:
        config["build_input_shape"] = input_shape
    out = {"module": "keras", "class_name": "Sequential", "config": config,
           "registered_name": None}
    if input_shape is not None:
        out["build_config"] = {"input_shape": input_shape}
    out["compile_config"] = _compile_config(model)
    return out


def _compile_config(model):
    """Keras 3's compile_config of a compiled model ({} when not compiled)."""
    optimizer = getattr(model, "optimizer", None)
    loss = getattr(model, "loss", None)
    if optimizer is None or loss is None:
        return {}
    opt_class = type(optimizer).__name__
    if opt_class not in _OPTIMIZER_TEMPLATES:
        raise ValueError(f"optimizer {opt_class} cannot be written to a .keras file")
    opt_config = _merged(_OPTIMIZER_TEMPLATES[opt_class], optimizer.get_config())
    if isinstance(loss, str):
        loss_entry = loss
    else:
        loss_class = type(loss).__name__
        if loss_class not in _LOSS_TEMPLATES:
            raise ValueError(f"loss {loss_class} cannot be written to a .keras file")
        loss_entry = _serialized("keras.losses", loss_class,
                                 _merged(_LOSS_TEMPLATES[loss_class], loss.get_config()))
    metrics = getattr(model, "compiled_metrics", None)
    if metrics is not None:
        metrics = [m if isinstance(m, str) else getattr(m, "name", str(m)) for m in metrics]
    return {"optimizer": _serialized("keras.optimizers", opt_class, opt_config),
            "loss": loss_entry, "loss_weights": None, "metrics": metrics or None,
            "weighted_metrics": None, "run_eagerly": False, "steps_per_execution": 1,
            "jit_compile": False}


def _vars_group(f, path, name):
    group = f.require_group(f"{path}/vars" if path else "vars")
    group.attrs["name"] = name
    return group


def _write_weights(h5py, f, model):
    """The Keras 3 weights layout of `model` into the open h5py.File `f`."""
    _vars_group(f, "", model.name)
    f.require_group("layers")
    for key, layer in _weighted_layers(model):
        base = f"layers/{key}"
        _vars_group(f, base, layer.name)
        weights = layer.get_weights()
        kind = type(layer).__name__
        if kind == "LSTM":
            cell = _vars_group(f, f"{base}/cell", "lstm_cell")
            for i, w in enumerate(weights):
                cell.create_dataset(str(i), data=w)
        elif kind == "Bidirectional":
            half = len(weights) // 2
            for side, part in (("forward", weights[:half]), ("backward", weights[half:])):
                _vars_group(f, f"{base}/{side}_layer", f"{side}_{layer.name}")
                cell = _vars_group(f, f"{base}/{side}_layer/cell", "lstm_cell")
                for i, w in enumerate(part):
                    cell.create_dataset(str(i), data=w)
        else:
            group = f[f"{base}/vars"]
            for i, w in enumerate(weights):
                group.create_dataset(str(i), data=w)
    optimizer = getattr(model, "optimizer", None)
    if optimizer is not None and getattr(model, "loss", None) is not None:
        group = _vars_group(f, "optimizer", getattr(optimizer, "name", "optimizer"))
        for i, value in enumerate(_optimizer_variables(model, optimizer)):
            group.create_dataset(str(i), data=value)


def _slot_names(class_name, config):
    """Keras 3's optimizer slots: (names interleaved per variable, names appended after,
    one full list per name), as its build() creates them."""
    if class_name == "SGD":
        return (["momentum"] if config.get("momentum") else []), []
    if class_name in ("Adam", "AdamW"):
        return ["momentum", "velocity"], (["velocity_hat"] if config.get("amsgrad") else [])
    if class_name == "RMSprop":
        after = (["momentum"] if config.get("momentum") else []) + (
            ["average_gradient"] if config.get("centered") else [])
        return ["velocity"], after
    return [], []


def _optimizer_variables(model, optimizer):
    """Keras 3's optimizer variables: iterations, learning_rate, then the slots of the
    trainable weights (in Keras's order, which is the order the optimizer first saw them).
    Before the first step every slot is zero, exactly Keras's state. If the slots cannot
    be had, only the first two are written and Keras starts the slots afresh (it warns)."""
    iterations = int(getattr(optimizer, "iterations", 0))
    values = [np.asarray(iterations, np.int64),
              np.asarray(getattr(optimizer, "learning_rate", 0.0), np.float32)]
    interleaved, after = _slot_names(type(optimizer).__name__, optimizer.get_config())
    weights = [w for _, layer in _weighted_layers(model) if getattr(layer, "trainable", True)
               for w in layer.get_weights()]
    slot = getattr(optimizer, "slot", None)
    if iterations and slot is None:
        return values

    def value(name, i, w):
        if not iterations:
            return np.zeros_like(w)
        return np.asarray(slot(name, i), dtype=w.dtype).reshape(w.shape)
    try:
        slots = []
        for i, w in enumerate(weights):
            slots.extend(value(name, i, w) for name in interleaved)
        for name in after:
            slots.extend(value(name, i, w) for i, w in enumerate(weights))
    except (ValueError, KeyError, IndexError):
        return values
    return values + slots


def _weights_bytes(model):
    h5py = _h5py()
    buffer = io.BytesIO()
    with h5py.File(buffer, "w") as f:
        _write_weights(h5py, f, model)
    return buffer.getvalue()


def _atomic_write(path, data):
    """Write bytes to a temp file in the same folder, then rename it over `path`."""
    tmp = f"{path}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        with open(tmp, "xb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def _zip_bytes(members):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as zf:
        for name, data in members:
            zf.writestr(name, data)
    return buffer.getvalue()


def save_model(model, path):
    """Write `model` as a Keras 3 `.keras` file (config, compile settings and weights).

    keras.saving.load_model reads it back to the same predictions. Written atomically:
    a temp file in the same folder, then renamed over `path`.

    Parameters
    ----------
    model : Sequential
        The model to save.
    path : str, bytes or os.PathLike
        The file to write; it must end in ".keras".

    Raises
    ------
    ValueError
        If path does not end in ".keras".
    TypeError
        If path is not a str, bytes or os.PathLike.
    ImportError
        If h5py is not installed (the weights are HDF5).
    """
    path = _fspath(path)
    if not path.endswith(".keras"):
        raise ValueError(f"path must end in '.keras' (the Keras 3 format), got {path!r}")
    config = json.dumps(_model_config(model))
    metadata = json.dumps({"keras_version": KERAS_VERSION,
                           "date_saved": datetime.datetime.now().strftime("%Y-%m-%d@%H:%M:%S"),
                           "saved_by": "fastlstm.keras"})
    weights = _weights_bytes(model)
    _atomic_write(path, _zip_bytes([(METADATA_NAME, metadata.encode()),
                                    (CONFIG_NAME, config.encode()),
                                    (WEIGHTS_NAME, weights)]))


def save_weights(model, path):
    """Write the model's weights as a Keras 3 `.weights.h5` file.

    keras's model.load_weights reads it into the same model built in Keras. Written
    atomically (a temp file, then renamed over `path`).

    Parameters
    ----------
    model : Sequential
        A built model.
    path : str, bytes or os.PathLike
        The file to write; it must end in ".weights.h5".

    Raises
    ------
    ValueError
        If path does not end in ".weights.h5" or the model is not built.
    TypeError
        If path is not a str, bytes or os.PathLike.
    ImportError
        If h5py is not installed.
    """
    path = _fspath(path)
    if not path.endswith(".weights.h5"):
        raise ValueError(f"path must end in '.weights.h5', got {path!r}")
    if not getattr(model, "built", True):
        raise ValueError("save_weights: the model is not built yet, so it has no weights: "
                         "build it first (model.build(input_shape), an Input first layer, "
                         "or a call on data)")
    _atomic_write(path, _weights_bytes(model))
