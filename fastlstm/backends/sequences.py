"""The packed-sequence layout every backend takes: one description, one builder.

A batch of B sequences over T steps, sequence b of length lengths[b] (1..T), is laid
out as torch's PackedSequence: rows sorted longest first (stably), and the real
(step, row) pairs numbered time-major, so the rows active at step t are always a
prefix of the sorted rows and padding is never touched.

    perm[B]          int32  sorted row r is the caller's row perm[r]
    steps[B]         int32  sorted row r's length (non-increasing)
    batch_sizes[T]   int32  rows active at step t: sorted rows r < batch_sizes[t]
    offsets[T+1]     intp   step t's active rows are packed rows offsets[t] + r;
                            offsets[T] = M = sum(lengths)

Dense batches (no lengths, or every length T) get the identity layout, `dense` True and
`lengths` None; their layout is built once per (T, B) and shared. Arrays are read-only:
one layout serves every layer, direction and thread of a call.
"""
import threading

import numpy as np


class PackedSequences:
    """Packed-sequence bookkeeping of one batch (see the module docstring)."""

    __slots__ = ("T", "B", "lengths", "perm", "steps", "batch_sizes", "offsets", "M", "dense")

    def __init__(self, T, B, lengths=None):
        """lengths: intp[B] with values in 1..T, or None when every sequence has T steps."""
        self.T, self.B = int(T), int(B)
        if lengths is not None:
            lengths = np.array(lengths, np.intp)  # a copy: it is frozen below
            if lengths.shape != (B,) or lengths.min() < 1 or lengths.max() > T:
                raise ValueError(f"lengths must be {B} values in 1..{T}, got {lengths!r}")
            if np.all(lengths == T):
                lengths = None
        self.dense = lengths is None
        if self.dense:
            self.lengths = None
            self.perm = np.arange(B, dtype=np.int32)
            self.steps = np.full(B, T, np.int32)
            self.batch_sizes = np.full(T, B, np.int32)
        else:
            self.lengths = lengths
            self.perm = np.argsort(-lengths, kind="stable").astype(np.int32)
            self.steps = lengths[self.perm].astype(np.int32)
            self.batch_sizes = (self.steps[None, :] > np.arange(T)[:, None]).sum(
                axis=1).astype(np.int32)
        self.offsets = np.zeros(T + 1, np.intp)
        np.cumsum(self.batch_sizes, out=self.offsets[1:])
        self.M = int(self.offsets[T])
        for a in (self.lengths, self.perm, self.steps, self.batch_sizes, self.offsets):
            if a is not None:
                a.flags.writeable = False

    def __repr__(self):
        kind = "dense" if self.dense else f"M={self.M}"
        return f"PackedSequences(T={self.T}, B={self.B}, {kind})"


_dense = {}
_dense_lock = threading.Lock()


def packed_sequences(T, B, lengths=None):
    """The layout of a (T, B) batch with these lengths (None: all T); dense layouts are
    built once per (T, B) and shared (they are read-only)."""
    if lengths is not None:
        found = PackedSequences(T, B, lengths)
        if not found.dense:
            return found
    found = _dense.get((T, B))
    if found is None:
        found = PackedSequences(T, B)
        with _dense_lock:
            if len(_dense) >= 64:  # a few recent shapes, not every shape ever seen
                _dense.clear()
            _dense[(T, B)] = found
    return found
