"""The numba backend: JIT-compiled kernels for machines without the compiled extension.

This adapter lays the weights out for the kernels (once per weights update, through
pack_weights), hands them the packed-sequence layout (sequences.PackedSequences) as it
is, sizes and keeps their scratch (the kernels allocate nothing: entry.py describes the
workspace), and decides whether a call asks the helper threads in (plan). The kernels
are in numba_kernels/ (importing this module imports numba; the registry imports it
only when the backend is used).

Work split, per layer call (entry.py: units of work claimed one at a time):
  the calling thread starts on the call's work at once; helpers (numba_kernels/team.py,
  up to fastlstm.get_num_threads() - 1) join when they wake and take what is left, so
  a sleeping helper never holds a call up (numba's prange did: every region waited for
  its whole team, ~10 ms after an idle pause on a VM). Each step's h W_hh^T and gate
  math run per block of hidden units (all four gate rows of its units, so no exchange
  inside a step), and each thread keeps to its own share of the blocks while their
  owner is there; the input projection x W_ih^T + b is hoisted out of the loop, one GEMM
  over all steps per block; backward's dW_ih, dW_hh and dx are GEMMs over all steps
  after the reverse loop (row chunks fixed by the shape, partial sums added in order).
  Results are bit-identical however many threads took part.
"""
import contextlib
import functools
import threading

import numba
import numpy as np

from .._blas import pin_scipy_blas
from ..threads import get_num_threads
from ._fork import in_forked_child
from .numba_kernels import entry
from .numba_kernels.options import CACHE_DIR, compile_settings  # noqa: F401 (info shows it)
from .numba_kernels.team import team

NAME = "numba"
_blas_guard = pin_scipy_blas()  # numba's np.dot calls scipy's BLAS from every thread

# A helper is asked in when a call has at least this many multiply-adds per step: below
# it the per-step hand-over between two threads costs more than the second one saves.
# A one-step call runs alone. Tests set FORCE to "serial" (alone) or "parallel" (the
# helpers are asked whatever the shape).
MIN_PARALLEL_MACS_PER_STEP = 1 << 18
FORCE = None

FORWARD_WIDTH = None  # tests and tuning: force a block width
BACKWARD_WIDTH = None


def block_width(B, backward=False):
    """Hidden units per block (one matrix product per block and step). One or two rows
    are matrix-vector products, best in wide blocks (64); up to batch 32 OpenBLAS's
    small-matrix kernels, which do not repack W_hh on every call, want narrow ones (32);
    bigger batches are GEMMs that amortise the packing, best in the widest (128)."""
    forced = BACKWARD_WIDTH if backward else FORWARD_WIDTH
    if forced:
        return forced
    return 64 if B <= 2 else 32 if B <= 32 else 128


def blocks(H, width):
    """Bounds of the blocks of `width` units (the last one shorter): block s is units
    bounds[s]:bounds[s+1]. The thread count plays no part: results do not depend on it."""
    return np.append(np.arange(0, H, width), H).astype(np.intp)


class Packed:
    """A layer-direction's weights in the kernels' layouts, per block width."""

    def __init__(self, w_ih, w_hh, b):
        self.w_ih, self.w_hh, self.b = w_ih, w_hh, b
        self._forward = {}
        self._backward = {}

    def forward(self, width):
        """(bounds, W_ih rows, W_hh^T blocks, bias): the gate rows in block order
        (block s: i, f, g, o of its units), and W_hh's rows of each block transposed,
        [H, 4U], one block after another."""
        key = width
        found = self._forward.get(key)
        if found is None:
            H = self.w_hh.shape[1]
            bounds = blocks(H, width)
            rows = np.concatenate([np.arange(k * H + u0, k * H + u1)
                                   for u0, u1 in zip(bounds[:-1], bounds[1:])
                                   for k in range(4)])
            whh_t = np.concatenate([self.w_hh[rows[4 * u0:4 * u1]].T.ravel()
                                    for u0, u1 in zip(bounds[:-1], bounds[1:])])
            # two threads may build the same entry: the first one published wins, and
            # what either thread holds stays valid (nothing published is replaced)
            found = self._forward.setdefault(key, (
                bounds, np.ascontiguousarray(self.w_ih[rows]), whh_t,
                np.ascontiguousarray(self.b[rows])))
        return found

    def backward(self, width):
        """(bounds, W_hh's column blocks [G, U] one after another)."""
        key = width
        found = self._backward.get(key)
        if found is None:
            bounds = blocks(self.w_hh.shape[1], width)
            cols = np.concatenate([self.w_hh[:, u0:u1].ravel()
                                   for u0, u1 in zip(bounds[:-1], bounds[1:])])
            found = self._backward.setdefault(key, (bounds, cols))
        return found


def pack_weights(w_ih, w_hh, b):
    return Packed(w_ih, w_hh, b)


_local = threading.local()  # scratch per Python thread: concurrent calls never share it
# Bytes of scratch a thread keeps for its next calls (all dtypes together). A call that
# needs more gets its own array, freed when the call ends: one big call must not pin
# gigabytes for good.
SCRATCH_BUDGET = 64 << 20


def scratch(n, dtype):
    """A flat scratch array of at least n elements starting on a 64-byte boundary, kept
    for the next call on this thread when it fits SCRATCH_BUDGET: fresh multi-megabyte
    buffers on every call cost page faults (7% of a mid training step). Holds the largest
    size asked for, per dtype, below the budget."""
    held = getattr(_local, "scratch", None)
    if held is None:
        held = _local.scratch = {}
    a = held.get(dtype)
    if a is None or a.size < n:
        itemsize = np.dtype(dtype).itemsize
        raw = np.empty((n + 64 // itemsize) * itemsize, np.uint8)
        start = (-raw.ctypes.data) % 64
        a = raw[start:start + n * itemsize].view(dtype)
        others = sum(v.nbytes for k, v in held.items() if k != dtype)
        if a.nbytes <= SCRATCH_BUDGET:
            if others + a.nbytes > SCRATCH_BUDGET:
                held.clear()
            held[dtype] = a
    return a


def plan(T, B, H):
    """(helpers?, threads, block width) for one layer call: whether the helpers are
    asked in, and how many threads may take part."""
    nt = 1 if in_forked_child() else min(get_num_threads(), numba.config.NUMBA_NUM_THREADS)
    parallel = nt > 1 and T > 1 and B * 4 * H * H >= MIN_PARALLEL_MACS_PER_STEP
    if FORCE is not None:
        parallel = FORCE == "parallel" and nt > 1
    return parallel, nt if parallel else 1, block_width(B)


_called = set()  # (kernel, dtype) already compiled or loaded in this process


def _run(fn, nt, args):
    """fn on this thread, helped by the team when nt > 1; the first call of a kernel per
    dtype (which compiles or loads it) runs alone, under the compile settings."""
    key = (fn, args[0].dtype)
    with _blas_guard or _NO_GUARD:
        if key not in _called:
            with compile_settings():
                fn(*args, 1, 0, _QUIET, 0, 0)
            _called.add(key)
        else:
            team.run(fn, args, nt)


_NO_GUARD = contextlib.nullcontext()
_QUIET = np.zeros(1, np.int64)  # the signal of a call that asks no helper in


def _empty3(dtype):
    return np.empty((0, 0, 0), dtype)


# Workspace sizes and phase tables per call shape: adding up the regions costs
# microseconds, as much as a fifth of a one-step call.
@functools.lru_cache(maxsize=64)
def _forward_work(*shape):
    return entry.workspace_size(entry.forward_regions.py_func(*shape))


@functools.lru_cache(maxsize=64)
def _backward_work(*shape):
    return entry.workspace_size(entry.backward_regions.py_func(*shape))


@functools.lru_cache(maxsize=64)
def _forward_phases(T, nblocks):
    return entry.phase_starts(entry.forward_phases(T, nblocks))


@functools.lru_cache(maxsize=64)
def _backward_phases(T, nblocks, M):
    return entry.phase_starts(entry.backward_phases(T, nblocks, M))


def forward_layer(x, w_ih, w_hh, b, h0, c0, seq, y, h_n, c_n, tape, packed=None):
    T, B, I = x.shape
    H = w_hh.shape[1]
    packed = packed or Packed(w_ih, w_hh, b)
    _, nt, width = plan(T, B, H)
    bounds, wih_p, whh_t, b_p = packed.forward(width)
    if tape is None:
        tg = tc = th = _empty3(x.dtype)
    else:
        tg, tc, th = tape.gates, tape.c, tape.h
    first = _forward_phases(T, len(bounds) - 1)
    ctl = np.zeros(entry.control_size(first, nt), np.int64)
    work = scratch(_forward_work(T, B, I, H, seq.M, nt, min(width, H)), x.dtype)
    _run(entry.forward, nt, (x, seq.perm, seq.batch_sizes, seq.offsets, h0, c0, wih_p, whh_t,
                             b_p, bounds, y, h_n, c_n, tg, tc, th, tape is not None, work,
                             first, ctl))


def backward_layer(tape, x, w_ih, w_hh, dy, dh_n, dc_n, seq, dx, dw_ih, dw_hh, db, dh0,
                   dc0, packed=None):
    T, B, I = x.shape
    H = w_hh.shape[1]
    packed = packed or Packed(w_ih, w_hh, np.zeros(4 * H, w_hh.dtype))
    _, nt, _ = plan(T, B, H)
    width = block_width(B, backward=True)
    bounds, wcols = packed.backward(width)
    first = _backward_phases(T, len(bounds) - 1, seq.M)
    ctl = np.zeros(entry.control_size(first, nt), np.int64)
    work = scratch(_backward_work(T, B, I, H, seq.M, nt, min(width, H)), x.dtype)
    _run(entry.backward, nt, (x, seq.perm, seq.batch_sizes, seq.offsets, w_ih, wcols, bounds,
                              tape.gates, tape.c, tape.h, dy, dh_n, dc_n, dx, dw_ih, dw_hh,
                              db, dh0, dc0, work, first, ctl))
