"""The compiled entry points: forward and backward of one layer-direction, each in a
serial and a parallel build. The two builds share every line of work (the helpers here
and in cell.py) and differ only in `range` vs `prange` over the threads' groups of blocks
and over the weight gradients' row chunks: the parallel one opens one parallel region per
time step (about 1.3 us with numba's OpenMP layer, measured), which only pays when a step
has enough work (numba_cpu.plan decides).

Arguments (prepared by numba_cpu): perm/nbs/offs describe the packed sequences (rows
sorted by length; nbs[t] rows active at step t; their packed rows start at offs[t]),
bounds[s]:bounds[s+1] are block s's hidden units (one matrix product per block and
step: blocks are narrow enough for OpenBLAS's small-matrix kernels, which skip packing
W_hh on every call, measured 2-3x faster at batch 16), and thread j runs the blocks
groups[j]:groups[j+1].
"""
import numpy as np
from numba import njit, prange

from .cell import (backward_block, copy, forward_block, gather_rows, project,
                   recurrent_grad_block, sum_chunks, weight_grad_chunk, zero)
from .fpenv import flush_denormals, restore_fpenv
from .options import JIT, kernel


@njit(**JIT)
def widest(bounds):
    """The most units in one block."""
    most = 0
    for j in range(bounds.shape[0] - 1):
        most = max(most, bounds[j + 1] - bounds[j])
    return most


@njit(**JIT)
def _packed_input(x, perm, nbs, offs):
    """x as packed rows [M, I]: a free reshape when no row is padded."""
    T, B, I = x.shape
    M = offs[T]
    if M == T * B:  # every row runs all T steps, and perm is the identity
        return x.reshape((T * B, I))
    xp = np.empty((M, I), x.dtype)
    gather_rows(x, perm, nbs, offs, xp)
    return xp


@njit(**JIT)
def _forward_setup(x, perm, nbs, offs, h0, c0, G, bounds, groups, tc, th, has_tape, scratch):
    B, H = h0.shape
    xw = scratch[:offs[x.shape[0]] * G]  # thread j's units: one [M, 4U_j] block
    hs = np.empty((2, B, H), x.dtype)  # h_{t-1} and h_t, in sorted row order
    cs = np.empty((B, H), x.dtype)
    for r in range(B):
        copy(hs[0, r], h0[perm[r]])
        copy(cs[r], c0[perm[r]])
        if has_tape:
            copy(th[0, r], h0[r])
            copy(tc[0, r], c0[r])
    # one scratch row per thread for its blocks' gate pre-activations
    return xw, hs, cs, np.empty((groups.shape[0] - 1, B * 4 * widest(bounds)), x.dtype)


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
                   tg, tc, th, has_tape, scratch):
    fpenv = flush_denormals()
    xp = _packed_input(x, perm, nbs, offs)
    xw, hs, cs, zbuf = _forward_setup(x, perm, nbs, offs, h0, c0, wih_p.shape[0], bounds,
                                      groups, tc, th, has_tape, scratch)
    for t in range(x.shape[0]):
        for j in range(groups.shape[0] - 1):
            _forward_group(t, j, xp, wih_p, b_p, xw, hs, cs, whh_t, bounds, groups, zbuf, perm,
                           nbs, offs, y, h_n, c_n, tg, tc, th, has_tape)
    restore_fpenv(fpenv)


@kernel(parallel=True)
def forward_parallel(x, perm, nbs, offs, h0, c0, wih_p, whh_t, b_p, bounds, groups, y, h_n,
                     c_n, tg, tc, th, has_tape, scratch):
    fpenv = flush_denormals()
    xp = _packed_input(x, perm, nbs, offs)
    xw, hs, cs, zbuf = _forward_setup(x, perm, nbs, offs, h0, c0, wih_p.shape[0], bounds,
                                      groups, tc, th, has_tape, scratch)
    for t in range(x.shape[0]):
        for j in prange(groups.shape[0] - 1):
            # an int64 index: prange's is unsigned, and a second type compiles it twice
            _forward_group(t, np.int64(j), xp, wih_p, b_p, xw, hs, cs, whh_t, bounds, groups,
                           zbuf, perm, nbs, offs, y, h_n, c_n, tg, tc, th, has_tape)
    restore_fpenv(fpenv)


@njit(**JIT)
def _backward_setup(perm, dh_n, dc_n, M, G, bounds, groups, scratch):
    B, H = dh_n.shape
    dhs = np.empty((B, H), dh_n.dtype)  # dL/dh and dL/dc flowing back, sorted row order
    dcs = np.empty((B, H), dh_n.dtype)
    for r in range(B):
        copy(dhs[r], dh_n[perm[r]])
        copy(dcs[r], dc_n[perm[r]])
    sbuf = np.empty((groups.shape[0] - 1, B * widest(bounds)), dh_n.dtype)
    return scratch[:M * G].reshape((M, G)), dhs, dcs, sbuf


@njit(**JIT)
def _backward_finish(x, perm, nbs, offs, th, dhs, dcs, dx, dh0, dc0, nchunks, scratch):
    """Scatter dh0/dc0; the packed inputs and h_{t-1} rows; the chunks' partial sums
    (in scratch, after the M x G gate gradients)."""
    T, B, I = x.shape
    H = th.shape[2]
    for r in range(B):
        copy(dh0[perm[r]], dhs[r])
        copy(dc0[perm[r]], dcs[r])
    xp = _packed_input(x, perm, nbs, offs)
    M = xp.shape[0]
    if M == T * B:
        hp = th[:T].reshape((T * B, H))
        dxp = dx.reshape((T * B, I))
    else:
        hp = np.empty((M, H), x.dtype)
        gather_rows(th, perm, nbs, offs, hp)
        dxp = np.empty((M, I), x.dtype)
    G = 4 * H
    a = M * G
    b = a + nchunks * G * I
    c = b + nchunks * G * H
    return (xp, hp, dxp, scratch[a:b].reshape((nchunks, G, I)),
            scratch[b:c].reshape((nchunks, G, H)),
            scratch[c:c + nchunks * G].reshape((nchunks, G)))


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
                    dc_n, dx, dw_ih, dw_hh, db, dh0, dc0, nchunks, scratch):
    fpenv = flush_denormals()
    dz, dhs, dcs, sbuf = _backward_setup(perm, dh_n, dc_n, offs[x.shape[0]], tg.shape[2],
                                         bounds, groups, scratch)
    for t in range(x.shape[0] - 1, -2, -1):
        for j in range(groups.shape[0] - 1):
            _backward_group(t, j, bounds, groups, perm, nbs, offs, wcols, tg, tc, dy, dhs, dcs,
                            dz, sbuf)
    xp, hp, dxp, pw_ih, pw_hh, pdb = _backward_finish(x, perm, nbs, offs, th, dhs, dcs, dx,
                                                      dh0, dc0, nchunks, scratch)
    for c in range(nchunks):
        _weight_grads(c, nchunks, dz, xp, hp, w_ih, dxp, pw_ih, pw_hh, pdb)
    _backward_reduce(x, perm, nbs, offs, dxp, dx, pw_ih, pw_hh, pdb, dw_ih, dw_hh, db)
    restore_fpenv(fpenv)


@kernel(parallel=True)
def backward_parallel(x, perm, nbs, offs, w_ih, wcols, bounds, groups, tg, tc, th, dy, dh_n,
                      dc_n, dx, dw_ih, dw_hh, db, dh0, dc0, nchunks, scratch):
    fpenv = flush_denormals()
    dz, dhs, dcs, sbuf = _backward_setup(perm, dh_n, dc_n, offs[x.shape[0]], tg.shape[2],
                                         bounds, groups, scratch)
    for t in range(x.shape[0] - 1, -2, -1):
        for j in prange(groups.shape[0] - 1):
            _backward_group(t, np.int64(j), bounds, groups, perm, nbs, offs, wcols, tg, tc, dy,
                            dhs, dcs, dz, sbuf)
    xp, hp, dxp, pw_ih, pw_hh, pdb = _backward_finish(x, perm, nbs, offs, th, dhs, dcs, dx,
                                                      dh0, dc0, nchunks, scratch)
    for c in prange(nchunks):
        _weight_grads(np.int64(c), nchunks, dz, xp, hp, w_ih, dxp, pw_ih, pw_hh, pdb)
    _backward_reduce(x, perm, nbs, offs, dxp, dx, pw_ih, pw_hh, pdb, dw_ih, dw_hh, db)
    restore_fpenv(fpenv)
