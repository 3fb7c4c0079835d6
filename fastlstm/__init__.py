"""fastlstm: a high-performance LSTM engine for multicore CPUs.

    import fastlstm
    m = fastlstm.LSTM(input_size=8, hidden_size=32, num_layers=2, batch_first=True)
    y, (h_n, c_n) = m(x)                  # x: (batch, steps, 8)
    dx, (dh0, dc0) = m.backward(dy)       # gradients in m.grads

Importing it loads only NumPy: numba, the compiled kernels and GPUs are touched
when a backend that needs them is first used.
"""
from ._version import __version__
from .api import LSTM, PrecisionWarning, load
from .backends import available_backends
from .convert import from_keras, from_torch, to_keras
from .info import show_config
from .threads import get_num_threads, set_num_threads

__all__ = ["LSTM", "PrecisionWarning", "load", "available_backends", "set_num_threads",
           "get_num_threads", "show_config", "from_keras", "to_keras", "from_torch", "__version__"]
