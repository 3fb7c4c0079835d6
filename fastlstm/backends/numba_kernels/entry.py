"""The compiled entry points: forward and backward of one layer-direction, each in a
serial and a parallel build. The two builds share every line of work (the helpers here
and in cell.py) and differ only in `range` vs `prange` over the threads' groups of blocks
and over the weight gradients' row chunks: the parallel one opens one parallel region per
time step (about 1.3 us with numba's OpenMP layer), which only pays when a step has
enough work (numba_cpu.plan decides).

Arguments (prepared by numba_cpu): perm int32[B], nbs int32[T] and offs intp[T+1] are
the packed-sequence layout's perm, batch_sizes and offsets (sequences.py: rows sorted by
length; nbs[t] rows active at step t; their packed rows start at offs[t]; offs[T] = M);
bounds[s]:bounds[s+1] are block s's hidden units (one matrix product per block and
step: blocks are narrow enough for OpenBLAS's small-matrix kernels, which skip packing
W_hh on every call, 2-3x faster at batch 16), and thread j runs the blocks
groups[j]:groups[j+1]. `work` is the caller's scratch: the kernels allocate nothing.

The workspace: one flat array of the call's dtype, allocated by the adapter and reused
across calls. forward_regions and backward_regions are the one description of each
kernel's scratch: the shape of every region, in the order they lie in `work`. The
adapter sums them (workspace_size) to size the array; the kernel cuts them out (carve)
in the same order. Regions of packed rows have no rows for a dense batch (M = T*B): the
kernels then read x, h and dx in place, reshaped.
"""
import math

import numpy as np
from numba import njit, prange

from .cell import (backward_block, copy, forward_block, gather_rows, project,
                   recurrent_grad_block, sum_chunks, weight_grad_chunk, zero)
from .fpenv import flush_denormals, restore_fpenv
from .options import JIT, kernel

# Every region starts a multiple of this many elements into `work` (64 bytes in float32):
# on a cache line when `work` does (the adapter aligns it), as a fresh array would.
ALIGN = 16


@njit(**JIT)
def forward_regions(T, B, I, H, M, ngroups, widest):
    """Shapes of the forward's scratch, in order:
    xw   [M*4H]                    x W_ih^T + b of every packed row: thread j's units
                                   one [M, 4U_j] block after another
    zbuf [ngroups, B*4*widest]     each thread's gate pre-activations of one block
    hs   [2, B, H]                 h_{t-1} and h_t, sorted row order
    cs   [B, H]                    c, sorted row order
    xp   [M, I] (0 rows if dense)  x's packed rows"""
    gathered = M if M != T * B else 0
    return ((M * 4 * H,), (ngroups, B * 4 * widest), (2, B, H), (B, H), (gathered, I))


@njit(**JIT)
def backward_regions(T, B, I, H, M, ngroups, widest, nchunks):
    """Shapes of the backward's scratch, in order:
    dz    [M, G]                    dL/dz of every packed row
    sbuf  [ngroups, B*widest]       each thread's dh of one block, then tanh(c)
    dhs   [B, H], dcs [B, H]        dL/dh and dL/dc flowing back, sorted row order
    pw_ih [nchunks, G, I], pw_hh [nchunks, G, H], pdb [nchunks, G]
                                    each row chunk's partial dW_ih, dW_hh, db
    xp [M, I], hp [M, H], dxp [M, I] (0 rows if dense)
                                    x, h_{t-1} and dx of the packed rows"""
    G = 4 * H
    gathered = M if M != T * B else 0
    return ((M, G), (ngroups, B * widest), (B, H), (B, H), (nchunks, G, I), (nchunks, G, H),
            (nchunks, G), (gathered, I), (gathered, H), (gathered, I))


@njit(**JIT)
def _aligned(at):
    """The first region start at or after element `at`."""
    return -(-at // ALIGN) * ALIGN


@njit(**JIT)
def carve(work, at, shape):
    """The region of `shape` at the first aligned element from work[at:], and its end."""
    start = _aligned(at)
    n = 1
    for d in shape:
        n *= d
    if start + n > work.shape[0]:
        raise ValueError("numba kernels: the workspace is smaller than its regions")
    return work[start:start + n].reshape(shape), start + n


def workspace_size(regions):
    """Elements of a workspace holding these regions, as carve lays them out."""
    end = 0
    for shape in regions:
        end = _aligned.py_func(end) + math.prod(shape)
    return end


@njit(**JIT)
def widest(bounds):
    """The most units in one block."""
    most = 0
    for j in range(bounds.shape[0] - 1):
        most = max(most, bounds[j + 1] - bounds[j])
    return most


@njit(**JIT)
def _packed_rows(a, perm, nbs, offs, out):
    """a[T, B, F] as packed rows [M, F]: a free reshape when no row is padded, else
    gathered into out."""
    T, B, F = a.shape
    if offs[T] == T * B:  # every row runs all T steps, and perm is the identity
        return a.reshape((T * B, F))
    gather_rows(a, perm, nbs, offs, out)
    return out


@njit(**JIT)
def _forward_setup(x, perm, nbs, offs, h0, c0, bounds, groups, tc, th, has_tape, work):
    T, B, I = x.shape
    H = h0.shape[1]
    regions = forward_regions(T, B, I, H, offs[T], groups.shape[0] - 1, widest(bounds))
    xw, at = carve(work, 0, regions[0])
    zbuf, at = carve(work, at, regions[1])
    hs, at = carve(work, at, regions[2])
    cs, at = carve(work, at, regions[3])
    xg, at = carve(work, at, regions[4])
    for r in range(B):
        copy(hs[0, r], h0[perm[r]])
        copy(cs[r], c0[perm[r]])
        if has_tape:
            copy(th[0, r], h0[r])
            copy(tc[0, r], c0[r])
    return _packed_rows(x, perm, nbs, offs, xg), xw, hs, cs, zbuf


@njit(**JIT)
def _forward_group(t, j, xp, wih_p, b_p, xw, hs, cs, whh_t, bounds, groups, zbuf, perm, nbs,
                   offs, y, h_n, c_n, tg, tc, th, has_tape):
    """Step t of thread j's blocks. At t = 0 the thread first projects the inputs for its
    own units (x W_ih^T + b over all steps: one GEMM), which only it reads: no barrier,
    and no parallel region of its own."""
    mine = flush_denormals()  # MXCSR is per thread
    M = xp.shape[0]
    ug0, ug1 = bounds[groups[j]], bounds[groups[j + 1]]
    xw_j = xw[M * 4 * ug0:M * 4 * ug1].reshape((M, 4 * (ug1 - ug0)))
    if t == 0:
        project(xp, wih_p[4 * ug0:4 * ug1], b_p[4 * ug0:4 * ug1], xw_j)
    for s in range(groups[j], groups[j + 1]):
        forward_block(t, s, hs[t % 2], hs[(t + 1) % 2], cs, xw_j, 4 * ug0, whh_t, bounds,
                      zbuf[j], perm, nbs, offs, y, h_n, c_n, tg, tc, th, has_tape)
    restore_fpenv(mine)


@kernel(parallel=False)
def forward_serial(x, perm, nbs, offs, h0, c0, wih_p, whh_t, b_p, bounds, groups, y, h_n, c_n,
                   tg, tc, th, has_tape, work):
    xp, xw, hs, cs, zbuf = _forward_setup(x, perm, nbs, offs, h0, c0, bounds, groups, tc, th,
                                          has_tape, work)
    fpenv = flush_denormals()  # after the setup, which raises if work is too small
    for t in range(x.shape[0]):
        for j in range(groups.shape[0] - 1):
            _forward_group(t, j, xp, wih_p, b_p, xw, hs, cs, whh_t, bounds, groups, zbuf, perm,
                           nbs, offs, y, h_n, c_n, tg, tc, th, has_tape)
    restore_fpenv(fpenv)


@kernel(parallel=True)
def forward_parallel(x, perm, nbs, offs, h0, c0, wih_p, whh_t, b_p, bounds, groups, y, h_n,
                     c_n, tg, tc, th, has_tape, work):
    xp, xw, hs, cs, zbuf = _forward_setup(x, perm, nbs, offs, h0, c0, bounds, groups, tc, th,
                                          has_tape, work)
    fpenv = flush_denormals()  # after the setup, which raises if work is too small
    for t in range(x.shape[0]):
        for j in prange(groups.shape[0] - 1):
            # an int64 index: prange's is unsigned, and a second type compiles it twice
            _forward_group(t, np.int64(j), xp, wih_p, b_p, xw, hs, cs, whh_t, bounds, groups,
                           zbuf, perm, nbs, offs, y, h_n, c_n, tg, tc, th, has_tape)
    restore_fpenv(fpenv)


@njit(**JIT)
def _backward_setup(x, perm, dh_n, dc_n, offs, bounds, groups, nchunks, work):
    """The workspace's regions, with dL/dh_n and dL/dc_n in sorted row order."""
    T, B, I = x.shape
    H = dh_n.shape[1]
    regions = backward_regions(T, B, I, H, offs[T], groups.shape[0] - 1, widest(bounds),
                               nchunks)
    dz, at = carve(work, 0, regions[0])
    sbuf, at = carve(work, at, regions[1])
    dhs, at = carve(work, at, regions[2])
    dcs, at = carve(work, at, regions[3])
    pw_ih, at = carve(work, at, regions[4])
    pw_hh, at = carve(work, at, regions[5])
    pdb, at = carve(work, at, regions[6])
    xg, at = carve(work, at, regions[7])
    hg, at = carve(work, at, regions[8])
    dxg, at = carve(work, at, regions[9])
    for r in range(B):
        copy(dhs[r], dh_n[perm[r]])
        copy(dcs[r], dc_n[perm[r]])
    return dz, sbuf, dhs, dcs, pw_ih, pw_hh, pdb, xg, hg, dxg


@njit(**JIT)
def _backward_finish(x, perm, nbs, offs, th, dhs, dcs, dx, dh0, dc0, xg, hg, dxg):
    """Scatter dh0/dc0; the packed inputs, h_{t-1} rows and dx rows (in place when dense)."""
    T, B, I = x.shape
    for r in range(B):
        copy(dh0[perm[r]], dhs[r])
        copy(dc0[perm[r]], dcs[r])
    xp = _packed_rows(x, perm, nbs, offs, xg)
    hp = _packed_rows(th[:T], perm, nbs, offs, hg)
    dxp = dx.reshape((T * B, I)) if offs[T] == T * B else dxg
    return xp, hp, dxp


@njit(**JIT)
def _backward_reduce(x, perm, nbs, offs, dxp, dx, pw_ih, pw_hh, pdb, dw_ih, dw_hh, db):
    T, B, I = x.shape
    sum_chunks(pw_ih, dw_ih)
    sum_chunks(pw_hh, dw_hh)
    sum_chunks(pdb, db)
    if dxp.shape[0] != T * B:  # scatter the packed rows, 0 past each length
        zero(dx)
        for t in range(T):
            for r in range(nbs[t]):
                copy(dx[t, perm[r]], dxp[offs[t] + r])


@njit(**JIT)
def _backward_group(t, j, bounds, groups, perm, nbs, offs, wcols, tg, tc, dy, dhs, dcs, dz,
                    sbuf):
    """Step t of thread j's blocks: dL/dh_t from step t+1's gate gradients, then step t's
    gate gradients. t = -1 only finishes dL/dh0."""
    mine = flush_denormals()
    for s in range(groups[j], groups[j + 1]):
        if t + 1 < tg.shape[0]:
            recurrent_grad_block(s, dz[offs[t + 1]:offs[t + 2]], wcols, bounds, dhs, sbuf[j])
        if t >= 0:
            backward_block(t, s, bounds, perm, nbs, offs, tg, tc, dy, dhs, dcs, dz, sbuf[j])
    restore_fpenv(mine)


@njit(**JIT)
def _weight_grads(c, nchunks, dz, xp, hp, w_ih, dxp, pw_ih, pw_hh, pdb):
    mine = flush_denormals()
    M = dz.shape[0]
    weight_grad_chunk(c, c * M // nchunks, (c + 1) * M // nchunks, dz, xp, hp, w_ih, dxp,
                      pw_ih, pw_hh, pdb)
    restore_fpenv(mine)


@kernel(parallel=False)
def backward_serial(x, perm, nbs, offs, w_ih, wcols, bounds, groups, tg, tc, th, dy, dh_n,
                    dc_n, dx, dw_ih, dw_hh, db, dh0, dc0, nchunks, work):
    dz, sbuf, dhs, dcs, pw_ih, pw_hh, pdb, xg, hg, dxg = _backward_setup(
        x, perm, dh_n, dc_n, offs, bounds, groups, nchunks, work)
    fpenv = flush_denormals()  # after the setup, which raises if work is too small
    for t in range(x.shape[0] - 1, -2, -1):
        for j in range(groups.shape[0] - 1):
            _backward_group(t, j, bounds, groups, perm, nbs, offs, wcols, tg, tc, dy, dhs, dcs,
                            dz, sbuf)
    xp, hp, dxp = _backward_finish(x, perm, nbs, offs, th, dhs, dcs, dx, dh0, dc0, xg, hg,
                                   dxg)
    for c in range(nchunks):
        _weight_grads(c, nchunks, dz, xp, hp, w_ih, dxp, pw_ih, pw_hh, pdb)
    _backward_reduce(x, perm, nbs, offs, dxp, dx, pw_ih, pw_hh, pdb, dw_ih, dw_hh, db)
    restore_fpenv(fpenv)


@kernel(parallel=True)
def backward_parallel(x, perm, nbs, offs, w_ih, wcols, bounds, groups, tg, tc, th, dy, dh_n,
                      dc_n, dx, dw_ih, dw_hh, db, dh0, dc0, nchunks, work):
    dz, sbuf, dhs, dcs, pw_ih, pw_hh, pdb, xg, hg, dxg = _backward_setup(
        x, perm, dh_n, dc_n, offs, bounds, groups, nchunks, work)
    fpenv = flush_denormals()  # after the setup, which raises if work is too small
    for t in range(x.shape[0] - 1, -2, -1):
        for j in prange(groups.shape[0] - 1):
            _backward_group(t, np.int64(j), bounds, groups, perm, nbs, offs, wcols, tg, tc, dy,
                            dhs, dcs, dz, sbuf)
    xp, hp, dxp = _backward_finish(x, perm, nbs, offs, th, dhs, dcs, dx, dh0, dc0, xg, hg,
                                   dxg)
    for c in prange(nchunks):
        _weight_grads(np.int64(c), nchunks, dz, xp, hp, w_ih, dxp, pw_ih, pw_hh, pdb)
    _backward_reduce(x, perm, nbs, offs, dxp, dx, pw_ih, pw_hh, pdb, dw_ih, dw_hh, db)
    restore_fpenv(fpenv)
