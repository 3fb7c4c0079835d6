"""Argument checks shared by the API: each names the argument and what was expected."""
import numbers

import numpy as np

from .params import to_numpy

DTYPES = {"float32": np.dtype(np.float32), "float64": np.dtype(np.float64)}


def positive_int(value, name):
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be a positive int, got {value!r}")
    if value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return int(value)


def boolean(value, name):
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False, got {value!r}")
    return bool(value)


def dropout_rate(value):
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"dropout must be a float in [0, 1), got {value!r}")
    if not 0.0 <= float(value) < 1.0:
        raise ValueError(f"dropout must be a float in [0, 1), got {value!r}")
    return float(value)


def float_dtype(value):
    """np.dtype for 'float32'/'float64' (or the numpy types / dtypes themselves)."""
    try:
        dt = np.dtype(value)
    except TypeError:
        dt = None
    if dt is None or dt.name not in DTYPES:
        raise ValueError(f"dtype must be 'float32' or 'float64', got {value!r}")
    return DTYPES[dt.name]


def seed_value(value):
    if value is None:
        return None
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral) \
            or value < 0:
        raise ValueError(f"seed must be None or a non-negative int, got {value!r}")
    return int(value)


def float_array(value, name, dtype):
    """value as an ndarray of `dtype`; ints and other floats convert, anything else is a TypeError."""
    if type(value) is np.ndarray and value.dtype == dtype:  # the common case, kept cheap
        return value
    return to_numpy(value, name).astype(dtype, copy=False)


def lengths_array(value, T, B):
    """lengths as intp[B] with whole numbers in 1..T; None when every length is T."""
    arr = to_numpy(value, "lengths")
    if arr.ndim != 1 or arr.shape[0] != B:
        raise ValueError(f"lengths must be a 1-D sequence of {B} ints (one per batch entry), "
                         f"got shape {arr.shape}")
    if arr.dtype.kind == "f" and not np.all(np.isfinite(arr) & (arr == np.round(arr))):
        raise ValueError(f"lengths must be whole numbers, got {arr.tolist()}")
    if arr.min() < 1 or arr.max() > T:
        raise ValueError(f"lengths must be in 1..{T} (the number of time steps), "
                         f"got values from {arr.min()} to {arr.max()}")
    arr = arr.astype(np.intp)
    return None if np.all(arr == T) else arr


def state_pair(hx, LD, B, H, dtype, unbatched, name="hx"):
    """(h0, c0) as contiguous (LD, B, H) arrays; zeros when hx is None. `name`: the
    argument's name in messages ("hx": its items are h0 and c0; "state": h and c)."""
    if hx is None:
        zeros = np.zeros((LD, B, H), dtype)
        return zeros, zeros
    items = ("h0", "c0") if name == "hx" else ("h", "c")
    if not isinstance(hx, (tuple, list)) or len(hx) != 2:
        raise TypeError(f"{name} must be a tuple ({items[0]}, {items[1]}) of two arrays, "
                        f"got {type(hx).__name__}")
    h0, c0 = hx
    want = (LD, H) if unbatched else (LD, B, H)
    if (type(h0) is np.ndarray and type(c0) is np.ndarray and h0.dtype == dtype
            and c0.dtype == dtype and h0.shape == want and c0.shape == want
            and not unbatched and h0.flags.c_contiguous and c0.flags.c_contiguous):
        return h0, c0  # the state handed back by the previous call: nothing to do
    out = []
    for i, v in enumerate(hx):
        what = f"{name}[{i}] ({items[i]})"
        arr = float_array(v, what, dtype)
        if arr.shape != want:
            raise ValueError(f"{what} must have shape {want} (num_layers*num_directions, "
                             f"{'' if unbatched else 'batch, '}hidden_size), got {arr.shape}")
        out.append(np.ascontiguousarray(arr.reshape(LD, B, H)))
    return out[0], out[1]
