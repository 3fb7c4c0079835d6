"""Helpers classic Keras programs use: set_random_seed, to_categorical, pad_sequences
(Keras's semantics), and timeseries_windows for forecasting data."""
import numpy as np

from . import random as krandom

__all__ = ["set_random_seed", "to_categorical", "pad_sequences", "timeseries_windows"]


def set_random_seed(seed):
    """Seed fastlstm.keras's one random generator (keras.utils.set_random_seed).

    The same seed gives the same initial weights, shuffles and dropout masks, so the same
    training result. Affects what is created or drawn after the call.

    Parameters
    ----------
    seed : int
        A non-negative int.

    Raises
    ------
    ValueError
        If seed is not a non-negative int.
    """
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (int, np.integer)) \
            or seed < 0:
        raise ValueError(f"set_random_seed: seed must be a non-negative int, got {seed!r}")
    krandom.set_seed(int(seed))


def to_categorical(x, num_classes=None):
    """Class ids -> one-hot rows (keras.utils.to_categorical).

    Parameters
    ----------
    x : array_like of int
        Class ids: whole numbers in [0, num_classes).
    num_classes : int, optional
        The number of classes; default max(x) + 1.

    Returns
    -------
    ndarray of float32
        Shape x.shape + (num_classes,), a trailing dim of 1 of x dropped first.

    Raises
    ------
    TypeError
        If x does not hold numbers.
    ValueError
        If an id is not a whole number, is negative or is >= num_classes, or num_classes
        is not a positive int.
    """
    arr = np.asarray(x)
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"to_categorical: x must hold integer class ids, got dtype {arr.dtype}")
    if arr.dtype.kind == "f" and not np.all(np.isfinite(arr) & (arr == np.round(arr))):
        raise ValueError("to_categorical: x must hold whole-number class ids")
    ids = arr.astype(np.int64)
    if num_classes is not None and (isinstance(num_classes, (bool, np.bool_))
                                    or not isinstance(num_classes, (int, np.integer))
                                    or num_classes < 1):
        raise ValueError(f"to_categorical: num_classes must be a positive int, got "
                         f"{num_classes!r}")
    if ids.size and ids.min() < 0:
        raise ValueError(f"to_categorical: class ids must be >= 0, got {ids.min()}")
    if num_classes is None:
        num_classes = int(ids.max()) + 1 if ids.size else 0
    elif ids.size and ids.max() >= num_classes:
        raise ValueError(f"to_categorical: class id {ids.max()} is out of range for "
                         f"num_classes={num_classes}")
    shape = ids.shape
    if len(shape) > 1 and shape[-1] == 1:
        shape = shape[:-1]
    flat = ids.reshape(-1)
    out = np.zeros((flat.size, int(num_classes)), np.float32)
    out[np.arange(flat.size), flat] = 1
    return out.reshape(shape + (int(num_classes),))


def pad_sequences(sequences, maxlen=None, dtype="int32", padding="pre", truncating="pre",
                  value=0.0):
    """Pad (or cut) sequences to one length (keras.utils.pad_sequences).

    Parameters
    ----------
    sequences : list of sequences
        Lists or arrays; their items may be vectors of one shape.
    maxlen : int, optional
        The length (default: the longest).
    dtype : str or dtype, default "int32"
        The output's dtype.
    padding : "pre" or "post", default "pre"
        Where the `value`s go.
    truncating : "pre" or "post", default "pre"
        Which end of a longer sequence is cut.
    value : scalar, default 0.0
        The padding value.

    Returns
    -------
    ndarray
        Shape (len(sequences), maxlen, *item shape), of `dtype`.

    Raises
    ------
    ValueError
        If sequences is not a list of sequences, padding, truncating or maxlen is
        invalid, a string value does not fit dtype, or items' shapes differ.
    """
    if not hasattr(sequences, "__len__"):
        raise ValueError("pad_sequences: sequences must be a list of sequences")
    if padding not in ("pre", "post"):
        raise ValueError(f"pad_sequences: padding must be 'pre' or 'post', got {padding!r}")
    if truncating not in ("pre", "post"):
        raise ValueError(f"pad_sequences: truncating must be 'pre' or 'post', got "
                         f"{truncating!r}")
    if maxlen is not None and (isinstance(maxlen, (bool, np.bool_))
                               or not isinstance(maxlen, (int, np.integer)) or maxlen < 0):
        raise ValueError(f"pad_sequences: maxlen must be an int >= 0 or None, got {maxlen!r}")
    lengths, sample_shape, found = [], (), False
    for k, seq in enumerate(sequences):
        try:
            lengths.append(len(seq))
        except TypeError:
            raise ValueError(f"pad_sequences: sequences must be a list of sequences; item "
                             f"{k} is {seq!r}") from None
        if not found and len(seq):
            sample_shape = np.asarray(seq).shape[1:]
            found = True
    if maxlen is None:
        maxlen = max(lengths) if lengths else 0
    maxlen = int(maxlen)
    is_str = np.issubdtype(np.dtype(dtype), np.str_) if dtype is not object else True
    if isinstance(value, str) and not is_str:
        raise ValueError(f"pad_sequences: dtype {dtype!r} cannot hold the string value "
                         f"{value!r}: pass dtype=object or a string dtype")
    out = np.full((len(lengths), maxlen) + sample_shape, value, dtype=dtype)
    if maxlen == 0:
        return out
    for k, seq in enumerate(sequences):
        if not len(seq):
            continue
        cut = seq[-maxlen:] if truncating == "pre" else seq[:maxlen]
        cut = np.asarray(cut, dtype=dtype)
        if cut.shape[1:] != sample_shape:
            raise ValueError(f"pad_sequences: item {k} has items of shape {cut.shape[1:]}, "
                             f"unlike the first non-empty sequence's {sample_shape}")
        if padding == "post":
            out[k, :len(cut)] = cut
        else:
            out[k, maxlen - len(cut):] = cut
    return out


def timeseries_windows(series, lookback, horizon=1, dtype="float32"):
    """Sliding windows of a series for forecasting, batch first.

    Parameters
    ----------
    series : array_like, shape (steps,) or (steps, features)
        A 1-D series has 1 feature.
    lookback : int
        The steps each input window holds (>= 1).
    horizon : int, default 1
        The steps to predict after each window (>= 1).
    dtype : str or dtype, default "float32"
        The dtype of x and y.

    Returns
    -------
    x : ndarray, shape (N, lookback, F)
        x[i] = series[i : i+lookback]; N = steps - lookback - horizon + 1.
    y : ndarray, shape (N, F) or (N, horizon, F)
        series[i+lookback] for horizon 1, else series[i+lookback : i+lookback+horizon].
        x and y are contiguous copies of `dtype`.

    Raises
    ------
    TypeError
        If series does not hold numbers.
    ValueError
        If series is not 1-D or 2-D, lookback or horizon is not an int >= 1, the series
        is too short (N < 1), or it holds NaN or inf.
    """
    arr = np.asarray(series)
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"timeseries_windows: series must hold numbers, got dtype {arr.dtype}")
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2:
        raise ValueError(f"timeseries_windows: series must be (steps,) or (steps, features), "
                         f"got shape {np.shape(series)}")
    for key, value in (("lookback", lookback), ("horizon", horizon)):
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) \
                or value < 1:
            raise ValueError(f"timeseries_windows: {key} must be an int >= 1, got {value!r}")
    steps = len(arr)
    n = steps - lookback - horizon + 1
    if n < 1:
        raise ValueError(f"timeseries_windows: a series of {steps} steps is too short for "
                         f"lookback={lookback} and horizon={horizon} (needs at least "
                         f"{lookback + horizon} steps)")
    arr = arr.astype(dtype, copy=False)
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        raise ValueError("timeseries_windows: series holds NaN or inf")
    windows = np.lib.stride_tricks.sliding_window_view(arr, lookback + horizon, axis=0)
    windows = windows[:n].transpose(0, 2, 1)  # (N, lookback + horizon, F)
    x = np.ascontiguousarray(windows[:, :lookback])
    y = np.ascontiguousarray(windows[:, lookback:])
    return x, (y[:, 0] if horizon == 1 else y)
