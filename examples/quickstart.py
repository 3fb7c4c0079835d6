"""The README's usage example, runnable: python examples/quickstart.py"""
import os
import tempfile

import numpy as np

import fastlstm

model = fastlstm.LSTM(input_size=16, hidden_size=32, num_layers=2, bidirectional=True,
                      batch_first=True, seed=0)
x = np.random.default_rng(0).standard_normal((8, 20, 16)).astype(np.float32)
y, (h_n, c_n) = model(x, lengths=[20, 18, 15, 20, 9, 20, 1, 12])   # training mode by default
dx, (dh0, dc0) = model.backward(np.ones_like(y))                    # d sum(y) / d inputs
print("y", y.shape, "h_n", h_n.shape, "grad of weight_ih_l0", model.grads["weight_ih_l0"].shape)

with tempfile.TemporaryDirectory() as folder:                       # leaves nothing behind
    path = os.path.join(folder, "model.npz")
    model.save(path)                                                # .npz, no pickle
    served = fastlstm.load(path).eval()                             # no tape, no dropout
y2, _ = served(x, lengths=[20, 18, 15, 20, 9, 20, 1, 12])
assert np.allclose(y, y2)
