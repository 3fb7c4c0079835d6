"""The public LSTM: checks and converts inputs, owns every buffer and the weights, stacks
layers and directions, handles batch_first, lengths and dropout once for all backends,
and hands each (layer, direction) to a kernel from the backend registry.

A call runs in three parts: `_plan` checks and converts the inputs into one `_Plan`
(shapes, the packed-sequence layout, training or not); `_run_layers` is the one layer
loop, for training and inference alike; backward walks the same plan in reverse.
Weights live in one flat array per version (`_Weights`), with everything derived from
them (combined biases, each backend's packed layouts) cached on that version.
"""
import contextlib
import os
import sys
import threading
import warnings
from collections.abc import Mapping

import numpy as np

from . import _validate as check
from . import backends
from .backends.contract import Tape
from .backends.sequences import packed_sequences
from .params import (ModelFile, config_from_state_dict, flat_size, flat_views, init_params,
                     layer_param_names, param_shapes, save_npz, to_numpy)


class PrecisionWarning(UserWarning):
    """An input was cast to the model's dtype and lost precision (float64 into float32)."""


class LSTM:
    """A multi-layer LSTM with torch.nn.LSTM's semantics, weights and names.

    For each layer and time step t (gates in torch's order i, f, g, o)::

        i, f, o = sigmoid(x_t W_i^T + h_{t-1} U_i^T + b_i), ... ; g = tanh(...)
        c_t = f * c_{t-1} + i * g
        h_t = o * tanh(c_t)

    Parameters
    ----------
    input_size : int
        Features per time step of the input x.
    hidden_size : int
        Hidden units H of every layer.
    num_layers : int, default 1
        Stacked layers; layer k > 0 reads layer k-1's output.
    bias : bool, default True
        Whether the layers have biases (``bias_ih_l*`` and ``bias_hh_l*``).
    batch_first : bool, default False
        Whether x and y are (batch, steps, features) instead of (steps, batch, features).
        The states h and c are (layers*directions, batch, hidden_size) either way.
    dropout : float in [0, 1), default 0.0
        Dropout on every layer's output but the last, in training mode only.
    bidirectional : bool, default False
        Whether each layer also runs backward in time; outputs are then concatenated
        (2*hidden_size features) and states stacked per direction.
    dtype : {"float32", "float64"}, default "float32"
        The dtype of the weights and of every computation. Inputs (x, hx, dy, dh_n,
        dc_n) are cast to it; a cast that loses precision (float64 data into a float32
        model) gives a :class:`PrecisionWarning`, once per model.
    backend : str, default "auto"
        "auto" (the fastest backend available here, falling back case by case), or one
        of ``fastlstm.available_backends()``: "cython", "numba", "numpy".
    seed : int or None, default None
        Seeds the weight initialisation (torch's: every parameter uniform in
        [-1/sqrt(H), 1/sqrt(H)]) and the dropout masks; None draws fresh entropy.

    Attributes
    ----------
    grads : dict of str to ndarray
        Gradients of the last :meth:`backward` (of the calling thread), under the names of
        :meth:`state_dict`: views into one buffer (:attr:`flat_grads`), overwritten by
        each backward.
    training : bool
        True in training mode (the default), False after :meth:`eval`.
    backend_used : str or None
        The backend that ran the last forward.

    Raises
    ------
    TypeError, ValueError
        For an argument of the wrong type or out of range, naming the argument.

    Examples
    --------
    >>> m = fastlstm.LSTM(16, 32, num_layers=2, batch_first=True, seed=0)
    >>> y, (h_n, c_n) = m(np.zeros((8, 20, 16), np.float32))
    >>> dx, (dh0, dc0) = m.backward(np.ones_like(y))
    """

    def __init__(self, input_size, hidden_size, num_layers=1, bias=True, batch_first=False,
                 dropout=0.0, bidirectional=False, dtype="float32", backend="auto", seed=None):
        """Build the model with fresh weights (see the class docstring's Parameters)."""
        self._configure(input_size, hidden_size, num_layers, bias, batch_first, dropout,
                        bidirectional, dtype, backend)
        seed = check.seed_value(seed)
        if self.dropout > 0 and self.num_layers == 1:
            warnings.warn(f"dropout={self.dropout} has no effect with num_layers=1: it applies "
                          "to the outputs of every layer but the last (as in torch)",
                          UserWarning, stacklevel=2)
        init_seq, dropout_seq = np.random.SeedSequence(seed).spawn(2)
        self._w = self._new_weights(init_params(self._shapes, self.hidden_size, self.dtype,
                                                init_seq), version=0)
        self._dropout_rng = np.random.default_rng(dropout_seq)
        self.training = True

    def _configure(self, input_size, hidden_size, num_layers, bias, batch_first, dropout,
                   bidirectional, dtype, backend):
        """Check and set the configuration; everything but the weights and the mode."""
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
        self._shapes = param_shapes(self.input_size, self.hidden_size, self.num_layers,
                                    self.bias, self.bidirectional)
        # per layer*direction index: (weight_ih, weight_hh, bias_ih, bias_hh) names
        self._names = [layer_param_names(k, d, self.bias) for k in range(self.num_layers)
                       for d in range(self.num_directions)]
        self.backend_used = None  # name of the backend that ran the last forward
        self._local = threading.local()  # each thread's tape and gradients (_TrainState)
        self._dense_plans = {}  # (T, B) -> the _Plan of an inference call without lengths
        self._warned_cast = False

    # --- pickling and copying: the weights, config and mode; no caches, no tapes ------

    def __getstate__(self):
        return {"config": self.config, "backend": self.backend, "training": self.training,
                "weights": self._w.params, "version": self._w.version,
                "dropout_rng": self._dropout_rng, "grads": self._train_state().flat_grads,
                "warned_cast": self._warned_cast}

    def __setstate__(self, state):
        self._configure(**state["config"], backend=state["backend"])
        self._w = self._new_weights(state["weights"], state["version"])
        self._dropout_rng = state["dropout_rng"]
        self.training = state["training"]
        self._warned_cast = state["warned_cast"]
        self._train_state().flat_grads[...] = state["grads"]

    # --- training state: one per thread -------------------------------------------------

    def _train_state(self):
        """The calling thread's tape and gradients: a thread's backward always pairs with
        its own last forward, and threads training one model never share a buffer."""
        found = getattr(self._local, "state", None)
        if found is None:
            found = self._local.state = _TrainState(flat_size(self._shapes), self._shapes,
                                                    self.dtype)
        return found

    @property
    def grads(self):
        """Gradients of this thread's last :meth:`backward`, under :meth:`state_dict`'s
        names: views into :attr:`flat_grads`, overwritten by each backward."""
        return self._train_state().grads

    @property
    def flat_grads(self):
        """This thread's gradients, end to end in :meth:`state_dict`'s order (the layout of
        :attr:`flat_weights`)."""
        return self._train_state().flat_grads

    # --- configuration -------------------------------------------------------------------

    @property
    def num_directions(self):
        """2 for a bidirectional model, else 1."""
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
        """Set training mode: forward keeps the tape backward needs, dropout is active.

        Parameters
        ----------
        mode : bool, default True
            True for training mode, False for inference (as :meth:`eval`).

        Returns
        -------
        LSTM
            The model itself, so that ``m.train()(x)`` works.
        """
        self.training = check.boolean(mode, "mode")
        return self

    def eval(self):
        """Set inference mode: no tape (less memory, faster), no dropout, no backward.

        Returns
        -------
        LSTM
            The model itself.
        """
        return self.train(False)

    # --- weights -------------------------------------------------------------------------

    def _new_weights(self, params, version):
        """A _Weights holding `params` (any arrays of the right shapes) in one new flat array."""
        flat = np.empty(flat_size(self._shapes), self.dtype)
        views = flat_views(flat, self._shapes)
        for name, view in views.items():
            view[...] = params[name]
        return _Weights(version, flat, views, self._names, self.hidden_size)

    @property
    def weights_version(self):
        """A number that grows with every change of the weights (load or in-place update):
        anything derived from the weights can be keyed on it."""
        return self._w.version

    @property
    def flat_weights(self):
        """Every weight, end to end in :meth:`state_dict`'s order, as one read-only 1-D view
        (the layout of :attr:`flat_grads`). Change weights with :meth:`update_weights`."""
        view = self._w.flat.view()
        view.flags.writeable = False
        return view

    def state_dict(self):
        """The weights under torch.nn.LSTM's names.

        Returns
        -------
        dict of str to ndarray
            ``{name: copy of the weight}``; names, shapes and order exactly torch's
            (``weight_ih_l0``, ``weight_hh_l0``, ``bias_ih_l0``, ``bias_hh_l0``,
            ``..._reverse``, ...).
        """
        return {name: p.copy() for name, p in self._w.params.items()}

    def load_state_dict(self, state_dict):
        """Replace every weight.

        Checks everything before changing anything: on error the model is unchanged.
        The new weights are published at once: a call running in another thread
        finishes on the weights it started with, the next call uses the new ones.

        Parameters
        ----------
        state_dict : mapping of str to array_like
            One entry per name of :meth:`state_dict`, each an ndarray, torch tensor or
            nested list of that shape; values are cast to the model's dtype.

        Raises
        ------
        TypeError
            If `state_dict` is not a mapping or an entry is not numeric.
        ValueError
            If names are missing or unexpected, or a shape differs.
        """
        if not isinstance(state_dict, Mapping):
            raise TypeError(f"state_dict must be a mapping of name -> array, "
                            f"got {type(state_dict).__name__}")
        self._check_names(state_dict)
        arrays = {name: to_numpy(state_dict[name], f"state_dict[{name!r}]")
                  for name in self._shapes}
        self._check_shapes({name: arr.shape for name, arr in arrays.items()})
        self._w = self._new_weights(arrays, self._w.version + 1)

    def _check_names(self, names):
        """ValueError unless `names` are exactly this model's parameter names."""
        missing = [n for n in self._shapes if n not in names]
        extra = [n for n in names if n not in self._shapes]
        if missing or extra:
            msg = (f"state_dict does not match {self!r}: missing {missing or 'nothing'}, "
                   f"unexpected {extra or 'nothing'}")
            prefixes = {str(n)[:-len(m)] for n in extra for m in missing if str(n).endswith(m)}
            if prefixes:
                msg += f" (strip the prefix {sorted(prefixes)[0]!r} from the names?)"
            raise ValueError(msg)

    def _check_shapes(self, shapes):
        """ValueError unless shapes[name] is each parameter's shape."""
        for name, shape in self._shapes.items():
            if shapes[name] != shape:
                raise ValueError(f"state_dict[{name!r}] must have shape {shape}, "
                                 f"got {shapes[name]}")

    @contextlib.contextmanager
    def update_weights(self):
        """Change the weights in place, at the cost of the arithmetic alone (an optimizer
        step): a context that yields writable views of the model's own weight storage.

        Everything derived from the weights (combined biases, packed layouts) is rebuilt
        on the next call after the block ends, even if it raised. Not for a model that
        other threads are calling meanwhile: they would see half-updated weights (use
        :meth:`load_state_dict`, which publishes new weights at once, for that).

        Yields
        ------
        WeightViews
            ``{name: writable view}`` like :meth:`state_dict`, plus ``.flat``, every
            weight end to end in one 1-D view (the layout of :attr:`flat_grads`).

        Examples
        --------
        >>> with m.update_weights() as w:
        ...     w.flat -= 0.01 * m.flat_grads          # one SGD step
        """
        w = self._w
        try:
            yield WeightViews(w.params, w.flat)  # w.params are views into w.flat already
        finally:
            self._w = _Weights(w.version + 1, w.flat, w.params, self._names, self.hidden_size)

    @classmethod
    def from_state_dict(cls, state_dict, **kwargs):
        """An LSTM shaped by a torch.nn.LSTM state dict, holding its weights.

        Parameters
        ----------
        state_dict : mapping of str to array_like
            torch.nn.LSTM's ``state_dict()`` (tensors or arrays); input_size, hidden_size,
            num_layers, bias and bidirectional are read from its names and shapes.
        **kwargs
            Other constructor arguments (batch_first, dropout, dtype, backend, seed), or
            overrides of what the names imply.

        Returns
        -------
        LSTM

        Raises
        ------
        TypeError
            If `state_dict` is not a mapping, or an entry is not numeric.
        ValueError
            If it does not hold torch.nn.LSTM weights, or its shapes disagree.
        """
        if not isinstance(state_dict, Mapping):
            raise TypeError(f"state_dict must be a mapping of name -> array, "
                            f"got {type(state_dict).__name__}")
        model = cls(**{**config_from_state_dict(state_dict), **kwargs})
        model.load_state_dict(state_dict)
        return model

    def save(self, path):
        """Write the config and the weights to an .npz file, read back by :func:`load`.

        Parameters
        ----------
        path : str, os.PathLike or binary file
            Where to write; a path is written atomically (a temporary file, then renamed).
        """
        save_npz(path, self.config, self._w.params)

    # --- inputs --------------------------------------------------------------------------

    def _as_model_dtype(self, value, name):
        """value as an ndarray of the model's dtype, warning once per model when the cast
        loses precision."""
        if type(value) is np.ndarray and value.dtype == self.dtype:
            return value
        if not self._warned_cast and _wider_float(value, self.dtype):
            self._warned_cast = True
            warnings.warn(f"{name} has dtype {value.dtype} and is cast to this model's "
                          f"{self.dtype.name}, losing precision (warned once per model): pass "
                          f"{self.dtype.name} arrays, or build the model with "
                          "dtype='float64'", PrecisionWarning, stacklevel=_user_stacklevel())
        return check.float_array(value, name, self.dtype)

    def _plan(self, x, hx, lengths):
        """Check and convert one forward's inputs: (plan, x as (T, B, I), h0, c0)."""
        if (not self.training and lengths is None and type(x) is np.ndarray
                and x.dtype == self.dtype and x.ndim == 3 and not self.batch_first
                and x.flags.c_contiguous and (hx is None or _same_arrays(hx, self.dtype))):
            # inference on ready arrays (a serving or streaming loop that hands the state
            # back): the same checks, without the conversions that have nothing to do
            T, B, I = x.shape
            if I == self.input_size and T > 0 and B > 0:
                h0, c0 = check.state_pair(hx, self.num_layers * self.num_directions, B,
                                          self.hidden_size, self.dtype, False)
                return self._dense_plan(T, B), x, h0, c0
        x = self._as_model_dtype(x, "x")
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
        if isinstance(hx, (tuple, list)) and len(hx) == 2:  # other hx: state_pair says why
            hx = (self._as_model_dtype(hx[0], "hx[0] (h0)"),
                  self._as_model_dtype(hx[1], "hx[1] (c0)"))
        L, D, H = self.num_layers, self.num_directions, self.hidden_size
        h0, c0 = check.state_pair(hx, L * D, B, H, self.dtype, unbatched)
        if lengths is None and not unbatched and not self.batch_first and not self.training:
            return self._dense_plan(T, B), x, h0, c0
        seq = packed_sequences(T, B, lengths)
        rev = _Reverser(T, B, seq.lengths) if D == 2 else None
        return _Plan(T, B, unbatched, self.batch_first, seq, rev, self.training), x, h0, c0

    def _dense_plan(self, T, B):
        """The plan of a time-major inference call without lengths: it depends on (T, B)
        alone, so it is built once per shape (a few recent shapes are kept)."""
        found = self._dense_plans.get((T, B))
        if found is None:
            if len(self._dense_plans) >= 16:
                self._dense_plans.clear()
            rev = _Reverser(T, B, None) if self.bidirectional else None
            found = _Plan(T, B, False, False, packed_sequences(T, B), rev, False)
            self._dense_plans[(T, B)] = found
        return found

    # --- forward -------------------------------------------------------------------------

    def __call__(self, x, hx=None, lengths=None):
        """Same as :meth:`forward`."""
        return self.forward(x, hx, lengths)

    def forward(self, x, hx=None, lengths=None):
        """Run the model over whole sequences.

        Parameters
        ----------
        x : array_like
            (T, B, input_size), or (B, T, input_size) with batch_first, or (T, input_size)
            for one unbatched sequence. Cast to the model's dtype.
        hx : tuple (h0, c0) of array_like, optional
            Initial states, each (num_layers*D, B, hidden_size) ((num_layers*D,
            hidden_size) unbatched), D = 2 if bidirectional else 1. None: zeros.
        lengths : sequence of int, optional
            Each sequence's true length, 1..T (torch's packed sequences): steps past it
            output zeros and leave that sequence's state untouched, and cost nothing.

        Returns
        -------
        y : ndarray
            Every step's output of the last layer: (T, B, D*hidden_size) (batch first with
            batch_first; (T, D*hidden_size) unbatched).
        (h_n, c_n) : tuple of ndarray
            Each layer and direction's state after its last step, shaped like hx.

        Raises
        ------
        TypeError, ValueError
            For inputs of the wrong type, shape or range, naming the argument.
        """
        if (not self.training and lengths is None and not self.batch_first
                and not self.bidirectional and type(x) is np.ndarray and x.ndim == 3):
            done = self._forward_ready(x, hx)
            if done is not None:
                return done
        plan, x, h0, c0 = self._plan(x, hx, lengths)
        w = self._w  # one version of the weights for the whole call
        LD, H = self.num_layers * self.num_directions, self.hidden_size
        state = self._train_state()
        # This thread's last tape dies with this call: in training its arrays are reused
        # (tens of MB at large sizes, freshly faulted in otherwise). Dropped first, so a
        # call that fails half way never leaves a half-overwritten tape for backward.
        old, state.tape, state.last_forward = state.tape, None, "failed"
        spare = old.tapes() if plan.train and old is not None else {}
        hc = np.empty((2, LD, plan.B, H), self.dtype)
        y, records, masks = self._run_layers(w, plan, x, h0, c0, hc[0], hc[1], spare)
        h_n, c_n = hc[0], hc[1]
        if plan.unbatched:
            y, h_n, c_n = y[:, 0], h_n[:, 0], c_n[:, 0]
        elif plan.batch_first:
            y = np.ascontiguousarray(y.transpose(1, 0, 2))
        state.tape = (_ForwardTape(w, plan, records, masks, y.shape, h_n.shape)
                      if plan.train else None)
        state.last_forward = "train" if plan.train else "eval"
        return y, (h_n, c_n)

    def step(self, x_t, state=None):
        """Run one time step, the state carried by the caller: a sensor or event loop.

        Always runs as in :meth:`eval` mode (no dropout, nothing recorded for
        :meth:`backward`), with no per-call setup: the packed weights and the buffers are
        kept per thread and weights version, so a weight reload takes effect at the next
        step. The outputs are those of the same step in a whole-sequence call, bit for
        bit, wherever that call does not hoist its input projection into one GEMM (the
        compiled backend does for 128 inputs or more and 256 (step, row) pairs or more;
        the results then agree to float rounding).

        Parameters
        ----------
        x_t : array_like
            This step's input, (B, input_size), or (input_size,) for one unbatched
            sequence. Cast to the model's dtype.
        state : tuple (h, c) of array_like, optional
            The state after the previous step, each (num_layers, B, hidden_size)
            ((num_layers, hidden_size) unbatched), as the previous ``step`` returned it
            (or ``__call__``'s ``(h_n, c_n)``). None: zeros.

        Returns
        -------
        y_t : ndarray
            The last layer's output, (B, hidden_size) ((hidden_size,) unbatched).
        (h, c) : tuple of ndarray
            The state after this step, shaped like `state`: new arrays, the inputs are
            never written.

        Raises
        ------
        ValueError
            For a bidirectional model (a step needs the whole sequence's reverse
            direction), and for inputs of the wrong shape; TypeError for the wrong types.

        Examples
        --------
        >>> m = fastlstm.LSTM(3, 8, seed=0).eval()
        >>> state = None
        >>> for x_t in np.zeros((5, 3), np.float32):
        ...     y_t, state = m.step(x_t, state)
        >>> y_t.shape, state[0].shape
        ((8,), (1, 8))
        """
        st = self._runner()
        if st[1] is not None:
            try:  # arrays that are ready (the state a previous step returned): no Python
                return st[1].step(x_t, state, st[2].step)
            except TypeError:
                pass  # something to convert, or to explain
        x_t, unbatched = self._step_input(x_t)
        B = x_t.shape[0]
        h, c = self._step_state(state, B, unbatched) if state is not None else (None, None)
        if st[1] is not None:
            y, (h, c) = st[1].step(x_t, None if h is None else (h, c), st[2].step)
        else:
            y, (h, c) = self._step_generic(x_t, h, c)
        if unbatched:
            return y[0], (h[:, 0], c[:, 0])
        return y, (h, c)

    def _runner(self):
        """This thread's (weights version, compiled Stepper or None, its RunnerPlans), made
        anew when the weights changed."""
        st = getattr(self._local, "stepper", None)
        return st if st is not None and st[0] is self._w else self._new_stepper()

    def _new_stepper(self):
        """Build and keep this thread's runner for the current weights (see _runner)."""
        if self.bidirectional:
            raise ValueError("step() runs unidirectional models only: a bidirectional "
                             "layer's reverse direction needs the whole sequence first; call "
                             "the model on the sequence instead")
        w = self._w
        stepper, plans = None, None
        kernel = next(iter(self._kernels))
        if kernel.NAME == "cython" and kernel.fits_step(self.input_size, self.hidden_size):
            stepper, plans = kernel.runner([w.packed(k, kernel)
                                            for k in range(self.num_layers)], self.dtype)
        st = self._local.stepper = (w, stepper, plans)
        return st

    def _step_input(self, x_t):
        """x_t as a C-contiguous (B, I) array of the model's dtype, and whether it was 1-D."""
        x_t = self._as_model_dtype(x_t, "x_t")
        if x_t.ndim not in (1, 2) or x_t.shape[-1] != self.input_size or x_t.size == 0:
            raise ValueError(f"x_t must be (batch, input_size={self.input_size}) or "
                             f"(input_size,) for one unbatched sequence, got shape {x_t.shape}")
        unbatched = x_t.ndim == 1
        return np.ascontiguousarray(x_t[None] if unbatched else x_t), unbatched

    def _step_state(self, state, B, unbatched):
        """state checked and converted: C-contiguous (L, B, H) arrays of the model's dtype."""
        if isinstance(state, (tuple, list)) and len(state) == 2:
            state = (self._as_model_dtype(state[0], "state[0] (h)"),
                     self._as_model_dtype(state[1], "state[1] (c)"))
        h, c = check.state_pair(state, self.num_layers, B, self.hidden_size, self.dtype,
                                unbatched, name="state")
        return np.ascontiguousarray(h), np.ascontiguousarray(c)

    def _step_generic(self, x_t, h, c):
        """step() on the layer loop, for backends without a one-step path of their own."""
        B, L, H = x_t.shape[0], self.num_layers, self.hidden_size
        if h is None:
            h = c = np.zeros((L, B, H), self.dtype)
        hc = np.empty((2, L, B, H), self.dtype)
        y, _, _ = self._run_layers(self._w, self._dense_plan(1, B), x_t[None], h, c,
                                   hc[0], hc[1])
        return y[0], (hc[0], hc[1])

    def _forward_ready(self, x, hx):
        """Inference on arrays that are ready (time-major, the model's dtype, C-contiguous)
        through the compiled runner, with no per-call setup in Python: its results, bit for
        bit, are the general path's. None when it does not apply (the general path runs)."""
        st = self._runner()
        if st[1] is None:
            return None
        T, B = x.shape[0], x.shape[1]
        plans = st[2].sequence(T, B)
        if plans is None:
            return None
        try:
            out = st[1].sequence(x, hx, plans)
        except TypeError:  # something to convert, or to explain: the general path
            return None
        state = self._train_state()
        state.tape, state.last_forward = None, "eval"
        self.backend_used = "cython"
        return out

    def _run_layers(self, w, plan, x, h0, c0, h_n, c_n, spare=None):
        """The layer loop, for training and inference: every layer and direction on the
        kernels. Returns the last layer's output (T, B, D*H) and, in training, each
        layer-direction's record and the dropout masks. `spare`: {idx: Tape} no longer
        needed, whose arrays are reused when their shapes fit."""
        D, H = self.num_directions, self.hidden_size
        shape = (plan.T, plan.B, H)
        records = [] if plan.train else None
        masks = []
        layer_in = x
        for k in range(self.num_layers):
            outs = []
            for d in range(D):
                idx = k * D + d
                xin = layer_in if d == 0 else plan.rev(layer_in)
                y = np.empty(shape, self.dtype)
                tape = None
                if plan.train:
                    tape = spare.get(idx) if spare else None
                    if tape is None or tape.h.shape != (plan.T + 1, plan.B, H):
                        tape = Tape.empty(plan.T, plan.B, H, self.dtype)
                w_ih, w_hh, b = w.layer(idx)
                kernel, packed = self._run_forward(w, idx, xin, w_ih, w_hh, b, h0[idx],
                                                   c0[idx], plan.seq, y, h_n[idx], c_n[idx],
                                                   tape)
                outs.append(y if d == 0 else plan.rev(y))
                if plan.train:
                    records.append((kernel, packed, tape, xin))
            layer_in = outs[0] if D == 1 else np.concatenate(outs, axis=2)
            if plan.train and self.dropout > 0 and k < self.num_layers - 1:
                keep = self._dropout_rng.random(layer_in.shape) >= self.dropout
                mask = keep.astype(self.dtype) / self.dtype.type(1 - self.dropout)
                layer_in = layer_in * mask
                masks.append(mask)
        return layer_in, records, masks

    def _run_forward(self, w, idx, *args):
        """forward_layer on the first kernel that handles the case; returns that kernel
        and the weights it packed for itself (or None), which its backward_layer gets."""
        refusals = []
        for kernel in self._kernels:
            packed = w.packed(idx, kernel)
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
        """Gradients of the last training-mode forward (backpropagation through time).

        Parameters
        ----------
        dy : array_like
            dL/dy, shaped like that forward's y.
        dh_n, dc_n : array_like, optional
            dL/dh_n and dL/dc_n, shaped like its h_n and c_n; None means zeros.

        Returns
        -------
        dx : ndarray
            dL/dx, shaped like x.
        (dh0, dc0) : tuple of ndarray
            dL/dh0 and dL/dc0, shaped like h0 and c0.

        Also sets :attr:`grads` (dL/d of every weight; overwritten, not accumulated).

        Raises
        ------
        RuntimeError
            If no training-mode forward ran since the model was built or last ran in eval
            mode, or the weights were changed in place since that forward.
        ValueError
            If a gradient's shape differs from the forward's output.
        """
        state = self._train_state()
        tape = state.tape
        if tape is None:
            why = {"eval": "the last forward() ran in eval mode, which keeps no tape",
                   "failed": "the last forward() raised an error"}.get(
                       state.last_forward, "no forward() has run yet")
            raise RuntimeError(f"backward() needs a forward() in training mode first: {why} "
                               "(in this thread: each thread's backward pairs with its own "
                               "forward). Call model.train() and run forward() again.")
        if tape.weights.edited_after(self._w):
            raise RuntimeError("backward() after the weights were changed in place "
                               "(update_weights) since the forward: run forward() again")
        plan = tape.plan
        L, D, H, B = self.num_layers, self.num_directions, self.hidden_size, plan.B
        dy = self._as_model_dtype(dy, "dy")
        if dy.shape != tape.y_shape:
            raise ValueError(f"dy must have the shape of the last forward's y, {tape.y_shape}, "
                             f"got {dy.shape}")
        if plan.unbatched:
            dy = dy[:, None, :]
        elif plan.batch_first:
            dy = dy.transpose(1, 0, 2)
        dh_n = self._state_grad(dh_n, "dh_n", tape)
        dc_n = self._state_grad(dc_n, "dc_n", tape)

        w, grads = tape.weights, state.grads
        dhc0 = np.empty((2, L * D, B, H), self.dtype)
        d_out = dy
        for k in reversed(range(L)):
            d_in = None
            for d in range(D):
                idx = k * D + d
                kernel, packed, tp, xin = tape.records[idx]
                w_ih, w_hh, _ = w.layer(idx)
                n_ih, n_hh, n_bih, n_bhh = self._names[idx]
                dy_d = d_out[:, :, d * H:(d + 1) * H]
                dy_d = np.ascontiguousarray(dy_d) if d == 0 else plan.rev(dy_d)
                dx = np.empty_like(xin)
                db = grads[n_bih] if self.bias else np.empty(4 * H, self.dtype)
                args = (tp, xin, w_ih, w_hh, dy_d, dh_n[idx], dc_n[idx], plan.seq, dx,
                        grads[n_ih], grads[n_hh], db, dhc0[0, idx], dhc0[1, idx])
                if packed is None:
                    kernel.backward_layer(*args)
                else:
                    kernel.backward_layer(*args, packed=packed)
                if self.bias:  # b = bias_ih + bias_hh, so both get db
                    grads[n_bhh][...] = db
                if d == 1:
                    dx = plan.rev(dx)
                d_in = dx if d_in is None else d_in + dx
            if k > 0 and tape.masks:
                d_in = d_in * tape.masks[k - 1]
            d_out = d_in

        dx, dh0, dc0 = d_out, dhc0[0], dhc0[1]
        if plan.unbatched:
            return dx[:, 0], (dh0[:, 0], dc0[:, 0])
        if plan.batch_first:
            dx = np.ascontiguousarray(dx.transpose(1, 0, 2))
        return dx, (dh0, dc0)

    def _state_grad(self, g, name, tape):
        """dh_n or dc_n as a contiguous (L*D, B, H) array; zeros for None."""
        LD, B, H = self.num_layers * self.num_directions, tape.plan.B, self.hidden_size
        if g is None:
            return np.zeros((LD, B, H), self.dtype)
        g = self._as_model_dtype(g, name)
        if g.shape != tape.state_shape:
            raise ValueError(f"{name} must have the shape of the last forward's h_n, "
                             f"{tape.state_shape}, got {g.shape}")
        return np.ascontiguousarray(g.reshape(LD, B, H))


class _TrainState:
    """One thread's training state for one model: its last forward's tape, and the
    gradients of its last backward."""

    def __init__(self, size, shapes, dtype):
        self.tape = None
        self.last_forward = None  # "train" / "eval" / "failed" / None, for backward's error
        self.flat_grads = np.zeros(size, dtype)
        self.grads = flat_views(self.flat_grads, shapes)


class WeightViews(dict):
    """{name: writable view of a weight} plus `flat`, all weights in one 1-D view."""

    def __init__(self, views, flat):
        super().__init__(views)
        self.flat = flat


def _same_arrays(hx, dtype):
    """hx is a pair of ndarrays of `dtype` (the state a previous call handed back)."""
    return (type(hx) is tuple and len(hx) == 2 and type(hx[0]) is np.ndarray
            and type(hx[1]) is np.ndarray and hx[0].dtype == dtype and hx[1].dtype == dtype)


def _wider_float(value, dtype):
    """True when `value` (an array or tensor) holds floats wider than `dtype`."""
    dt = getattr(value, "dtype", None)
    if dt is None:
        return False
    try:
        dt = np.dtype(dt)
    except TypeError:  # a torch dtype: torch.float64
        name = str(dt).rsplit(".", 1)[-1]
        return name in ("float64", "double") and dtype.itemsize < 8
    return dt.kind == "f" and dt.itemsize > dtype.itemsize


_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))


def _user_stacklevel():
    """warnings.warn's stacklevel that points at the first caller outside fastlstm."""
    frame, level = sys._getframe(1), 1
    while frame is not None and frame.f_code.co_filename.startswith(_PACKAGE_DIR):
        frame, level = frame.f_back, level + 1
    return level


class _Weights:
    """One version of the weights and everything derived from them: combined biases and
    each backend's packed layouts, built on first use.

    A new version is a new object, published by one assignment: a call holds the
    version it started with to the end, and a layout packed from old weights can only
    land in the old version's cache, never in the new one's.
    """

    __slots__ = ("version", "flat", "params", "_names", "_H", "_layers", "_packed")

    def __init__(self, version, flat, params, names, hidden_size):
        self.version = version
        self.flat = flat  # every weight end to end; `params` are views into it
        self.params = params
        self._names = names
        self._H = hidden_size
        self._layers = [None] * len(names)
        self._packed = {}

    def edited_after(self, current):
        """Whether `current` shares this version's storage and was edited in place since."""
        return current is not self and current.flat is self.flat

    def layer(self, idx):
        """(w_ih, w_hh, b) of layer*direction `idx`, b = bias_ih + bias_hh."""
        found = self._layers[idx]
        if found is None:
            n_ih, n_hh, n_bih, n_bhh = self._names[idx]
            p = self.params
            b = (p[n_bih] + p[n_bhh] if n_bih is not None
                 else np.zeros(4 * self._H, self.flat.dtype))
            found = self._layers[idx] = (p[n_ih], p[n_hh], b)
        return found

    def packed(self, idx, kernel):
        """The kernel's own layout of layer*direction `idx`, packed once per version
        (None for a kernel without pack_weights)."""
        pack = getattr(kernel, "pack_weights", None)
        if pack is None:
            return None
        key = (idx, kernel.NAME)
        found = self._packed.get(key)
        if found is None:
            found = self._packed[key] = pack(*self.layer(idx))
        return found


class _Plan:
    """One call's shape and layout, shared by its forward and its backward."""

    __slots__ = ("T", "B", "unbatched", "batch_first", "seq", "rev", "train")

    def __init__(self, T, B, unbatched, batch_first, seq, rev, train):
        self.T, self.B = T, B
        self.unbatched, self.batch_first = unbatched, batch_first
        self.seq = seq      # the packed-sequence layout every kernel takes
        self.rev = rev      # the backward direction's time reversal, or None
        self.train = train


class _ForwardTape:
    """Everything backward needs from one training-mode forward."""

    def __init__(self, weights, plan, records, masks, y_shape, state_shape):
        self.weights = weights  # the _Weights version the forward ran on
        self.plan = plan
        self.records = records  # per layer*direction: (kernel, packed, Tape, x_in)
        self.masks = masks      # dropout masks applied to each layer's output but the last
        self.y_shape = y_shape
        self.state_shape = state_shape

    def tapes(self):
        """{layer*direction: its kernel Tape}, for the next forward to reuse."""
        return {idx: record[2] for idx, record in enumerate(self.records)}


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


CONFIG_KEYS = ("input_size", "hidden_size", "num_layers", "bias", "batch_first", "dropout",
               "bidirectional", "dtype")


def load(path, backend="auto"):
    """An LSTM from a file written by :meth:`LSTM.save` (config and weights, no pickle).

    The file is checked against itself before anything is allocated: its config must
    name every constructor argument and agree with the weights' names and shapes, and
    every weight's declared size with the bytes it holds.

    Parameters
    ----------
    path : str, bytes, os.PathLike or binary file
        The .npz file.
    backend : str, default "auto"
        The backend the loaded model runs on, as for :class:`LSTM`.

    Returns
    -------
    LSTM
        The saved model, in training mode.

    Raises
    ------
    FileNotFoundError
        If `path` does not exist.
    ValueError
        If the file is not a fastlstm model file, or its config and weights disagree; or
        `backend` is not available here.
    """
    backends.resolve(backend)  # a bad backend is the caller's error, not the file's
    with ModelFile(path) as f:
        config = f.config
        missing = [k for k in CONFIG_KEYS if k not in config]
        unknown = [k for k in config if k not in CONFIG_KEYS]
        if missing or unknown:
            raise f.error(f"holds an invalid fastlstm model: its config lacks {missing} "
                          f"and has unknown keys {unknown}")
        try:
            for name in ("input_size", "hidden_size", "num_layers"):
                check.positive_int(config[name], name)
            for name in ("bias", "batch_first", "bidirectional"):
                check.boolean(config[name], name)
            check.dropout_rate(config["dropout"])
            check.float_dtype(config["dtype"])
            # the number of weights the config implies, before building anything that big
            L, D = config["num_layers"], 2 if config["bidirectional"] else 1
            per_layer = 4 if config["bias"] else 2
            if L * D * per_layer != len(f.shapes):
                raise ValueError(f"its config implies {L * D * per_layer} weights, the file "
                                 f"holds {len(f.shapes)}")
            model = LSTM.__new__(LSTM)
            model._configure(**config, backend=backend)
            model._check_names(f.shapes)  # names and shapes, before any weight is read
            model._check_shapes(f.shapes)
        except (TypeError, ValueError) as exc:
            raise f.error(f"holds an invalid fastlstm model: {exc}") from None
        weights = {name: f.read(name) for name in model._shapes}
    model._w = model._new_weights(weights, version=0)
    model._dropout_rng = np.random.default_rng()
    model.training = True
    return model
