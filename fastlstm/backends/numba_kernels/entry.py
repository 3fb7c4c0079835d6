"""The compiled entry points: forward and backward of one layer-direction, each in a
serial and a parallel build. The two builds share every line of work (cell.py) and
differ only in `range` vs `prange` over unit blocks and row chunks: the parallel one
opens one parallel region per time step (about 1.3 us with numba's OpenMP layer, measured),
which only pays when a step has enough work (numba_cpu.plan decides).

Arguments (prepared by numba_cpu): perm/nbs/offs describe the packed sequences (rows
sorted by length; nbs[t] rows active at step t; their packed rows start at offs[t]),
bounds[j]:bounds[j+1] are unit block j's hidden units.
"""
import numpy as np
from numba import njit, prange

from .cell import (backward_block, copy, forward_block, gather_rows, project_chunk,
                   recurrent_grad_block, sum_chunks, weight_grad_chunk, zero)
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
def _forward_setup(x, perm, nbs, offs, h0, c0, G, bounds, tc, th, has_tape):
    B, H = h0.shape
    nblk = bounds.shape[0] - 1
    xw = np.empty((offs[x.shape[0]], G), x.dtype)
    hs = np.empty((2, B, H), x.dtype)  # h_{t-1} and h_t, in sorted row order
    cs = np.empty((B, H), x.dtype)
    for r in range(B):
        copy(hs[0, r], h0[perm[r]])
        copy(cs[r], c0[perm[r]])
        if has_tape:
            copy(th[0, r], h0[r])
            copy(tc[0, r], c0[r])
    return xw, hs, cs, np.empty((nblk, B * 4 * widest(bounds)), x.dtype)


@kernel(parallel=False)
def forward_serial(x, perm, nbs, offs, h0, c0, wih_p, whh_p, b_p, bounds, y, h_n, c_n,
                   tg, tc, th, has_tape, nchunks):
    T = x.shape[0]
    xp = _packed_input(x, perm, nbs, offs)
    xw, hs, cs, zbuf = _forward_setup(x, perm, nbs, offs, h0, c0, wih_p.shape[0], bounds,
                                      tc, th, has_tape)
    M = xp.shape[0]
    for c in range(nchunks):
        project_chunk(xp, wih_p, b_p, xw, c * M // nchunks, (c + 1) * M // nchunks)
    for t in range(T):
        for j in range(bounds.shape[0] - 1):
            forward_block(t, j, hs[t % 2], hs[(t + 1) % 2], cs, xw, whh_p, bounds, zbuf, perm,
                          nbs, offs, y, h_n, c_n, tg, tc, th, has_tape)


@kernel(parallel=True)
def forward_parallel(x, perm, nbs, offs, h0, c0, wih_p, whh_p, b_p, bounds, y, h_n, c_n,
                     tg, tc, th, has_tape, nchunks):
    T = x.shape[0]
    xp = _packed_input(x, perm, nbs, offs)
    xw, hs, cs, zbuf = _forward_setup(x, perm, nbs, offs, h0, c0, wih_p.shape[0], bounds,
                                      tc, th, has_tape)
    M = xp.shape[0]
    for c in prange(nchunks):
        project_chunk(xp, wih_p, b_p, xw, c * M // nchunks, (c + 1) * M // nchunks)
    for t in range(T):
        for j in prange(bounds.shape[0] - 1):
            forward_block(t, j, hs[t % 2], hs[(t + 1) % 2], cs, xw, whh_p, bounds, zbuf, perm,
                          nbs, offs, y, h_n, c_n, tg, tc, th, has_tape)


@njit(**JIT)
def _backward_setup(perm, dh_n, dc_n, M, G, bounds):
    B, H = dh_n.shape
    dhs = np.empty((B, H), dh_n.dtype)  # dL/dh and dL/dc flowing back, sorted row order
    dcs = np.empty((B, H), dh_n.dtype)
    for r in range(B):
        copy(dhs[r], dh_n[perm[r]])
        copy(dcs[r], dc_n[perm[r]])
    sbuf = np.empty((bounds.shape[0] - 1, B * widest(bounds)), dh_n.dtype)
    return np.empty((M, G), dh_n.dtype), dhs, dcs, sbuf


@njit(**JIT)
def _backward_finish(x, perm, nbs, offs, th, dhs, dcs, dx, dh0, dc0, nchunks):
    """Scatter dh0/dc0; the packed inputs and h_{t-1} rows; scratch for the chunks."""
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
    return (xp, hp, dxp, np.empty((nchunks, G, I), x.dtype),
            np.empty((nchunks, G, H), x.dtype), np.empty((nchunks, G), x.dtype))


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


@kernel(parallel=False)
def backward_serial(x, perm, nbs, offs, w_ih, wcols, bounds, tg, tc, th, dy, dh_n, dc_n,
                    dx, dw_ih, dw_hh, db, dh0, dc0, nchunks):
    T = x.shape[0]
    nblk = bounds.shape[0] - 1
    dz, dhs, dcs, sbuf = _backward_setup(perm, dh_n, dc_n, offs[T], tg.shape[2], bounds)
    for t in range(T - 1, -1, -1):
        for j in range(nblk):
            if t + 1 < T:
                recurrent_grad_block(j, dz[offs[t + 1]:offs[t + 2]], wcols, bounds, dhs, sbuf)
            backward_block(t, j, bounds, perm, nbs, offs, tg, tc, dy, dhs, dcs, dz)
    for j in range(nblk):
        recurrent_grad_block(j, dz[:offs[1]], wcols, bounds, dhs, sbuf)
    xp, hp, dxp, pw_ih, pw_hh, pdb = _backward_finish(x, perm, nbs, offs, th, dhs, dcs, dx,
                                                      dh0, dc0, nchunks)
    M = xp.shape[0]
    for c in range(nchunks):
        weight_grad_chunk(c, c * M // nchunks, (c + 1) * M // nchunks, dz, xp, hp, w_ih, dxp,
                          pw_ih, pw_hh, pdb)
    _backward_reduce(x, perm, nbs, offs, dxp, dx, pw_ih, pw_hh, pdb, dw_ih, dw_hh, db)


@kernel(parallel=True)
def backward_parallel(x, perm, nbs, offs, w_ih, wcols, bounds, tg, tc, th, dy, dh_n, dc_n,
                      dx, dw_ih, dw_hh, db, dh0, dc0, nchunks):
    T = x.shape[0]
    nblk = bounds.shape[0] - 1
    dz, dhs, dcs, sbuf = _backward_setup(perm, dh_n, dc_n, offs[T], tg.shape[2], bounds)
    for t in range(T - 1, -1, -1):
        for j in prange(nblk):
            if t + 1 < T:
                recurrent_grad_block(j, dz[offs[t + 1]:offs[t + 2]], wcols, bounds, dhs, sbuf)
            backward_block(t, j, bounds, perm, nbs, offs, tg, tc, dy, dhs, dcs, dz)
    for j in prange(nblk):
        recurrent_grad_block(j, dz[:offs[1]], wcols, bounds, dhs, sbuf)
    xp, hp, dxp, pw_ih, pw_hh, pdb = _backward_finish(x, perm, nbs, offs, th, dhs, dcs, dx,
                                                      dh0, dc0, nchunks)
    M = xp.shape[0]
    for c in prange(nchunks):
        weight_grad_chunk(c, c * M // nchunks, (c + 1) * M // nchunks, dz, xp, hp, w_ih, dxp,
                          pw_ih, pw_hh, pdb)
    _backward_reduce(x, perm, nbs, offs, dxp, dx, pw_ih, pw_hh, pdb, dw_ih, dw_hh, db)
