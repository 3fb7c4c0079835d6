"""Weights: torch names and shapes, initialisation, framework converters, .npz files.

fastlstm's one internal layout is torch.nn.LSTM's: per layer k and direction
suffix s ("" or "_reverse"), weight_ih_l{k}{s} (4H, I_k), weight_hh_l{k}{s} (4H, H),
bias_ih_l{k}{s} and bias_hh_l{k}{s} (4H), gate rows in order i, f, g, o.
Converters to other layouts live here, at the edge, and nowhere else.
"""
import json
import os
import zipfile

import numpy as np

DIRECTION_SUFFIXES = ("", "_reverse")  # direction 0 runs forward in time, 1 backward
FORMAT_NAME = "fastlstm"
FORMAT_VERSION = 1
CONFIG_KEY = "__fastlstm__"


def param_name(kind, layer, direction):
    """torch's name of one parameter: kind is weight_ih, weight_hh, bias_ih or bias_hh."""
    return f"{kind}_l{layer}{DIRECTION_SUFFIXES[direction]}"


def layer_param_names(layer, direction, bias):
    """(weight_ih, weight_hh, bias_ih, bias_hh) names of one layer and direction; the
    bias names are None without bias."""
    kinds = ("weight_ih", "weight_hh") + (("bias_ih", "bias_hh") if bias else ())
    names = tuple(param_name(kind, layer, direction) for kind in kinds)
    return names + (None, None) if not bias else names


def param_shapes(input_size, hidden_size, num_layers, bias, bidirectional):
    """{name: shape} in torch.nn.LSTM's state_dict order."""
    G, H = 4 * hidden_size, hidden_size
    D = 2 if bidirectional else 1
    shapes = {}
    for k in range(num_layers):
        in_k = input_size if k == 0 else D * H
        for d in range(D):
            w_ih, w_hh, b_ih, b_hh = layer_param_names(k, d, bias)
            shapes[w_ih] = (G, in_k)
            shapes[w_hh] = (G, H)
            if bias:
                shapes[b_ih] = (G,)
                shapes[b_hh] = (G,)
    return shapes


def flat_views(flat, shapes):
    """{name: view of `flat`}: the parameters laid end to end in `shapes`' order, each a
    C-contiguous view into the one flat array (so an optimizer can work on `flat`)."""
    views, start = {}, 0
    for name, shape in shapes.items():
        size = int(np.prod(shape))
        views[name] = flat[start:start + size].reshape(shape)
        start += size
    return views


def flat_size(shapes):
    return sum(int(np.prod(shape)) for shape in shapes.values())


def init_params(shapes, hidden_size, dtype, seed):
    """torch's init: every parameter ~ U(-1/sqrt(H), 1/sqrt(H)), reproducible from seed."""
    rng = np.random.default_rng(seed)
    k = 1.0 / np.sqrt(hidden_size)
    return {name: rng.uniform(-k, k, size=shape).astype(dtype) for name, shape in shapes.items()}


def to_numpy(value, name):
    """ndarray from an ndarray, a torch tensor (even one that requires grad) or a list."""
    if hasattr(value, "detach") and hasattr(value, "cpu"):  # torch.Tensor, duck-typed
        value = value.detach().cpu().numpy()
    try:
        arr = np.asarray(value)
    except Exception as exc:
        raise TypeError(f"{name} must be array-like, got {type(value).__name__}: {exc}") from None
    if arr.dtype.kind not in "fiu":
        raise TypeError(f"{name} must hold real numbers (float or int), got dtype {arr.dtype}")
    return arr


# --- Keras: kernel (I, 4H), recurrent_kernel (H, 4H), one bias (4H); gates i, f, c, o ---

def from_keras_weights(kernel, recurrent_kernel, bias=None):
    """torch-layout (weight_ih, weight_hh, bias_ih, bias_hh) from one Keras LSTM layer.

    Keras has one bias; it goes to bias_ih and bias_hh is zero (only the sum matters).
    bias=None (a Keras layer built with use_bias=False) gives bias None.
    """
    kernel = to_numpy(kernel, "kernel")
    recurrent_kernel = to_numpy(recurrent_kernel, "recurrent_kernel")
    if kernel.ndim != 2 or kernel.shape[1] % 4 or kernel.shape[1] == 0:
        raise ValueError(f"kernel must have shape (input_size, 4*units), got {kernel.shape}")
    units = kernel.shape[1] // 4
    if recurrent_kernel.shape != (units, 4 * units):
        raise ValueError(f"recurrent_kernel must have shape {(units, 4 * units)} to match "
                         f"kernel {kernel.shape}, got {recurrent_kernel.shape}")
    w_ih, w_hh = kernel.T, recurrent_kernel.T  # Keras gate order i,f,c,o is torch's i,f,g,o
    if bias is None:
        return w_ih, w_hh, None, None
    bias = to_numpy(bias, "bias")
    if bias.shape != (4 * units,):
        raise ValueError(f"bias must have shape {(4 * units,)}, got {bias.shape}")
    return w_ih, w_hh, bias, np.zeros_like(bias)


def to_keras_weights(weight_ih, weight_hh, bias_ih=None, bias_hh=None):
    """[kernel, recurrent_kernel, bias] as Keras' layer.set_weights wants (bias only if any)."""
    weights = [np.ascontiguousarray(weight_ih.T), np.ascontiguousarray(weight_hh.T)]
    if bias_ih is not None:
        weights.append(bias_ih + bias_hh)
    return weights


# --- ONNX LSTM operator: W (D, 4H, I), R (D, 4H, H), B (D, 8H); gates i, o, f, c ---

TORCH_TO_ONNX_GATES = [0, 3, 1, 2]  # ONNX block j holds torch gate block TORCH_TO_ONNX_GATES[j]


def to_onnx_weights(weight_ih, weight_hh, bias_ih=None, bias_hh=None):
    """(W, R, B) for one direction of the ONNX LSTM operator, each with a leading D=1 axis.

    B is [Wb, Rb] (input and recurrent biases), zeros when the model has no bias.
    """
    def reorder(a):
        blocks = np.split(a, 4, axis=0)
        return np.concatenate([blocks[j] for j in TORCH_TO_ONNX_GATES], axis=0)
    if bias_ih is None:
        bias_ih = np.zeros(weight_ih.shape[0], weight_ih.dtype)
        bias_hh = bias_ih
    return (reorder(weight_ih)[None], reorder(weight_hh)[None],
            np.concatenate([reorder(bias_ih), reorder(bias_hh)])[None])


# --- torch: infer the module's configuration from its state dict ---

def config_from_state_dict(state):
    """LSTM constructor arguments implied by a torch.nn.LSTM state dict's names and shapes."""
    if "weight_ih_l0" not in state or "weight_hh_l0" not in state:
        raise ValueError("state dict must hold torch.nn.LSTM weights (weight_ih_l0, "
                         f"weight_hh_l0, ...), got keys {sorted(state)[:8]}")
    if any(name.startswith("weight_hr_l") for name in state):
        raise ValueError("LSTMs with proj_size > 0 (weight_hr_l* entries) are not supported")
    w_ih = to_numpy(state["weight_ih_l0"], "weight_ih_l0")
    w_hh = to_numpy(state["weight_hh_l0"], "weight_hh_l0")
    if w_ih.ndim != 2 or w_hh.ndim != 2:
        raise ValueError("weight_ih_l0 and weight_hh_l0 must be 2-D, "
                         f"got shapes {w_ih.shape} and {w_hh.shape}")
    if w_hh.shape[0] != 4 * w_hh.shape[1]:
        raise ValueError(f"weight_hh_l0 has shape {w_hh.shape}: an LSTM's has 4*hidden_size "
                         "rows (4 gates); these are not an LSTM's weights (a GRU has 3)")
    num_layers = 0
    while param_name("weight_ih", num_layers, 0) in state:
        num_layers += 1
    return dict(input_size=int(w_ih.shape[1]), hidden_size=int(w_hh.shape[1]),
                num_layers=num_layers, bias="bias_ih_l0" in state,
                bidirectional="weight_ih_l0_reverse" in state)


# --- .npz files: config as JSON plus the weights under their torch names ---

def save_npz(path, config, weights):
    """Write config + weights; a path is written atomically (temp file, then rename)."""
    header = json.dumps({"format": FORMAT_NAME, "version": FORMAT_VERSION, "config": config})
    arrays = {CONFIG_KEY: np.array(header), **weights}
    if isinstance(path, bytes):
        path = os.fsdecode(path)
    if not isinstance(path, (str, os.PathLike)):
        if not hasattr(path, "write"):
            raise TypeError("path must be a str, bytes or os.PathLike path, or a binary file "
                            f"opened for writing, got {type(path).__name__}")
        np.savez(path, **arrays)
        return
    path = os.fspath(path)
    tmp = f"{path}.tmp-{os.getpid()}"
    try:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


# A file is checked against itself before anything it asks for is allocated: every
# member's .npy header must describe exactly the bytes the member holds, and a member
# may not claim more bytes than its compressed data can hold (deflate expands at most
# about 1032:1), so a small file can never make us allocate a large array.
MAX_EXPANSION = 1100
MAX_CONFIG_BYTES = 1 << 20
NPY_MAGIC = b"\x93NUMPY"


class ModelFile:
    """An .npz model file, opened and checked against itself: the JSON header read and
    every weight's name, shape and dtype known from its .npy header, no weight read yet.

    Every problem with the file raises ValueError (FileNotFoundError if it is missing).
    Use as a context manager; `read(name)` reads one weight.
    """

    def __init__(self, path):
        self.where = path if isinstance(path, (str, bytes, os.PathLike)) else "the given file"
        self._zip = None
        try:
            self._open(path)
        except FileNotFoundError:
            raise
        except (ValueError, OSError, EOFError, KeyError, zipfile.BadZipFile,
                UnicodeDecodeError) as exc:
            self.close()
            raise self.error(f"it is not a readable fastlstm model file: {exc}") from None
        except BaseException:
            self.close()
            raise

    def error(self, what):
        return ValueError(f"path {self.where!r}: {what}")

    def _open(self, path):
        if isinstance(path, bytes):
            path = os.fsdecode(path)
        if isinstance(path, (str, os.PathLike)):
            with open(path, "rb") as f:
                start = f.read(len(NPY_MAGIC))
        else:
            start = b""
        if start == NPY_MAGIC:
            raise ValueError("it holds a single array, not an .npz archive")
        self._zip = zipfile.ZipFile(path)
        self._members = {}  # name -> (ZipInfo, shape, dtype)
        for info in self._zip.infolist():
            if not info.filename.endswith(".npy"):
                raise ValueError(f"entry {info.filename!r} is not an .npy array")
            name = info.filename[:-4]
            if name in self._members:
                raise ValueError(f"entry {name!r} appears twice")
            self._members[name] = self._member_header(info)
        if CONFIG_KEY not in self._members:
            raise ValueError(f"it has no {CONFIG_KEY!r} entry "
                             f"(entries: {list(self._members)[:6]})")
        self.header = self._read_header()
        self.shapes = {n: m[1] for n, m in self._members.items() if n != CONFIG_KEY}

    def _member_header(self, info):
        """(info, shape, dtype) of one member, from its .npy header alone, checked
        against the member's size."""
        if info.file_size > MAX_EXPANSION * info.compress_size + 4096:
            raise ValueError(f"entry {info.filename!r} claims {info.file_size} bytes from "
                             f"{info.compress_size} compressed bytes")
        with self._zip.open(info) as fp:
            major, _ = np.lib.format.read_magic(fp)
            read = (np.lib.format.read_array_header_1_0 if major == 1
                    else np.lib.format.read_array_header_2_0)
            shape, fortran, dtype = read(fp)
            header_len = fp.tell()
        if dtype.hasobject or dtype.kind not in "fiuU":
            raise ValueError(f"entry {info.filename!r} has dtype {dtype}: weights must be "
                             "real numbers")
        count = int(np.prod(shape, dtype=object))
        if count * dtype.itemsize != info.file_size - header_len:
            raise ValueError(f"entry {info.filename!r} declares shape {shape} of {dtype} but "
                             f"holds {info.file_size - header_len} bytes")
        return info, tuple(shape), dtype

    def _read_header(self):
        info, shape, dtype = self._members[CONFIG_KEY]
        if dtype.kind != "U" or shape != () or info.file_size > MAX_CONFIG_BYTES:
            raise ValueError(f"its {CONFIG_KEY!r} entry is not a JSON text")
        header = json.loads(str(self._read_array(info)))
        if not isinstance(header, dict) or header.get("format") != FORMAT_NAME:
            raise ValueError("its header does not describe a fastlstm model")
        if header.get("version") != FORMAT_VERSION:
            raise ValueError(f"it has format version {header.get('version')!r}, "
                             f"this fastlstm reads version {FORMAT_VERSION}")
        if not isinstance(header.get("config"), dict):
            raise ValueError("the model config must be a JSON object")
        return header

    @property
    def config(self):
        return self.header["config"]

    def read(self, name):
        """One member's array (its size was checked when the file was opened)."""
        info, shape, dtype = self._members[name]
        if dtype.kind == "U" and name != CONFIG_KEY:
            raise self.error(f"weight {name!r} has dtype {dtype}: weights must be real numbers")
        try:
            return self._read_array(info)
        except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
            raise self.error(f"weight {name!r} cannot be read: {exc}") from None

    def _read_array(self, info):
        with self._zip.open(info) as fp:
            return np.lib.format.read_array(fp, allow_pickle=False)

    def close(self):
        if self._zip is not None:
            self._zip.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
