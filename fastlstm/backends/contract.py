"""The kernel contract every backend implements (see DESIGN.md, "The kernel contract").

Shape letters: T steps, B batch, I input features, H hidden units, G = 4H gate rows
in torch order i, f, g, o. Rightmost dimension fastest; every array C-contiguous
and of one dtype (float32 or float64). The API allocates every buffer; kernels
only write into the ones marked OUT.

    forward_layer(x[T,B,I], w_ih[G,I], w_hh[G,H], b[G], h0[B,H], c0[B,H],
                  lengths[B] (intp, 1..T) or None,
                  y[T,B,H] OUT, h_n[B,H] OUT, c_n[B,H] OUT, tape: Tape OUT or None)

    backward_layer(tape, x[T,B,I], w_ih, w_hh, dy[T,B,H], dh_n[B,H], dc_n[B,H], lengths,
                   dx[T,B,I] OUT, dw_ih[G,I] OUT, dw_hh[G,H] OUT, db[G] OUT,
                   dh0[B,H] OUT, dc0[B,H] OUT)

One layer, one direction, forward in time: the API reverses sequences for the
backward direction. b is bias_ih + bias_hh. Outputs are overwritten, never
accumulated. With lengths, steps t >= lengths[b] leave row b's state untouched,
write y[t,b] = 0 and dx[t,b] = 0, and ignore dy[t,b].

A backend that cannot handle a case raises NotImplementedError; "auto" then
tries the next backend.

Optionally a backend exposes pack_weights(w_ih, w_hh, b) -> an object of its own: the API
calls it once per weights update (per layer and direction) and passes the result back as
forward_layer(..., packed=p) and backward_layer(..., packed=p), so that laying the weights
out for the kernels is not repeated on every call.
"""
from dataclasses import dataclass

import numpy as np


@dataclass
class Tape:
    """What backward needs from forward, written by forward_layer (training mode)."""
    # entries of steps past a row's length are unspecified: backward never reads them
    gates: np.ndarray  # [T,B,G] post-activation i, f, g, o
    c: np.ndarray      # [T+1,B,H] cell states, c[0] = c0
    h: np.ndarray      # [T+1,B,H] hidden states, h[0] = h0

    @classmethod
    def empty(cls, T, B, H, dtype):
        return cls(gates=np.empty((T, B, 4 * H), dtype), c=np.empty((T + 1, B, H), dtype),
                   h=np.empty((T + 1, B, H), dtype))
