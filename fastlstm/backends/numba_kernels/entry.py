"""The compiled entry points: forward and backward of one layer-direction. One build
serves one thread or many: every thread taking part runs the same kernel with its own
slot and claims units of work (see "sharing a call's work" below), so the caller never
waits for a helper that has not come, and the results do not depend on who came.

Arguments (prepared by numba_cpu): perm int32[B], nbs int32[T] and offs intp[T+1] are
the packed-sequence layout's perm, batch_sizes and offsets (sequences.py: rows sorted by
length; nbs[t] rows active at step t; their packed rows start at offs[t]; offs[T] = M);
bounds[s]:bounds[s+1] are block s's hidden units (one matrix product per block and
step: blocks are narrow enough for OpenBLAS's small-matrix kernels, which skip packing
W_hh on every call, 2-3x faster at batch 16). `work` is the caller's scratch, `first`
the call's phase table (phase_starts) and `ctl` its work counters: the kernels allocate
nothing.

The workspace: one flat array of the call's dtype, allocated by the adapter and reused
across calls. forward_regions and backward_regions are the one description of each
kernel's scratch: the shape of every region, in the order they lie in `work`. The
adapter sums them (workspace_size) to size the array; the kernel cuts them out (carve)
in the same order. Regions of packed rows have no rows for a dense batch (M = T*B): the
kernels then read x, h and dx in place, reshaped.
"""
import math

import numpy as np
from numba import njit

from . import atomics
from .cell import (add_chunks, backward_block, copy, forward_block, gather_rows, project,
                   recurrent_grad_block, weight_grad_chunk, zero)
from .fpenv import flush_denormals, restore_fpenv
from .options import JIT, kernel

# Every region starts a multiple of this many elements into `work` (64 bytes in float32):
# on a cache line when `work` does (the adapter aligns it), as a fresh array would.
ALIGN = 16
# Row chunks of the weight-gradient GEMMs at most (weight_chunks).
MAX_WEIGHT_CHUNKS = 4
# A thread waiting for another one's unit probes this many times (a pause each, tens of
# microseconds in all) before it yields its core at every probe.
SPIN_PROBES = 1000


@njit(**JIT)
def forward_regions(T, B, I, H, M, nslots, widest):
    """Shapes of the forward's scratch, in order:
    xw   [M*4H]                    x W_ih^T + b of every packed row: each block's units
                                   one [M, 4U] block after another
    zbuf [nslots, B*4*widest]      each thread's gate pre-activations of one block
    hs   [2, B, H]                 h_{t-1} and h_t, sorted row order
    cs   [B, H]                    c, sorted row order
    xp   [M, I] (0 rows if dense)  x's packed rows"""
    gathered = M if M != T * B else 0
    return ((M * 4 * H,), (nslots, B * 4 * widest), (2, B, H), (B, H), (gathered, I))


@njit(**JIT)
def weight_chunks(M):
    """Row chunks of the weight-gradient GEMMs: the shape's alone (never the thread
    count), so the partial sums, and their sum, are the same however many threads ran.
    Each chunk writes whole [4H, I+H] partials, which few rows do not pay for (single,
    M = 100: three chunks made the backward 25% slower on one thread than one chunk),
    so two chunks from 64 rows, four from 1024."""
    return 1 if M < 64 else 2 if M < 1024 else MAX_WEIGHT_CHUNKS


@njit(**JIT)
def backward_regions(T, B, I, H, M, nslots, widest):
    """Shapes of the backward's scratch, in order:
    dz    [M, G]                    dL/dz of every packed row
    sbuf  [nslots, B*widest]        each thread's dh of one block, then tanh(c)
    dhs   [B, H], dcs [B, H]        dL/dh and dL/dc flowing back, sorted row order
    pw_ih [n-1, G, I], pw_hh [n-1, G, H], pdb [n-1, G]
                                    the partial dW_ih, dW_hh, db of row chunks 1..n-1
                                    (n = weight_chunks(M); chunk 0 goes to the outputs)
    xp [M, I], hp [M, H], dxp [M, I] (0 rows if dense)
                                    x, h_{t-1} and dx of the packed rows"""
    G = 4 * H
    gathered = M if M != T * B else 0
    n = weight_chunks(M) - 1
    return ((M, G), (nslots, B * widest), (B, H), (B, H), (n, G, I), (n, G, H),
            (n, G), (gathered, I), (gathered, H), (gathered, I))


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
def _packed_view(a, offs, out):
    """a[T, B, F] as packed rows [M, F]: a free reshape when no row is padded (every row
    runs all T steps and perm is the identity), else `out`, which gather_rows fills."""
    T, B, F = a.shape
    if offs[T] == T * B:
        return a.reshape((T * B, F))
    return out


# --- sharing a call's work -------------------------------------------------------------
# A call's work is a list of phases, each a list of units (a block of hidden units for
# one step, a row chunk of a GEMM, ...); a phase starts when the one before it has
# finished. Every thread taking part runs the same kernel with its own `slot` (0: the
# caller) and claims units one at a time, so whoever is there does the work: the caller
# starts at once and never waits for a helper that has not arrived; it only waits, at a
# phase's end, for units another thread has claimed and is running. Each unit computes
# the same thing whoever runs it (its own scratch aside), so the results do not depend
# on how many threads took part, nor on which.
#
# ctl (int64, zeros, one per call; control_size() sizes it, phase_starts() numbers units):
#   [0]                          the latest phase some thread has entered
#   [1 + p]                      units of phase p finished
#   [1 + P + u]                  unit u (numbered across phases): 1 + the slot that ran it
#   [1 + P + U + j]              the latest phase thread j has entered, plus one
# Each thread owns a contiguous share of every phase (the blocks it keeps in its cache,
# as in a static split) and runs it first; it takes other threads' units only where
# their owner has not entered the phase (asleep, not yet woken, or not taking part),
# last unit first. So a present thread keeps its blocks, and an absent one costs
# nothing but its help.


def phase_starts(sizes):
    """first[p]: the number of phase p's first unit; first[P]: all units. The kernels
    take this (int64) array, made once per shape by the adapter: they allocate nothing."""
    return np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)


def control_size(first, nslots):
    """Elements of ctl for phases `first` (phase_starts) and nslots threads."""
    P = len(first) - 1
    return 1 + P + int(first[P]) + nslots


@njit(**JIT)
def _wait_for(ctl, first, p):
    """Until every unit of phase p has finished (their results are then visible)."""
    n = first[p + 1] - first[p]
    probes = 0
    while atomics.load(ctl, 1 + p) < n:
        if probes < SPIN_PROBES:
            atomics.pause()
            probes += 1
        else:  # the thread we wait for may be queued behind us: let it run
            atomics.yield_cpu()


@njit(**JIT)
def _enter(ctl, first, p, slot):
    """Start phase p: wait for phase p-1, then tell the others this thread is here."""
    if p > 0:
        _wait_for(ctl, first, p - 1)
    P = first.shape[0] - 1
    atomics.exchange(ctl, 1 + P + first[P] + slot, p + 1)
    if atomics.load(ctl, 0) < p:
        atomics.exchange(ctl, 0, p)  # a hint for late threads (may lag: they then scan)


@njit(**JIT)
def _claim(ctl, first, p, i, slot, nslots):
    """The i-th unit this thread tries in phase p, if it gets it; else -1."""
    n = first[p + 1] - first[p]
    P = first.shape[0] - 1
    lo, hi = slot * n // nslots, (slot + 1) * n // nslots
    if i < hi - lo:
        u = lo + i
    else:  # another thread's share: only if its owner is not in this phase
        u = (lo - 1 - (i - (hi - lo))) % n
        owner = 0
        while (owner + 1) * n // nslots <= u:
            owner += 1
        if atomics.load(ctl, 1 + P + first[P] + owner) > p:
            return -1
    flag = 1 + P + first[p] + u
    if atomics.load(ctl, flag) != 0 or atomics.exchange(ctl, flag, slot + 1) != 0:
        return -1
    return u


@njit(**JIT)
def _done(ctl, p):
    atomics.add(ctl, 1 + p, 1)


@njit(**JIT)
def _start_phase(ctl):
    return max(atomics.load(ctl, 0), 0)


@njit(**JIT)
def _publish(signal, gen, nslots, slot):
    """The caller tells the spinning helpers about its call (signal[0] = gen) from in
    here, with the GIL released: a helper that wakes then takes the GIL at once, where
    one woken while the caller still held it would sleep on it (team.py)."""
    if slot == 0 and nslots > 1:
        atomics.exchange(signal, 0, gen)


@njit(**JIT)
def _linger(signal, gen, probes):
    """A helper done with a call spins here, GIL released, until the next call is
    published or `probes` probes have passed: returning to Python at once, it would
    contend for the GIL with the caller coming out of the same call."""
    for _ in range(probes):
        if atomics.load(signal, 0) != gen:
            return
        atomics.pause()


# --- forward ---------------------------------------------------------------------------
def forward_phases(T, nblocks):
    """Units per phase: the setup, the input projection per block, then each step's
    blocks."""
    sizes = np.full(T + 2, nblocks, np.int64)
    sizes[0] = 1
    return sizes


@njit(**JIT)
def _forward_setup(x, perm, nbs, offs, h0, c0, xg, hs, cs, tc, th, has_tape):
    """Initial state in sorted row order, the tape's step 0 and the packed inputs (into
    xg, never into the view of x, which may be read-only)."""
    T, B, I = x.shape
    for r in range(B):
        copy(hs[0, r], h0[perm[r]])
        copy(cs[r], c0[perm[r]])
        if has_tape:
            copy(th[0, r], h0[r])
            copy(tc[0, r], c0[r])
    if offs[T] != T * B:
        gather_rows(x, perm, nbs, offs, xg)


@kernel()
def forward(x, perm, nbs, offs, h0, c0, wih_p, whh_t, b_p, bounds, y, h_n, c_n, tg, tc, th,
            has_tape, work, first, ctl, nslots, slot, signal, gen, probes):
    """One layer-direction's forward, as thread `slot` of `nslots` (the caller is 0);
    signal, gen and probes: see _publish and _linger."""
    T, B, I = x.shape
    H = h0.shape[1]
    M = offs[T]
    regions = forward_regions(T, B, I, H, M, nslots, widest(bounds))
    xw, at = carve(work, 0, regions[0])
    zbuf, at = carve(work, at, regions[1])
    hs, at = carve(work, at, regions[2])
    cs, at = carve(work, at, regions[3])
    xg, at = carve(work, at, regions[4])
    xp = _packed_view(x, offs, xg)
    fpenv = flush_denormals()  # after carving, which raises if work is too small
    _publish(signal, gen, nslots, slot)
    for p in range(_start_phase(ctl), first.shape[0] - 1):
        _enter(ctl, first, p, slot)
        for i in range(first[p + 1] - first[p]):
            s = _claim(ctl, first, p, i, slot, nslots)
            if s < 0:
                continue
            if p == 0:
                _forward_setup(x, perm, nbs, offs, h0, c0, xg, hs, cs, tc, th, has_tape)
            else:
                u0, u1 = bounds[s], bounds[s + 1]
                xw_s = xw[M * 4 * u0:M * 4 * u1].reshape((M, 4 * (u1 - u0)))
                if p == 1:
                    project(xp, wih_p[4 * u0:4 * u1], b_p[4 * u0:4 * u1], xw_s)
                else:
                    t = p - 2
                    forward_block(t, s, hs[t % 2], hs[(t + 1) % 2], cs, xw_s, 4 * u0, whh_t,
                                  bounds, zbuf[slot], perm, nbs, offs, y, h_n, c_n, tg, tc,
                                  th, has_tape)
            _done(ctl, p)
    if slot == 0:  # the caller returns when every unit has finished
        _wait_for(ctl, first, first.shape[0] - 2)
    restore_fpenv(fpenv)
    _linger(signal, gen, probes)


# --- backward --------------------------------------------------------------------------
def backward_phases(T, nblocks, M):
    """Units per phase: the setup; the steps T-1 .. 0 and the last dL/dh0 (t = -1), per
    block; scattering dh0, dc0 and gathering the packed rows; the weight gradients' row
    chunks; and summing them (dW_ih, dW_hh, db and dx: three units)."""
    sizes = np.full(T + 5, nblocks, np.int64)
    sizes[0] = 1
    sizes[T + 2] = 1
    sizes[T + 3] = weight_chunks.py_func(M)
    sizes[T + 4] = 3
    return sizes


@njit(**JIT)
def _backward_group(t, s, bounds, perm, nbs, offs, wcols, tg, tc, dy, dhs, dcs, dz, sbuf):
    """Step t of block s: dL/dh_t from step t+1's gate gradients, then step t's gate
    gradients. t = -1 only finishes dL/dh0."""
    if t + 1 < tg.shape[0]:
        recurrent_grad_block(s, dz[offs[t + 1]:offs[t + 2]], wcols, bounds, dhs, sbuf)
    if t >= 0:
        backward_block(t, s, bounds, perm, nbs, offs, tg, tc, dy, dhs, dcs, dz, sbuf)


@njit(**JIT)
def _backward_finish(x, perm, nbs, offs, th, dhs, dcs, dh0, dc0, xg, hg):
    """Scatter dh0/dc0; gather the packed inputs and h_{t-1} rows (when not dense)."""
    T, B, I = x.shape
    for r in range(B):
        copy(dh0[perm[r]], dhs[r])
        copy(dc0[perm[r]], dcs[r])
    if offs[T] != T * B:
        gather_rows(x, perm, nbs, offs, xg)
        gather_rows(th[:T], perm, nbs, offs, hg)


@njit(**JIT)
def _backward_sum(u, x, perm, nbs, offs, dxp, dx, pw_ih, pw_hh, pdb, dw_ih, dw_hh, db):
    """Unit u of the last phase: chunks 1.. added to chunk 0's dW_ih (0), dW_hh (1), or
    db and dx's scatter (2), always in chunk order."""
    T, B, I = x.shape
    if u == 0:
        add_chunks(pw_ih, dw_ih)
    elif u == 1:
        add_chunks(pw_hh, dw_hh)
    else:
        add_chunks(pdb, db)
        if dxp.shape[0] != T * B:  # scatter the packed rows, 0 past each length
            zero(dx)
            for t in range(T):
                for r in range(nbs[t]):
                    copy(dx[t, perm[r]], dxp[offs[t] + r])


@kernel()
def backward(x, perm, nbs, offs, w_ih, wcols, bounds, tg, tc, th, dy, dh_n, dc_n, dx, dw_ih,
             dw_hh, db, dh0, dc0, work, first, ctl, nslots, slot, signal, gen, probes):
    """One layer-direction's backward, as thread `slot` of `nslots` (the caller is 0);
    signal, gen and probes: see _publish and _linger."""
    T, B, I = x.shape
    H = dh_n.shape[1]
    M = offs[T]
    regions = backward_regions(T, B, I, H, M, nslots, widest(bounds))
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
    xp = _packed_view(x, offs, xg)
    hp = _packed_view(th[:T], offs, hg)
    dxp = dx.reshape((T * B, I)) if M == T * B else dxg
    nchunks = first[T + 4] - first[T + 3]
    fpenv = flush_denormals()  # after carving, which raises if work is too small
    _publish(signal, gen, nslots, slot)
    for p in range(_start_phase(ctl), first.shape[0] - 1):
        _enter(ctl, first, p, slot)
        for i in range(first[p + 1] - first[p]):
            u = _claim(ctl, first, p, i, slot, nslots)
            if u < 0:
                continue
            if p == 0:
                for r in range(B):
                    copy(dhs[r], dh_n[perm[r]])
                    copy(dcs[r], dc_n[perm[r]])
            elif p <= T + 1:
                _backward_group(T - p, u, bounds, perm, nbs, offs, wcols, tg, tc, dy, dhs,
                                dcs, dz, sbuf[slot])
            elif p == T + 2:
                _backward_finish(x, perm, nbs, offs, th, dhs, dcs, dh0, dc0, xg, hg)
            elif p == T + 3:  # chunk 0 into the outputs, the others into partial sums
                m0, m1 = u * M // nchunks, (u + 1) * M // nchunks
                if u == 0:
                    weight_grad_chunk(m0, m1, dz, xp, hp, w_ih, dxp, dw_ih, dw_hh, db)
                else:
                    weight_grad_chunk(m0, m1, dz, xp, hp, w_ih, dxp, pw_ih[u - 1],
                                      pw_hh[u - 1], pdb[u - 1])
            else:
                _backward_sum(u, x, perm, nbs, offs, dxp, dx, pw_ih, pw_hh, pdb, dw_ih,
                              dw_hh, db)
            _done(ctl, p)
    if slot == 0:  # the caller returns when every unit has finished
        _wait_for(ctl, first, first.shape[0] - 2)
    restore_fpenv(fpenv)
    _linger(signal, gen, probes)
