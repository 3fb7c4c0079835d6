"""The numba backend's compiled code (imported only when the backend is first used:
importing it imports numba and attaches the on-disk cache).

  activations.py  exp / sigmoid / tanh that vectorise, float32 and float64
  cell.py         one block of hidden units for one step, forward and backward
  atomics.py      atomic load / exchange / add and a spin-wait hint, for entry.py
  entry.py        the cached entry points; a call's work in units any thread may claim
  team.py         the helper threads: the caller starts at once, helpers join when awake
  options.py      compile options and the cache folder
"""
