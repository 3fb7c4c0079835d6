"""The workload every implementation runs, and the runner for fastlstm's own backends.

A runner has a `label`, `forward()` (one timed unit in inference mode), `train` (one
timed unit of forward+backward, or None when the implementation cannot train), and
`output()` / `input_grad()` giving y and dx for the checks made before timing.
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
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((cfg.T, cfg.B, cfg.I)).astype(np.float32)
    dy = rng.standard_normal((cfg.T, cfg.B, cfg.H)).astype(np.float32)
    lengths = cfg.lengths()
    if lengths is not None:
        dy *= (np.arange(cfg.T)[:, None] < lengths[None, :])[..., None]
    state = LSTM(cfg.I, cfg.H, num_layers=cfg.layers, seed=seed).state_dict()
    return Workload(cfg, x, dy, lengths, state)


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

    def forward(self, collect=False):
        wl, m = self.wl, self.eval_model
        if not wl.cfg.stream:
            return m(wl.x, lengths=wl.lengths)[0]
        state, ys = None, []
        for t in range(wl.cfg.T):  # one call per step, the state carried by the caller
            y, state = m(wl.x[t:t + 1], state)
            if collect:
                ys.append(y)
        return np.concatenate(ys) if collect else None

    def train(self, collect=False):
        wl, m = self.wl, self.train_model
        if not wl.cfg.stream:
            m(wl.x, lengths=wl.lengths)
            return m.backward(wl.dy)[0]
        state, dxs = None, []
        for t in range(wl.cfg.T):  # truncated BPTT of one step per call
            _, state = m(wl.x[t:t + 1], state)
            dx, _ = m.backward(wl.dy[t:t + 1])
            if collect:
                dxs.append(dx)
        return np.concatenate(dxs) if collect else None

    def output(self):
        return self.forward(collect=True)

    def input_grad(self):
        return self.train(collect=True)
