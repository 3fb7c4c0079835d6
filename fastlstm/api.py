"""The public LSTM: checks and converts inputs, owns every buffer, stacks layers and
directions, handles batch_first, lengths and dropout once for all backends, and
hands each (layer, direction) to a kernel from the backend registry.
"""
import warnings
from collections.abc import Mapping

import numpy as np

from . import _validate as check
from . import backends
from .backends.contract import Tape
from .params import (config_from_state_dict, init_params, load_npz, param_shapes, save_npz,
                     to_numpy)


class LSTM:
    """A multi-layer LSTM with torch.nn.LSTM's semantics, weights and names.

    x is (T, B, input_size), or (B, T, input_size) with batch_first=True, or
    (T, input_size) unbatched. Returns y (T, B, D*hidden_size) and (h_n, c_n),
    each (num_layers*D, B, hidden_size), D = 2 if bidirectional else 1.
    """

    def __init__(self, input_size, hidden_size, num_layers=1, bias=True, batch_first=False,
                 dropout=0.0, bidirectional=False, dtype="float32", backend="auto", seed=None):
        self.input_size = check.positive_int(input_size, "input_size")
        self.hidden_size = check.positive_int(hidden_size, "hidden_size")
        self.num_layers = check.positive_int(num_layers, "num_layers")
        self.bias = check.boolean(bias, "bias")
        self.batch_first = check.boolean(batch_first, "batch_first")
        self.dropout = check.dropout_rate(dropout)
        self.bidirectional = check.boolean(bidirectional, "bidirectional")
        self.dtype = check.float_dtype(dtype)
        self._kernels = backends.resolve(backend)
        self.backend = backend
        seed = check.seed_value(seed)
        if self.dropout > 0 and self.num_layers == 1:
            warnings.warn(f"dropout={self.dropout} has no effect with num_layers=1: it applies "
                          "to the outputs of every layer but the last (as in torch)",
                          UserWarning, stacklevel=2)

        self._shapes = param_shapes(self.input_size, self.hidden_size, self.num_layers,
                                    self.bias, self.bidirectional)
        init_seq, dropout_seq = np.random.SeedSequence(seed).spawn(2)
        self._params = init_params(self._shapes, self.hidden_size, self.dtype, init_seq)
        self._dropout_rng = np.random.default_rng(dropout_seq)
        self._layer_weights = None  # (w_ih, w_hh, b) per layer*direction, built on demand
        self._pack_cache = {}  # (index, backend name) -> that backend's packed weights
        self.grads = {name: np.zeros(shape, self.dtype) for name, shape in self._shapes.items()}
        self.training = True
        self.backend_used = None  # name of the backend that ran the last forward
        self._tape = None
        self._last_forward = None  # "train" / "eval" / None, for backward's error message

    # --- configuration and weights -------------------------------------------------------

    @property
    def num_directions(self):
        return 2 if self.bidirectional else 1

    @property
    def config(self):
        """Constructor arguments (without backend and seed): enough to rebuild the shape."""
        return dict(input_size=self.input_size, hidden_size=self.hidden_size,
                    num_layers=self.num_layers, bias=self.bias, batch_first=self.batch_first,
                    dropout=self.dropout, bidirectional=self.bidirectional,
                    dtype=self.dtype.name)

    def __repr__(self):
        extra = "".join(f", {k}={v!r}" for k, v in self.config.items()
                        if k not in ("input_size", "hidden_size"))
        return f"LSTM({self.input_size}, {self.hidden_size}{extra}, backend={self.backend!r})"

    def train(self, mode=True):
        """Training mode: forward keeps the tape backward needs, dropout is active."""
        self.training = check.boolean(mode, "mode")
        return self

    def eval(self):
        """Inference mode: no tape (less memory, faster), no dropout, no backward."""
        return self.train(False)

    def state_dict(self):
        """{name: copy of the weight}, names, shapes and order exactly torch.nn.LSTM's."""
        return {name: p.copy() for name, p in self._params.items()}

    def load_state_dict(self, state_dict):
        """Replace every weight; accepts ndarrays, torch tensors or nested lists.

        Checks everything before changing anything: on error the model is unchanged.
        """
        if not isinstance(state_dict, Mapping):
            raise TypeError(f"state_dict must be a mapping of name -> array, "
                            f"got {type(state_dict).__name__}")
        missing = [n for n in self._shapes if n not in state_dict]
        extra = [n for n in state_dict if n not in self._shapes]
        if missing or extra:
            msg = (f"state_dict does not match {self!r}: missing {missing or 'nothing'}, "
                   f"unexpected {extra or 'nothing'}")
            prefixes = {str(n)[:-len(m)] for n in extra for m in missing if str(n).endswith(m)}
            if prefixes:
                msg += f" (strip the prefix {sorted(prefixes)[0]!r} from the names?)"
            raise ValueError(msg)
        new = {}
        for name, shape in self._shapes.items():
            arr = to_numpy(state_dict[name], f"state_dict[{name!r}]")
            if arr.shape != shape:
                raise ValueError(f"state_dict[{name!r}] must have shape {shape}, got {arr.shape}")
            new[name] = np.array(arr, dtype=self.dtype, order="C", copy=True)
        self._params = new
        self._weights_changed()

    @classmethod
    def from_state_dict(cls, state_dict, **kwargs):
        """An LSTM shaped by a torch.nn.LSTM state dict, holding its weights.

        kwargs (batch_first, dropout, dtype, backend, ...) override what the names imply.
        """
        if not isinstance(state_dict, Mapping):
            raise TypeError(f"state_dict must be a mapping of name -> array, "
                            f"got {type(state_dict).__name__}")
        model = cls(**{**config_from_state_dict(state_dict), **kwargs})
        model.load_state_dict(state_dict)
        return model

    def save(self, path):
        """Write config + weights to an .npz file (loaded by fastlstm.load, no pickle)."""
        save_npz(path, self.config, self._params)

    def _weights_changed(self):
        """Drop everything derived from the weights (combined biases, packed layouts)."""
        self._layer_weights = None
        self._pack_cache = {}

    def _packed(self, index, kernel):
        """The kernel's own layout of layer*direction `index`'s weights, packed once per
        weights (kernels without a pack_weights get None)."""
        pack = getattr(kernel, "pack_weights", None)
        if pack is None:
            return None
        key = (index, kernel.NAME)
        packed = self._pack_cache.get(key)
        if packed is None:
            packed = self._pack_cache[key] = pack(*self._weights(index))
        return packed

    def _weights(self, index):
        """(w_ih, w_hh, b) of layer*directions index `index`, b = bias_ih + bias_hh."""
        if self._layer_weights is None:
            G = 4 * self.hidden_size
            built = []
            for k in range(self.num_layers):
                for s in ("", "_reverse")[:self.num_directions]:
                    p = self._params
                    b = (p[f"bias_ih_l{k}{s}"] + p[f"bias_hh_l{k}{s}"] if self.bias
                         else np.zeros(G, self.dtype))
                    built.append((p[f"weight_ih_l{k}{s}"], p[f"weight_hh_l{k}{s}"], b))
            self._layer_weights = built
        return self._layer_weights[index]

    # --- forward -------------------------------------------------------------------------

    def __call__(self, x, hx=None, lengths=None):
        return self.forward(x, hx, lengths)

    def forward(self, x, hx=None, lengths=None):
        """y, (h_n, c_n) = forward(x, hx=(h0, c0) or None, lengths=None or ints[B]).

        lengths gives each sequence's true length (torch's packed sequences): steps
        past it output zeros and leave that sequence's state untouched.
        """
        if not self.training and lengths is None and self.num_directions == 1:
            out = self._inference_fast_path(x, hx)
            if out is not None:
                return out
        x = check.float_array(x, "x", self.dtype)
        if x.ndim not in (2, 3):
            raise ValueError("x must be 3-D (seq_len, batch, input_size) — or (batch, seq_len, "
                             "input_size) with batch_first — or 2-D (seq_len, input_size), "
                             f"got shape {x.shape}")
        unbatched = x.ndim == 2
        if unbatched:
            if lengths is not None:
                raise ValueError("lengths needs a batched (3-D) x; got 2-D (unbatched) x")
            x = x[:, None, :]
        elif self.batch_first:
            x = x.transpose(1, 0, 2)
        T, B, I = x.shape
        if I != self.input_size:
            raise ValueError(f"x must have input_size={self.input_size} features in its last "
                             f"dimension, got shape {x.shape if not unbatched else (T, I)}")
        if T < 1 or B < 1:
            raise ValueError(f"x must have at least one time step and one batch entry, "
                             f"got {T} steps and batch {B}")
        # training keeps x on the tape: copy it so later changes by the caller can't leak in
        x = np.array(x, order="C", copy=True) if self.training else np.ascontiguousarray(x)
        if lengths is not None:
            lengths = check.lengths_array(lengths, T, B)
        H, D, L = self.hidden_size, self.num_directions, self.num_layers
        h0, c0 = check.state_pair(hx, L * D, B, H, self.dtype, unbatched)

        train = self.training
        rev = _Reverser(T, B, lengths) if D == 2 else None
        h_n = np.empty((L * D, B, H), self.dtype)
        c_n = np.empty((L * D, B, H), self.dtype)
        records, masks = [], []
        layer_in = x
        for k in range(L):
            outs = []
            for d in range(D):
                idx = k * D + d
                w_ih, w_hh, b = self._weights(idx)
                xin = layer_in if d == 0 else rev(layer_in)
                y = np.empty((T, B, H), self.dtype)
                tape = Tape.empty(T, B, H, self.dtype) if train else None
                kernel, packed = self._run_forward(idx, xin, w_ih, w_hh, b, h0[idx], c0[idx],
                                                   lengths, y, h_n[idx], c_n[idx], tape)
                outs.append(y if d == 0 else rev(y))
                if train:
                    records.append((kernel, packed, tape, xin, w_ih, w_hh))
            layer_in = outs[0] if D == 1 else np.concatenate(outs, axis=2)
            if train and self.dropout > 0 and k < L - 1:
                keep = self._dropout_rng.random(layer_in.shape) >= self.dropout
                mask = keep.astype(self.dtype) / self.dtype.type(1 - self.dropout)
                layer_in = layer_in * mask
                masks.append(mask)

        y = layer_in
        if unbatched:
            y, h_n, c_n = y[:, 0], h_n[:, 0], c_n[:, 0]
        elif self.batch_first:
            y = np.ascontiguousarray(y.transpose(1, 0, 2))
        self._tape = _ForwardTape(records, masks, lengths, rev, unbatched, self.batch_first,
                                  y.shape, h_n.shape) if train else None
        self._last_forward = "train" if train else "eval"
        return y, (h_n, c_n)

    def _inference_fast_path(self, x, hx):
        """forward() in eval mode for the common, already-valid case (an ndarray of the
        model's dtype, time-major, state handed back by the previous call): the streamed
        one-step loop is dominated by per-call overhead. None means: take the full path."""
        if type(x) is not np.ndarray or x.dtype != self.dtype or x.ndim != 3 \
                or self.batch_first or not x.flags.c_contiguous:
            return None
        T, B, I = x.shape
        if I != self.input_size or T < 1 or B < 1:
            return None
        L, H = self.num_layers, self.hidden_size
        if hx is None:
            h0 = c0 = np.zeros((L, B, H), self.dtype)
        else:
            try:
                h0, c0 = check.state_pair(hx, L, B, H, self.dtype, False)
            except (TypeError, ValueError):
                return None  # the full path raises the same error, with its context
        hc = np.empty((2, L, B, H), self.dtype)
        layer_in = x
        for k in range(L):
            y = np.empty((T, B, H), self.dtype)
            self._run_forward(k, layer_in, *self._weights(k), h0[k], c0[k], None, y,
                              hc[0, k], hc[1, k], None)
            layer_in = y
        self._tape = None
        self._last_forward = "eval"
        return layer_in, (hc[0], hc[1])

    def _run_forward(self, idx, *args):
        """Run forward_layer on the first kernel that handles the case.

        Returns that kernel and the weights it packed for itself (or None), which its
        backward_layer gets back.
        """
        refusals = []
        for kernel in self._kernels:
            packed = self._packed(idx, kernel)
            try:
                if packed is None:
                    kernel.forward_layer(*args)
                else:
                    kernel.forward_layer(*args, packed=packed)
            except NotImplementedError as exc:
                refusals.append(f"{kernel.NAME}: {exc}")
                continue
            self.backend_used = kernel.NAME
            return kernel, packed
        raise NotImplementedError(f"backend={self.backend!r} cannot run this case "
                                  f"({'; '.join(refusals)})")

    # --- backward ------------------------------------------------------------------------

    def backward(self, dy, dh_n=None, dc_n=None):
        """Gradients of the last (training-mode) forward, given dL/dy, dL/dh_n and dL/dc_n.

        Returns dx, (dh0, dc0) shaped like x, h0 and c0, and sets self.grads
        (overwritten, not accumulated). None for dh_n / dc_n means zeros.
        """
        tape = self._tape
        if tape is None:
            why = ("the last forward() ran in eval mode, which keeps no tape"
                   if self._last_forward == "eval" else "no forward() has run yet")
            raise RuntimeError(f"backward() needs a forward() in training mode first: {why}. "
                               "Call model.train() and run forward() again.")
        H, D, L = self.hidden_size, self.num_directions, self.num_layers
        dy = check.float_array(dy, "dy", self.dtype)
        if dy.shape != tape.y_shape:
            raise ValueError(f"dy must have the shape of the last forward's y, {tape.y_shape}, "
                             f"got {dy.shape}")
        if tape.unbatched:
            dy = dy[:, None, :]
        elif tape.batch_first:
            dy = dy.transpose(1, 0, 2)
        T, B = dy.shape[:2]
        grad_out = {}
        for name, g in (("dh_n", dh_n), ("dc_n", dc_n)):
            if g is None:
                grad_out[name] = np.zeros((L * D, B, H), self.dtype)
                continue
            g = check.float_array(g, name, self.dtype)
            if g.shape != tape.state_shape:
                raise ValueError(f"{name} must have the shape of the last forward's h_n, "
                                 f"{tape.state_shape}, got {g.shape}")
            grad_out[name] = np.ascontiguousarray(g.reshape(L * D, B, H))
        dh_n, dc_n = grad_out["dh_n"], grad_out["dc_n"]

        grads = {}
        dh0 = np.empty((L * D, B, H), self.dtype)
        dc0 = np.empty((L * D, B, H), self.dtype)
        rev = tape.rev
        d_out = dy
        for k in reversed(range(L)):
            d_in = None
            for d in range(D):
                idx = k * D + d
                kernel, packed, tp, xin, w_ih, w_hh = tape.records[idx]
                dy_d = d_out[:, :, d * H:(d + 1) * H]
                dy_d = np.ascontiguousarray(dy_d) if d == 0 else rev(dy_d)
                dx = np.empty_like(xin)
                dw_ih, dw_hh = np.empty_like(w_ih), np.empty_like(w_hh)
                db = np.empty(4 * H, self.dtype)
                args = (tp, xin, w_ih, w_hh, dy_d, dh_n[idx], dc_n[idx], tape.lengths, dx,
                        dw_ih, dw_hh, db, dh0[idx], dc0[idx])
                if packed is None:
                    kernel.backward_layer(*args)
                else:
                    kernel.backward_layer(*args, packed=packed)
                if d == 1:
                    dx = rev(dx)
                d_in = dx if d_in is None else d_in + dx
                s = ("", "_reverse")[d]
                grads[f"weight_ih_l{k}{s}"] = dw_ih
                grads[f"weight_hh_l{k}{s}"] = dw_hh
                if self.bias:  # b = bias_ih + bias_hh, so both get db
                    grads[f"bias_ih_l{k}{s}"] = db
                    grads[f"bias_hh_l{k}{s}"] = db.copy()
            if k > 0 and tape.masks:
                d_in = d_in * tape.masks[k - 1]
            d_out = d_in
        self.grads = {name: grads[name] for name in self._shapes}

        dx = d_out
        if tape.unbatched:
            return dx[:, 0], (dh0[:, 0], dc0[:, 0])
        if tape.batch_first:
            dx = np.ascontiguousarray(dx.transpose(1, 0, 2))
        return dx, (dh0, dc0)


class _ForwardTape:
    """Everything backward needs from one training-mode forward."""

    def __init__(self, records, masks, lengths, rev, unbatched, batch_first, y_shape,
                 state_shape):
        self.records = records  # per layer*direction: (kernel, packed, Tape, x_in, w_ih, w_hh)
        self.masks = masks      # dropout masks applied to each layer's output but the last
        self.lengths = lengths
        self.rev = rev
        self.unbatched = unbatched
        self.batch_first = batch_first
        self.y_shape = y_shape
        self.state_shape = state_shape


class _Reverser:
    """Reverses each sequence in time within its own length: a[t, b] <- a[len_b-1-t, b].

    Steps past a length map to themselves, so padding stays in place; applying it
    twice gives back the original. Returns a new C-contiguous array.
    """

    def __init__(self, T, B, lengths):
        if lengths is None:
            self.index = None
        else:
            t = np.arange(T)[:, None]
            self.index = np.where(t < lengths, lengths - 1 - t, t)
            self.batch = np.arange(B)[None, :]

    def __call__(self, a):
        if self.index is None:
            return np.ascontiguousarray(a[::-1])
        return a[self.index, self.batch]


def load(path, backend="auto"):
    """An LSTM from a file written by LSTM.save (config + weights, no pickle)."""
    config, weights = load_npz(path)
    try:
        model = LSTM(**config, backend=backend)
        model.load_state_dict(weights)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"path {path!r} holds an invalid fastlstm model: {exc}") from None
    return model
