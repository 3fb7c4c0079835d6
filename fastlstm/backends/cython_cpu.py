"""The compiled backend: a thin adapter from the kernel contract to fastlstm._cy.lstm_cpu.

It packs W_hh once per weights (the API caches the result through pack_weights), builds
the packed-sequence bookkeeping for lengths, allocates the kernels' scratch, and picks
the work split:
  "units"  every thread owns whole hidden units over all rows: its slice of W_hh stays in
           its own cache for the whole sequence (small batches, and any H with enough
           unit blocks to go round);
  "batch"  rows are split as well, for when there are fewer unit blocks than threads.
"""
import numpy as np

from .._blas import pin_scipy_blas
from .._cy import load_extension
from ..threads import get_num_threads

NAME = "cython"
_k = load_extension("lstm_cpu")
if _k is None:  # the registry only imports this module when the extension exists
    raise ImportError("fastlstm._cy.lstm_cpu is not built")
VECTOR_BYTES = _k.vector_bytes()
_blas_guard = pin_scipy_blas()
INT32_MAX = 2 ** 31 - 1

# Tests set this to "units" or "batch" to run one path whatever the shape.
FORCE_PATH = None
# Below this many multiply-adds per step a second thread costs more (one barrier per
# step) than it saves.
MIN_MACS_PER_THREAD = 16384


def _aligned(a):
    """A flat copy of `a` whose data starts on a 64-byte boundary: a vector load that
    straddles two cache lines costs two."""
    raw = np.empty(a.size * a.itemsize + 64, np.uint8)
    start = (-raw.ctypes.data) % 64
    out = raw[start:start + a.size * a.itemsize].view(a.dtype)
    out[:] = a.ravel()
    return out


class Packed:
    """W_hh and b laid out for the kernels (see lstm_cpu.h), built once per weights."""

    def __init__(self, w_hh, b):
        G, H = w_hh.shape
        vl = VECTOR_BYTES // w_hh.itemsize
        nub = -(-H // vl)
        self.w_hh, self.vl, self.nub = w_hh, vl, nub
        padded = np.zeros((4, nub * vl, H), w_hh.dtype)   # [gate, unit, k], units padded
        padded[:, :H] = w_hh.reshape(4, H, H)
        self.wf = _aligned(padded.reshape(4, nub, vl, H).transpose(1, 3, 0, 2))  # [ub][k][g][l]
        bias = np.zeros((4, nub * vl), w_hh.dtype)
        bias[:, :H] = b.reshape(4, H)
        self.bf = _aligned(bias.reshape(4, nub, vl).transpose(1, 0, 2))
        self._wb = None

    @property
    def wb(self):
        """[ub][k][l] = W_hh[k, ub*vl + l], for backward; built on first use."""
        if self._wb is None:
            G, H = self.w_hh.shape
            padded = np.zeros((G, self.nub * self.vl), self.w_hh.dtype)
            padded[:, :H] = self.w_hh
            self._wb = _aligned(padded.reshape(G, self.nub, self.vl).transpose(1, 0, 2))
        return self._wb


def pack_weights(w_ih, w_hh, b):
    return Packed(w_hh, b)


def plan(B, H, nub):
    """(threads, unit groups) for one layer call: the path and its thread grid."""
    nt = get_num_threads()
    macs = B * 4 * H * H
    nt = max(1, min(nt, macs // MIN_MACS_PER_THREAD))
    path = FORCE_PATH or ("units" if nub >= nt else "batch")
    if path == "units" or nt == 1:
        return nt, min(nt, nub)
    # at least two row groups; as many unit groups as divide the team evenly
    return nt, max(d for d in range(1, min(nt - 1, nub) + 1) if nt % d == 0)


def _fits(T, B, I, H):
    # BLAS takes 32-bit sizes and leading dimensions
    return T * B * max(I, 4 * H) <= INT32_MAX


def forward_layer(x, w_ih, w_hh, b, h0, c0, lengths, y, h_n, c_n, tape, packed=None):
    T, B, I = x.shape
    H = w_hh.shape[1]
    if not _fits(T, B, I, H):
        raise NotImplementedError("sizes beyond 32-bit BLAS indexing")
    packed = packed or Packed(w_hh, b)
    seq = None if lengths is None else _k.Sequences(lengths, T)
    M = T * B if seq is None else seq.M
    dt = x.dtype
    xp = None if seq is None else np.empty((M, I), dt)
    nthreads, tu = plan(B, H, packed.nub)
    gates, tc, th = (None, None, None) if tape is None else (tape.gates, tape.c, tape.h)
    with _blas_guard:
        _k.forward(x, w_ih, packed.wf, packed.bf, h0, c0, seq, y, h_n, c_n, gates, tc, th,
                   np.empty((M, 4 * H), dt), xp, np.empty((2, B, H), dt),
                   np.empty((B, H), dt), tu, nthreads)


def backward_layer(tape, x, w_ih, w_hh, dy, dh_n, dc_n, lengths, dx, dw_ih, dw_hh, db, dh0,
                   dc0, packed=None):
    T, B, I = x.shape
    H = w_hh.shape[1]
    if not _fits(T, B, I, H):
        raise NotImplementedError("sizes beyond 32-bit BLAS indexing")
    packed = packed or Packed(w_hh, np.zeros(4 * H, w_hh.dtype))
    seq = None if lengths is None else _k.Sequences(lengths, T)
    M = T * B if seq is None else seq.M
    dt = x.dtype
    xp = hp = dxp = None
    if seq is not None:
        xp, hp, dxp = np.empty((M, I), dt), np.empty((M, H), dt), np.empty((M, I), dt)
    nthreads, tu = plan(B, H, packed.nub)
    with _blas_guard:
        _k.backward(tape.gates, tape.c, tape.h, x, w_ih, packed.wb, dy, dh_n, dc_n, seq, dx,
                    dw_ih, dw_hh, db, dh0, dc0, np.empty((M, 4 * H), dt), xp, hp, dxp,
                    np.empty((B, H), dt), np.empty((B, H), dt), tu, nthreads)
