"""The numba backend: JIT-compiled kernels for machines without the compiled extension.

This adapter lays the weights out for the kernels (once per weights update, through
pack_weights), turns `lengths` into packed-sequence bookkeeping, picks serial or
parallel kernels and the work split, and keeps numba's thread count in step with
fastlstm.set_num_threads. The kernels are in numba_kernels/ (importing this module
imports numba; the registry imports it only when the backend is used).

Work split, per layer call:
  the input projection x W_ih^T + b is one GEMM over all steps (split in row chunks),
  each step's h W_hh^T and gate math run per block of hidden units (a thread owns
  whole units: all four gate rows, so no exchange inside a step), and backward's
  dW_ih, dW_hh, dx are GEMMs over all steps after the reverse loop (row chunks,
  partial sums added at the end).
"""
import os
import threading

import numba
import numpy as np

from .._blas import pin_scipy_blas
from ..threads import get_num_threads
from .numba_kernels import entry
from .numba_kernels.options import CACHE_DIR  # noqa: F401  (shown by fastlstm info)

NAME = "numba"
_blas_guard = pin_scipy_blas()  # numba's np.dot calls scipy's BLAS from every thread

# Below this many multiply-adds per step, the parallel build's region per step (~1.3 us)
# and the split cost more than a second thread saves (measured: see bench/README or the
# closing note of the numba issue). Tests set FORCE to "serial" or "parallel".
MIN_PARALLEL_MACS_PER_STEP = 1 << 16
FORCE = None
# Hidden units are split in groups of this many (a 64-byte vector of float32), so every
# block but the last starts on a whole vector.
UNIT_GROUP = 16

_lock = threading.Lock()  # numba's workqueue layer must not be entered twice at once
_forked = False


def _after_fork_in_child():
    # numba's OpenMP layer aborts a forked child that opens a parallel region
    global _forked
    _forked = True


os.register_at_fork(after_in_child=_after_fork_in_child)


def block_bounds(H, nblk):
    """Unit block edges: nblk blocks of whole UNIT_GROUPs (fewer when H is small)."""
    groups = -(-H // UNIT_GROUP)
    nblk = max(1, min(nblk, groups))
    edges = [min(H, (j * groups // nblk) * UNIT_GROUP) for j in range(nblk + 1)]
    edges[-1] = H
    return np.array(edges, np.intp)


class Packed:
    """A layer-direction's weights in the kernels' layouts, per unit-block split."""

    def __init__(self, w_ih, w_hh, b):
        self.w_ih, self.w_hh, self.b = w_ih, w_hh, b
        self._forward = {}
        self._backward = {}

    def forward(self, nblk):
        """(bounds, W_ih rows, W_hh rows, bias) in block order: block j's gate rows are
        i, f, g, o of its units, contiguous."""
        found = self._forward.get(nblk)
        if found is None:
            H = self.w_hh.shape[1]
            bounds = block_bounds(H, nblk)
            rows = np.concatenate([np.arange(k * H + u0, k * H + u1)
                                   for u0, u1 in zip(bounds[:-1], bounds[1:])
                                   for k in range(4)])
            found = self._forward[nblk] = (bounds, np.ascontiguousarray(self.w_ih[rows]),
                                           np.ascontiguousarray(self.w_hh[rows]),
                                           np.ascontiguousarray(self.b[rows]))
        return found

    def backward(self, nblk):
        """(bounds, W_hh's column blocks [G, U] one after another, flat)."""
        found = self._backward.get(nblk)
        if found is None:
            bounds = block_bounds(self.w_hh.shape[1], nblk)
            cols = np.concatenate([self.w_hh[:, u0:u1].ravel()
                                   for u0, u1 in zip(bounds[:-1], bounds[1:])])
            found = self._backward[nblk] = (bounds, cols)
        return found


def pack_weights(w_ih, w_hh, b):
    return Packed(w_ih, w_hh, b)


_dense = {}


def sequences(T, B, lengths):
    """(perm, nbs, offs): rows sorted by length (longest first), how many are active at
    each step, and where each step's rows start among the packed rows."""
    if lengths is None:
        found = _dense.get((T, B))
        if found is None:
            if len(_dense) > 64:
                _dense.clear()
            found = _dense[(T, B)] = (np.arange(B, dtype=np.intp), np.full(T, B, np.intp),
                                      np.arange(T + 1, dtype=np.intp) * B)
        return found
    perm = np.argsort(-np.asarray(lengths), kind="stable").astype(np.intp)
    nbs = (np.asarray(lengths)[None, :] > np.arange(T)[:, None]).sum(axis=1).astype(np.intp)
    offs = np.zeros(T + 1, np.intp)
    np.cumsum(nbs, out=offs[1:])
    return perm, nbs, offs


def plan(T, B, H):
    """(parallel?, unit blocks, row chunks) for one layer call."""
    nt = 1 if _forked else min(get_num_threads(), numba.config.NUMBA_NUM_THREADS)
    parallel = nt > 1 and B * 4 * H * H >= MIN_PARALLEL_MACS_PER_STEP
    if FORCE is not None:
        parallel = FORCE == "parallel" and not _forked
    if not parallel:
        return False, 1, 1
    return True, nt, nt


def _parallel_guard():
    """numba's workqueue layer (used when no OpenMP or TBB runtime loads) aborts the
    process when two threads enter it at once: serialise calls then."""
    try:
        safe = numba.threading_layer() != "workqueue"
    except ValueError:  # no parallel region has run yet: the layer is not chosen
        safe = False
    return _NO_GUARD if safe else _lock


def _run(fn, parallel, nt, args):
    if not parallel:
        with _blas_guard or _NO_GUARD:
            return fn(*args)
    with _parallel_guard():
        if numba.get_num_threads() != nt:
            numba.set_num_threads(nt)
        with _blas_guard or _NO_GUARD:
            return fn(*args)


class _NoGuard:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


_NO_GUARD = _NoGuard()


def _empty3(dtype):
    return np.empty((0, 0, 0), dtype)


def forward_layer(x, w_ih, w_hh, b, h0, c0, lengths, y, h_n, c_n, tape, packed=None):
    T, B, _ = x.shape
    H = w_hh.shape[1]
    packed = packed or Packed(w_ih, w_hh, b)
    parallel, nblk, nchunks = plan(T, B, H)
    bounds, wih_p, whh_p, b_p = packed.forward(nblk)
    perm, nbs, offs = sequences(T, B, lengths)
    if tape is None:
        tg = tc = th = _empty3(x.dtype)
    else:
        tg, tc, th = tape.gates, tape.c, tape.h
    fn = entry.forward_parallel if parallel else entry.forward_serial
    _run(fn, parallel, nblk, (x, perm, nbs, offs, h0, c0, wih_p, whh_p, b_p, bounds, y, h_n,
                              c_n, tg, tc, th, tape is not None, nchunks))


def backward_layer(tape, x, w_ih, w_hh, dy, dh_n, dc_n, lengths, dx, dw_ih, dw_hh, db, dh0,
                   dc0, packed=None):
    T, B, _ = x.shape
    H = w_hh.shape[1]
    packed = packed or Packed(w_ih, w_hh, np.zeros(4 * H, w_hh.dtype))
    parallel, nblk, nchunks = plan(T, B, H)
    bounds, wcols = packed.backward(nblk)
    perm, nbs, offs = sequences(T, B, lengths)
    fn = entry.backward_parallel if parallel else entry.backward_serial
    _run(fn, parallel, nblk, (x, perm, nbs, offs, w_ih, wcols, bounds, tape.gates, tape.c,
                              tape.h, dy, dh_n, dc_n, dx, dw_ih, dw_hh, db, dh0, dc0, nchunks))
