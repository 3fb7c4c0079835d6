"""The workload every implementation runs, and the runner for fastlstm's own backends.

A runner has a `label`, `forward()` (one timed unit in inference mode), `train` (one
timed unit of forward+backward, or None when the implementation cannot train), and
`output()` / `input_grad()` giving y and dx for the checks made before timing. For the
stream config it also has `step()` (and `train_step`, or None): ONE call of one time step,
the state carried from the previous call, which is what the bench times for that config.
"""
from dataclasses import dataclass

import numpy as np

from ..api import LSTM


@dataclass
class Workload:
    cfg: object
    x: np.ndarray       # (T, B, I) float32
    dy: np.ndarray      # (T, B, H) float32, zero past each length
    lengths: object     # intp[B] or None
    state: dict         # torch-named float32 weights, shared by every implementation


def make_workload(cfg, seed=0):
    """The config's input, output gradient, lengths and weights (the same in every
    process: each is drawn from `seed`)."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((cfg.T, cfg.B, cfg.I)).astype(np.float32)
    dy = rng.standard_normal((cfg.T, cfg.B, cfg.H)).astype(np.float32)
    lengths = cfg.lengths()
    if lengths is not None:
        dy *= (np.arange(cfg.T)[:, None] < lengths[None, :])[..., None]
    state = LSTM(cfg.I, cfg.H, num_layers=cfg.layers, seed=seed).state_dict()
    return Workload(cfg, x, dy, lengths, state)


class StepCursor:
    """Where a stream of one-step calls is: the next step t and the state carried to it.
    The stream restarts from a zero state after the last step, so it never runs away."""

    def __init__(self, T):
        self.T, self.t, self.state = T, 0, None

    def advance(self, state):
        self.t += 1
        self.state = state
        if self.t == self.T:
            self.t, self.state = 0, None


def stream_pass(one_step, T, collect=False):
    """A whole pass of T one-step calls from a zero state, through the same one_step(cursor)
    that the timed calls make; the stacked results (T, B, ...) when collect."""
    cursor, out = StepCursor(T), []
    for _ in range(T):
        r = one_step(cursor)
        if collect:
            out.append(np.array(r, copy=True))
    return np.stack(out) if collect else None


class FastlstmRunner:
    def __init__(self, wl, backend):
        self.wl = wl
        self.backend = backend
        self.label = f"fastlstm[{backend}]"
        cfg = wl.cfg
        self.eval_model = LSTM(cfg.I, cfg.H, num_layers=cfg.layers, backend=backend).eval()
        self.train_model = LSTM(cfg.I, cfg.H, num_layers=cfg.layers, backend=backend)
        self.eval_model.load_state_dict(wl.state)
        self.train_model.load_state_dict(wl.state)
        # the one-step API when the model has one, else a call on a sequence of one step
        self.step_api = "step" if callable(getattr(self.eval_model, "step", None)) else "call"
        self._cursor, self._train_cursor = StepCursor(cfg.T), StepCursor(cfg.T)

    def _step(self, cursor):
        """One call of one step from `cursor` (carrying its state on); y_t (B, H)."""
        m, x = self.eval_model, self.wl.x
        if self.step_api == "step":
            y, state = m.step(x[cursor.t], cursor.state)
        else:
            y, state = m(x[cursor.t:cursor.t + 1], cursor.state)
            y = y[0]
        cursor.advance(state)
        return y

    def _train_step(self, cursor):
        """Forward+backward of one step from `cursor` (truncated BPTT of one step per
        call); dx_t (B, I)."""
        m, wl, t = self.train_model, self.wl, cursor.t
        _, state = m(wl.x[t:t + 1], cursor.state)
        dx, _ = m.backward(wl.dy[t:t + 1])
        cursor.advance(state)
        return dx[0]

    def step(self):
        """One timed call of one step, the state carried from the previous call."""
        self._step(self._cursor)

    def train_step(self):
        """One timed forward+backward of one step, the state carried."""
        self._train_step(self._train_cursor)

    def forward(self, collect=False):
        wl, m = self.wl, self.eval_model
        if not wl.cfg.stream:
            return m(wl.x, lengths=wl.lengths)[0]
        return stream_pass(self._step, wl.cfg.T, collect)

    def train(self, collect=False):
        wl, m = self.wl, self.train_model
        if not wl.cfg.stream:
            m(wl.x, lengths=wl.lengths)
            return m.backward(wl.dy)[0]
        return stream_pass(self._train_step, wl.cfg.T, collect)

    def output(self):
        return self.forward(collect=True)

    def input_grad(self):
        return self.train(collect=True)

    def reference_output(self):
        """y of the whole sequence in one call: what a stream of one-step calls must
        reproduce (the oracle for the stream config, whatever the step path does)."""
        return self.eval_model(self.wl.x, lengths=self.wl.lengths)[0]
