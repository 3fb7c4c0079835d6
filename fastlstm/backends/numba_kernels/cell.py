"""The per-step work of one block of hidden units, and the GEMM chunks around the loop:
the units of work entry.py's kernels hand out to whichever thread claims them.

Layouts (see numba_cpu.Packed): the forward's gate rows are permuted into blocks of
hidden units, each block holding its units' i, f, g, o rows side by side, so a block's
share of W_hh is one contiguous [4U, H] matrix and its gate pre-activations one
contiguous [rows, 4U] product. State rows are kept sorted by sequence length
(perm[r] is the caller's row), so the rows active at step t are always the first
nbs[t]: every matrix product runs on a prefix, never on padding. perm, nbs and offs are
the packed-sequence layout's perm, batch_sizes and offsets (backends/sequences.py). The tape and every
caller-facing array stay in the caller's row order and torch's gate order.
"""
import numpy as np
from numba import njit

from .activations import one, sigmoid, tanh
from .options import JIT


# Array copies and fills are explicit loops: numba's slice assignment compiles a
# shape-checking error path (string formatting included) into every call site, which
# more than doubled the cold compile time.
@njit(**JIT)
def copy(dst, src):
    """dst[:] = src[:] for 1-D arrays of one length."""
    for k in range(dst.shape[0]):
        dst[k] = src[k]


@njit(**JIT)
def zero(a):
    """a[...] = 0 for a C-contiguous array."""
    flat = a.reshape(a.size)
    for k in range(flat.shape[0]):
        flat[k] = 0


@njit(**JIT)
def cell_forward(zr, xr, cr, hr):
    """One row of a block of U units: zr [4U] = h W^T, xr [4U] = x W_ih^T + b.
    Updates cr (c) in place, writes hr (h) and leaves the activations i, f, g, o in zr."""
    U = cr.shape[0]
    for u in range(U):
        i = sigmoid(zr[u] + xr[u])
        f = sigmoid(zr[U + u] + xr[U + u])
        g = tanh(zr[2 * U + u] + xr[2 * U + u])
        o = sigmoid(zr[3 * U + u] + xr[3 * U + u])
        c = f * cr[u] + i * g
        cr[u] = c
        hr[u] = o * tanh(c)
        zr[u] = i
        zr[U + u] = f
        zr[2 * U + u] = g
        zr[3 * U + u] = o


@njit(**JIT)
def forward_block(t, j, hin, hout, cs, xw, xw_col0, whh_t, bounds, zbuf, perm, nbs, offs,
                  y, h_n, c_n, tg, tc, th, has_tape):
    """Step t for unit block j over every row: reads hin (h_{t-1}), writes hout (h_t).
    whh_t holds each block's W_hh rows transposed, [H, 4U], one block after another;
    xw holds the input projections of gate columns xw_col0 on (packed order)."""
    T, B, H = y.shape
    u0, u1 = bounds[j], bounds[j + 1]
    U = u1 - u0
    nb = np.intp(nbs[t])  # int32 in the layout; reshape wants one integer type
    if nb > 0:
        z = zbuf[:nb * 4 * U].reshape((nb, 4 * U))
        np.dot(hin[:nb], whh_t[4 * H * u0:4 * H * u1].reshape((H, 4 * U)), z)
        last = 0 if t + 1 == T else nbs[t + 1]  # rows r >= last end their sequence here
        for r in range(nb):
            zr = z[r]
            cr = cs[r, u0:u1]
            hr = hout[r, u0:u1]
            cell_forward(zr, xw[offs[t] + r, 4 * u0 - xw_col0:4 * u1 - xw_col0], cr, hr)
            o = perm[r]
            copy(y[t, o, u0:u1], hr)
            if has_tape:
                for k in range(4):
                    copy(tg[t, o, k * H + u0:k * H + u1], zr[k * U:(k + 1) * U])
                copy(tc[t + 1, o, u0:u1], cr)
                copy(th[t + 1, o, u0:u1], hr)
            if r >= last:
                copy(h_n[o, u0:u1], hr)
                copy(c_n[o, u0:u1], cr)
    for r in range(nb, B):  # past their length: y is 0, the state stays where it ended
        zero(y[t, perm[r], u0:u1])


@njit(**JIT)
def cell_backward(gi, gf, gg, go, cn, cp, dyr, dhr, dcr, tcn, dzi, dzf, dzg, dzo):
    """One row of a block: gate gradients dzi..dzo and dc_{t-1} (into dcr), given dhr =
    dL/dh_t from step t+1 (overwritten: it is recomputed before it is read again).

    Written as several loops over at most four arrays each: with every array in one
    loop, LLVM needs more run-time overlap checks than it allows and gives up
    vectorising (measured: scalar code, several times slower)."""
    U = cn.shape[0]
    for u in range(U):
        tcn[u] = tanh(cn[u])
    for u in range(U):
        dhr[u] += dyr[u]
    for u in range(U):
        tc = tcn[u]
        dcr[u] += dhr[u] * go[u] * (one(tc) - tc * tc)
    for u in range(U):
        dzo[u] = dhr[u] * tcn[u] * (go[u] - go[u] * go[u])
    for u in range(U):
        dzi[u] = dcr[u] * gg[u] * (gi[u] - gi[u] * gi[u])
    for u in range(U):
        dzf[u] = dcr[u] * cp[u] * (gf[u] - gf[u] * gf[u])
    for u in range(U):
        dzg[u] = dcr[u] * gi[u] * (one(gg[u]) - gg[u] * gg[u])
    for u in range(U):
        dcr[u] *= gf[u]


@njit(**JIT)
def recurrent_grad_block(j, dz_rows, wcols, bounds, dhs, sbuf):
    """dL/dh_{t-1} for unit block j: dhs[:rows, block] = dz_t W_hh[:, block]."""
    n, G = dz_rows.shape
    if n == 0:
        return
    u0, u1 = bounds[j], bounds[j + 1]
    U = u1 - u0
    out = sbuf[:n * U].reshape((n, U))
    np.dot(dz_rows, wcols[G * u0:G * u1].reshape((G, U)), out)
    for r in range(n):
        copy(dhs[r, u0:u1], out[r])


@njit(**JIT)
def backward_block(t, j, bounds, perm, nbs, offs, tg, tc, dy, dhs, dcs, dz, sbuf):
    """Gate gradients of step t for unit block j over the rows active at t."""
    H = dhs.shape[1]
    u0, u1 = bounds[j], bounds[j + 1]
    tcn = sbuf[:u1 - u0]  # scratch for tanh(c_t)
    for r in range(nbs[t]):
        o = perm[r]
        g = tg[t, o]
        d = dz[offs[t] + r]
        cell_backward(g[u0:u1], g[H + u0:H + u1], g[2 * H + u0:2 * H + u1],
                      g[3 * H + u0:3 * H + u1], tc[t + 1, o, u0:u1], tc[t, o, u0:u1],
                      dy[t, o, u0:u1], dhs[r, u0:u1], dcs[r, u0:u1], tcn,
                      d[u0:u1], d[H + u0:H + u1], d[2 * H + u0:2 * H + u1],
                      d[3 * H + u0:3 * H + u1])


@njit(**JIT)
def project(xp, w_p, b_p, out):
    """out = xp W^T + b: the input projection of every packed row for some gate rows."""
    np.dot(xp, w_p.T, out)
    for m in range(out.shape[0]):
        row = out[m]
        for k in range(row.shape[0]):
            row[k] += b_p[k]


@njit(**JIT)
def weight_grad_chunk(m0, m1, dz, xp, hp, w_ih, dxp, out_ih, out_hh, out_b):
    """Over packed rows m0:m1: dz^T x into out_ih, dz^T h_{t-1} into out_hh, dz's column
    sums into out_b (each the chunk's partial dW_ih, dW_hh, db), and those rows of dx."""
    if m1 <= m0:
        zero(out_ih)
        zero(out_hh)
        zero(out_b)
        return
    d = dz[m0:m1]
    np.dot(d.T, xp[m0:m1], out_ih)
    np.dot(d.T, hp[m0:m1], out_hh)
    np.dot(d, w_ih, dxp[m0:m1])
    zero(out_b)
    for m in range(m1 - m0):
        row = d[m]
        for k in range(row.shape[0]):
            out_b[k] += row[k]


@njit(**JIT)
def gather_rows(a, perm, nbs, offs, out):
    """out[offs[t] + r] = a[t, perm[r]] for the rows active at each step."""
    for t in range(nbs.shape[0]):
        for r in range(nbs[t]):
            copy(out[offs[t] + r], a[t, perm[r]])


@njit(**JIT)
def add_chunks(parts, out):
    """out += parts[0]; out += parts[1]; ... for C-contiguous parts [n, ...] and out [...]
    (in that order: the sum is the same whoever adds it)."""
    flat = out.reshape(out.size)
    p = parts.reshape((parts.shape[0], out.size))
    for c in range(p.shape[0]):
        row = p[c]
        for k in range(flat.shape[0]):
            flat[k] += row[k]
