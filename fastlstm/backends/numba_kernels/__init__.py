"""The numba backend's compiled code (imported only when the backend is first used:
importing it imports numba and attaches the on-disk cache).

  activations.py  exp / sigmoid / tanh that vectorise, float32 and float64
  cell.py         one block of hidden units for one step, forward and backward
  entry.py        the cached entry points, serial and parallel builds
  options.py      compile options and the cache folder
"""
