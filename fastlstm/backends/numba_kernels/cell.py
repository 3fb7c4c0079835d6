"""The per-step work of one block of hidden units, shared by the serial and the parallel
entry points (which differ only in range vs prange over the blocks).

Layouts (see numba_cpu.Packed): the forward's gate rows are permuted into blocks of
hidden units, each block holding its units' i, f, g, o rows side by side, so a block's
share of W_hh is one contiguous [4U, H] matrix and its gate pre-activations one
contiguous [rows, 4U] product. State rows are kept sorted by sequence length
(perm[r] is the caller's row), so the rows active at step t are always the first
nbs[t]: every matrix product runs on a prefix, never on padding. The tape and every
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
def forward_block(t, j, hin, hout, cs, xw, whh_p, bounds, zbuf, perm, nbs, offs,
                  y, h_n, c_n, tg, tc, th, has_tape):
    """Step t for unit block j over every row: reads hin (h_{t-1}), writes hout (h_t)."""
    T, B, H = y.shape
    u0, u1 = bounds[j], bounds[j + 1]
    U = u1 - u0
    nb = nbs[t]
    if nb > 0:
        z = zbuf[j, :nb * 4 * U].reshape((nb, 4 * U))
        np.dot(hin[:nb], whh_p[4 * u0:4 * u1].T, z)
        last = 0 if t + 1 == T else nbs[t + 1]  # rows r >= last end their sequence here
        for r in range(nb):
            zr = z[r]
            cr = cs[r, u0:u1]
            hr = hout[r, u0:u1]
            cell_forward(zr, xw[offs[t] + r, 4 * u0:4 * u1], cr, hr)
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
def cell_backward(gi, gf, gg, go, cn, cp, dyr, dhr, dcr, dzr, H, u0):
    """One row of a block: gate gradients into dzr (torch order, full row of 4H) and
    dc_{t-1} into dcr. dhr holds dL/dh_t from step t+1."""
    U = cn.shape[0]
    for u in range(U):
        tc = tanh(cn[u])
        dh = dhr[u] + dyr[u]
        i, f, g, o = gi[u], gf[u], gg[u], go[u]
        dc = dcr[u] + dh * o * (one(tc) - tc * tc)
        dzr[u0 + u] = dc * g * i * (one(i) - i)
        dzr[H + u0 + u] = dc * cp[u] * f * (one(f) - f)
        dzr[2 * H + u0 + u] = dc * i * (one(g) - g * g)
        dzr[3 * H + u0 + u] = dh * tc * o * (one(o) - o)
        dcr[u] = dc * f


@njit(**JIT)
def recurrent_grad_block(j, dz_rows, wcols, bounds, dhs, sbuf):
    """dL/dh_{t-1} for unit block j: dhs[:rows, block] = dz_t W_hh[:, block]."""
    n, G = dz_rows.shape
    if n == 0:
        return
    u0, u1 = bounds[j], bounds[j + 1]
    U = u1 - u0
    out = sbuf[j, :n * U].reshape((n, U))
    np.dot(dz_rows, wcols[G * u0:G * u1].reshape((G, U)), out)
    for r in range(n):
        copy(dhs[r, u0:u1], out[r])


@njit(**JIT)
def backward_block(t, j, bounds, perm, nbs, offs, tg, tc, dy, dhs, dcs, dz):
    """Gate gradients of step t for unit block j over the rows active at t."""
    H = dhs.shape[1]
    u0, u1 = bounds[j], bounds[j + 1]
    for r in range(nbs[t]):
        o = perm[r]
        g = tg[t, o]
        cell_backward(g[u0:u1], g[H + u0:H + u1], g[2 * H + u0:2 * H + u1],
                      g[3 * H + u0:3 * H + u1], tc[t + 1, o, u0:u1], tc[t, o, u0:u1],
                      dy[t, o, u0:u1], dhs[r, u0:u1], dcs[r, u0:u1], dz[offs[t] + r], H, u0)


@njit(**JIT)
def project_chunk(xp, w_p, b_p, xw, m0, m1):
    """xw[m0:m1] = xp[m0:m1] W^T + b: the input projection of a slice of packed rows."""
    if m1 > m0:
        out = xw[m0:m1]
        np.dot(xp[m0:m1], w_p.T, out)
        for m in range(m1 - m0):
            row = out[m]
            for k in range(row.shape[0]):
                row[k] += b_p[k]


@njit(**JIT)
def weight_grad_chunk(c, m0, m1, dz, xp, hp, w_ih, dxp, pw_ih, pw_hh, pdb):
    """Partial sums over packed rows m0:m1 of dW_ih, dW_hh and db, and those rows of dx."""
    if m1 <= m0:
        zero(pw_ih[c])
        zero(pw_hh[c])
        zero(pdb[c])
        return
    d = dz[m0:m1]
    np.dot(d.T, xp[m0:m1], pw_ih[c])
    np.dot(d.T, hp[m0:m1], pw_hh[c])
    np.dot(d, w_ih, dxp[m0:m1])
    acc = pdb[c]
    zero(acc)
    for m in range(m1 - m0):
        row = d[m]
        for k in range(row.shape[0]):
            acc[k] += row[k]


@njit(**JIT)
def gather_rows(a, perm, nbs, offs, out):
    """out[offs[t] + r] = a[t, perm[r]] for the rows active at each step."""
    for t in range(nbs.shape[0]):
        for r in range(nbs[t]):
            copy(out[offs[t] + r], a[t, perm[r]])


@njit(**JIT)
def sum_chunks(parts, out):
    """out = parts.sum(axis=0) for C-contiguous parts [n, ...] and out [...]."""
    flat = out.reshape(out.size)
    p = parts.reshape((parts.shape[0], out.size))
    copy(flat, p[0])
    for c in range(1, p.shape[0]):
        row = p[c]
        for k in range(flat.shape[0]):
            flat[k] += row[k]
