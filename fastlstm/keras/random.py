"""The one random generator of fastlstm.keras: weight initialisers, dropout masks and
fit's shuffling all draw from it, so `utils.set_random_seed(n)` makes a run repeatable."""
import threading

import numpy as np

_lock = threading.Lock()
_state = {"rng": np.random.default_rng()}


def set_seed(seed):
    """Restart the generator from `seed` (a non-negative int) or from fresh entropy (None)."""
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer))
                             or seed < 0):
        raise TypeError(f"seed must be a non-negative int or None, got {seed!r}")
    with _lock:
        _state["rng"] = np.random.default_rng(seed)


def generator():
    """The current np.random.Generator (replaced, not reseeded, by set_seed)."""
    return _state["rng"]


def child_seed():
    """A fresh int seed drawn from the generator, for objects that keep their own stream
    (each fastlstm.LSTM engine gets one)."""
    with _lock:
        return int(_state["rng"].integers(0, 2**63 - 1))
