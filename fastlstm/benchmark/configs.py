"""The built-in benchmark configs (DESIGN.md's measured table plus seed, stream, lengths)."""
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Config:
    name: str
    B: int
    T: int
    I: int  # noqa: E741 (the shape letter used throughout)
    H: int
    layers: int = 1
    stream: bool = False  # one time step per call, the state carried by the caller
    ragged: bool = False  # lengths spread over 50-100% of T
    about: str = ""
    group: str = ""  # configs the closing summary sums up in one sentence

    def lengths(self):
        """Per-sequence lengths (ragged configs) or None; the same every call."""
        if not self.ragged:
            return None
        rng = np.random.default_rng(1234)
        lengths = np.round(np.linspace(self.T / 2, self.T, self.B)).astype(np.intp)
        return rng.permutation(lengths)

    def sequence_steps(self):
        """(sequence, step) pairs of real work: B*T, or the sum of lengths."""
        lengths = self.lengths()
        return self.B * self.T if lengths is None else int(lengths.sum())

    def flops(self, backward=False):
        """2 x multiply-adds of the gate GEMMs over the real steps; backward costs twice more."""
        per_step = sum(8 * self.H * ((self.I if k == 0 else self.H) + self.H)
                       for k in range(self.layers))
        fwd = float(per_step) * self.sequence_steps()
        return fwd * (3.0 if backward else 1.0)

    def shape_text(self):
        text = f"B={self.B} T={self.T} I={self.I} H={self.H}"
        if self.layers > 1:
            text += f" layers={self.layers}"
        return text


CONFIGS = {c.name: c for c in [
    Config("edge", B=1, T=100, I=32, H=128, about="small model, one sequence",
           group="small models"),
    Config("single", B=1, T=100, I=256, H=256, about="one sequence, W_hh 1 MB",
           group="one sequence, larger weights"),
    Config("mid", B=16, T=100, I=64, H=256, about="a training batch",
           group="training batches"),
    Config("large", B=64, T=50, I=512, H=512, about="GEMM-sized", group="GEMM-sized batches"),
    Config("seed", B=32, T=10, I=1, H=50, layers=2,
           about="Keras-style seed model: LSTM(50) -> LSTM(50) on 1 feature",
           group="small models"),
    Config("stream", B=1, T=100, I=32, H=128, stream=True,
           about="100 calls of one step each, state carried (sensor loop)",
           group="small models"),
    Config("lengths", B=16, T=100, I=64, H=256, ragged=True,
           about="mid with lengths over 50-100% of T (compare with mid: padded)",
           group="training batches"),
]}

# Whole programs timed from a fresh process each (fastlstm/benchmark/seed_fit.py), named
# like configs on the command line.
PROGRAMS = {"seed-fit": "the classic Keras program (LSTM(50) x 2 + Dense, adam, 100 epochs) "
                        "fitted in fastlstm.keras, PyTorch and Keras"}
