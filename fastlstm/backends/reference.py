"""The NumPy reference backend: the oracle every fast backend is tested against.

Deliberately plain: one loop over time steps, written next to the equations,
no fusion and no in-place tricks. Kernel contract: see contract.py. Of the packed-sequence
layout it only reads seq.lengths: each step works on the rows still inside their sequence.

    z_t = x_t W_ih^T + h_{t-1} W_hh^T + b          (G = 4H pre-activations)
    i, f, g, o = sigmoid(z_i), sigmoid(z_f), tanh(z_g), sigmoid(z_o)
    c_t = f * c_{t-1} + i * g
    h_t = o * tanh(c_t)
"""
import numpy as np

NAME = "numpy"


def sigmoid(z):
    # the tanh form never overflows, unlike 1 / (1 + exp(-z))
    return 0.5 * (1.0 + np.tanh(0.5 * z))


def _active_rows(lengths, t):
    """Rows still inside their sequence at step t (all of them without lengths)."""
    return slice(None) if lengths is None else np.flatnonzero(lengths > t)


def forward_layer(x, w_ih, w_hh, b, h0, c0, seq, y, h_n, c_n, tape):
    T = x.shape[0]
    H = w_hh.shape[1]
    lengths = seq.lengths
    h = h0.copy()
    c = c0.copy()
    if tape is not None:
        tape.gates[...] = 0
        tape.h[0] = h0
        tape.c[0] = c0
    for t in range(T):
        rows = _active_rows(lengths, t)
        z = x[t, rows] @ w_ih.T + h[rows] @ w_hh.T + b
        i = sigmoid(z[:, 0 * H:1 * H])
        f = sigmoid(z[:, 1 * H:2 * H])
        g = np.tanh(z[:, 2 * H:3 * H])
        o = sigmoid(z[:, 3 * H:4 * H])
        c[rows] = f * c[rows] + i * g
        h[rows] = o * np.tanh(c[rows])
        y[t] = 0
        y[t, rows] = h[rows]
        if tape is not None:
            tape.gates[t, rows] = np.concatenate([i, f, g, o], axis=1)
            tape.c[t + 1] = c
            tape.h[t + 1] = h
    h_n[...] = h
    c_n[...] = c


def backward_layer(tape, x, w_ih, w_hh, dy, dh_n, dc_n, seq,
                   dx, dw_ih, dw_hh, db, dh0, dc0):
    T = x.shape[0]
    H = w_hh.shape[1]
    lengths = seq.lengths
    dh = dh_n.copy()  # dL/dh_t flowing back from step t+1 (and from h_n)
    dc = dc_n.copy()
    dz_all = np.zeros(tape.gates.shape, x.dtype)  # dL/dz_t for every step (0 past a length)
    dx[...] = 0
    for t in reversed(range(T)):
        rows = _active_rows(lengths, t)
        gates = tape.gates[t, rows]
        i = gates[:, 0 * H:1 * H]
        f = gates[:, 1 * H:2 * H]
        g = gates[:, 2 * H:3 * H]
        o = gates[:, 3 * H:4 * H]
        c_prev = tape.c[t, rows]
        tanh_c = np.tanh(tape.c[t + 1, rows])

        dh_t = dh[rows] + dy[t, rows]
        dc_t = dc[rows] + dh_t * o * (1 - tanh_c ** 2)
        di = dc_t * g
        df = dc_t * c_prev
        dg = dc_t * i
        do = dh_t * tanh_c
        dz = np.concatenate([di * i * (1 - i), df * f * (1 - f),
                             dg * (1 - g ** 2), do * o * (1 - o)], axis=1)

        dz_all[t, rows] = dz
        dx[t, rows] = dz @ w_ih
        dh[rows] = dz @ w_hh
        dc[rows] = dc_t * f
    # The weights are shared by every step, so their gradients are sums over t:
    # dW_ih = sum_t dz_t^T x_t, dW_hh = sum_t dz_t^T h_{t-1}, db = sum_t dz_t (as single GEMMs)
    # over the real (step, row) pairs only: x past a length may hold anything (NaN * 0 is NaN)
    G = dz_all.shape[2]
    real = slice(None) if lengths is None else \
        (np.arange(T)[:, None] < np.asarray(lengths)[None, :]).reshape(-1)
    dz_flat = dz_all.reshape(-1, G)[real]
    dw_ih[...] = dz_flat.T @ x.reshape(-1, x.shape[2])[real]
    dw_hh[...] = dz_flat.T @ tape.h[:-1].reshape(-1, H)[real]
    db[...] = dz_flat.sum(axis=0)
    dh0[...] = dh
    dc0[...] = dc
