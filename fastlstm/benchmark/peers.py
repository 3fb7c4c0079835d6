"""PyTorch and ONNX Runtime runners, built on the same weights and inputs as fastlstm's.

Neither framework is a dependency: each is imported only when its runner is made,
and peer_status() says why one cannot run.
"""
import importlib
import importlib.util

import numpy as np

from ..params import to_onnx_weights
from .runners import StepCursor, stream_pass

PEERS = ("torch", "onnxruntime")
INSTALL = ('pip install "fastlstm[compare]" (from a clone of the repository: '
           'pip install ".[compare]")')


def peer_status(name):
    """'' when peer `name` can run here, else why not (e.g. "torch not installed")."""
    needs = {"torch": ["torch"], "onnxruntime": ["onnxruntime", "onnx"]}[name]
    missing = [m for m in needs if importlib.util.find_spec(m) is None]
    if missing:
        return f"{' and '.join(missing)} not installed"
    return ""


def peer_version(name):
    return importlib.import_module(name).__version__


def make_peer(name, wl, threads):
    return {"torch": TorchRunner, "onnxruntime": OnnxRuntimeRunner}[name](wl, threads)


class TorchRunner:
    """torch.nn.LSTM (packed sequences for lengths); LSTMCell for the one-step stream."""

    def __init__(self, wl, threads):
        import torch
        from torch.nn.utils import rnn
        self.torch, self.rnn, self.wl = torch, rnn, wl
        self.label = "torch"
        torch.set_num_threads(threads)
        cfg = wl.cfg
        weights = {k: torch.from_numpy(v.copy()) for k, v in wl.state.items()}
        if cfg.stream:  # LSTMCell is torch's fastest way to take one step at a time
            self.net = torch.nn.LSTMCell(cfg.I, cfg.H)
            self.net.load_state_dict({k[:-3]: v for k, v in weights.items()})  # drop "_l0"
        else:
            self.net = torch.nn.LSTM(cfg.I, cfg.H, num_layers=cfg.layers)
            self.net.load_state_dict(weights)
        self.x = torch.from_numpy(wl.x)
        self.dy = torch.from_numpy(wl.dy)
        self.lengths = None if wl.lengths is None else torch.from_numpy(wl.lengths.astype(np.int64))
        self.step_api = "LSTMCell"
        self._cursor, self._train_cursor = StepCursor(cfg.T), StepCursor(cfg.T)

    def _step(self, cursor):
        """One LSTMCell call of one step from `cursor`, its state carried on; h_t."""
        state = cursor.state or (self.torch.zeros(self.wl.cfg.B, self.wl.cfg.H),) * 2
        with self.torch.inference_mode():
            h, c = self.net(self.x[cursor.t], state)
        cursor.advance((h, c))
        return h.numpy()

    def _train_step(self, cursor):
        """Forward+backward of one step from `cursor` (truncated BPTT); dx_t."""
        h, c = cursor.state or (self.torch.zeros(self.wl.cfg.B, self.wl.cfg.H),) * 2
        self.net.zero_grad(set_to_none=True)
        x = self.x[cursor.t].clone().requires_grad_()
        h, c = self.net(x, (h.detach(), c.detach()))
        h.backward(self.dy[cursor.t])
        cursor.advance((h, c))
        return x.grad.numpy()

    def step(self):
        """One timed LSTMCell call of one step, the state carried from the previous call."""
        self._step(self._cursor)

    def train_step(self):
        """One timed forward+backward of one step, the state carried."""
        self._train_step(self._train_cursor)

    def _run(self, x):
        if self.lengths is None:
            return self.net(x)[0]
        packed = self.rnn.pack_padded_sequence(x, self.lengths, enforce_sorted=False)
        out, _ = self.net(packed)
        return self.rnn.pad_packed_sequence(out, total_length=x.shape[0])[0]

    def forward(self, collect=False):
        if self.wl.cfg.stream:
            return stream_pass(self._step, self.wl.cfg.T, collect)
        with self.torch.inference_mode():
            return self._run(self.x).numpy()

    def train(self, collect=False):
        if self.wl.cfg.stream:  # truncated BPTT of one step per call, as fastlstm's stream
            return stream_pass(self._train_step, self.wl.cfg.T, collect)
        self.net.zero_grad(set_to_none=True)
        x = self.x.clone().requires_grad_()
        self._run(x).backward(self.dy)
        return x.grad.numpy()

    def output(self):
        return self.forward(collect=True)

    def input_grad(self):
        return self.train(collect=True)


class OnnxRuntimeRunner:
    """ONNX Runtime's LSTM operator (one node per layer), inference only; for the stream
    config a graph of one step taking and giving the state."""

    train = None
    train_step = None

    def __init__(self, wl, threads):
        import onnxruntime as ort
        self.wl = wl
        self.label = "onnxruntime"
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        # Spinning left at its default (on), as a user gets it: the bench runs each
        # implementation in a process of its own and waits for its threads to go quiet
        # before the next one runs, so a spinning pool slows nobody else.
        self.sess = ort.InferenceSession(_onnx_model(wl).SerializeToString(), opts,
                                         providers=["CPUExecutionProvider"])
        self.feeds = {"X": wl.x}
        if wl.lengths is not None:
            self.feeds["seq_lens"] = wl.lengths.astype(np.int32)
        self.step_api = "LSTM graph of T=1"
        self._cursor = StepCursor(wl.cfg.T)

    def _step(self, cursor):
        """One run of the one-step graph from `cursor`, its state carried on; y_t."""
        B, H = self.wl.cfg.B, self.wl.cfg.H
        h, c = cursor.state or (np.zeros((1, B, H), np.float32),) * 2
        y, h, c = self.sess.run(None, {"X": self.wl.x[cursor.t:cursor.t + 1], "h0": h,
                                       "c0": c})
        cursor.advance((h, c))
        return y[0]

    def step(self):
        """One timed run of the one-step graph, the state carried from the previous call."""
        self._step(self._cursor)

    def forward(self, collect=False):
        if self.wl.cfg.stream:
            return stream_pass(self._step, self.wl.cfg.T, collect)
        return self.sess.run(["Y"], self.feeds)[0]

    def output(self):
        return self.forward(collect=True)


def _onnx_model(wl):
    """An ONNX graph of cfg.layers LSTM nodes holding wl.state's weights."""
    from onnx import TensorProto, helper, numpy_helper
    cfg = wl.cfg
    T, B = (1, 1) if cfg.stream else (cfg.T, cfg.B)
    f32 = TensorProto.FLOAT
    inputs = [helper.make_tensor_value_info("X", f32, [T, B, cfg.I])]
    if wl.lengths is not None:
        inputs.append(helper.make_tensor_value_info("seq_lens", TensorProto.INT32, [B]))
    if cfg.stream:
        inputs += [helper.make_tensor_value_info(n, f32, [1, B, cfg.H]) for n in ("h0", "c0")]
    inits = [numpy_helper.from_array(np.array([1], np.int64), "axis1")]
    nodes, current = [], "X"
    for k in range(cfg.layers):
        s = wl.state
        W, R, Bias = to_onnx_weights(s[f"weight_ih_l{k}"], s[f"weight_hh_l{k}"],
                                     s[f"bias_ih_l{k}"], s[f"bias_hh_l{k}"])
        inits += [numpy_helper.from_array(a, f"{n}{k}") for a, n in ((W, "W"), (R, "R"),
                                                                     (Bias, "B"))]
        ins = [current, f"W{k}", f"R{k}", f"B{k}"]
        ins += ["seq_lens" if wl.lengths is not None else ""]
        ins += ["h0", "c0"] if cfg.stream else []
        while ins[-1] == "":
            ins.pop()
        nodes.append(helper.make_node("LSTM", ins, [f"Y4_{k}", f"Yh{k}", f"Yc{k}"],
                                      hidden_size=cfg.H, direction="forward"))
        current = "Y" if k == cfg.layers - 1 else f"X{k + 1}"
        nodes.append(helper.make_node("Squeeze", [f"Y4_{k}", "axis1"], [current]))
    outputs = [helper.make_tensor_value_info("Y", f32, [T, B, cfg.H])]
    if cfg.stream:
        outputs += [helper.make_tensor_value_info(n, f32, [1, B, cfg.H]) for n in ("Yh0", "Yc0")]
    graph = helper.make_graph(nodes, "fastlstm_bench", inputs, outputs, initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8  # opset 17's IR version, which every recent ONNX Runtime reads
    return model
