"""Keras's activations for Dense: forward and backward in NumPy.

    act = get("softmax")
    a = act.forward(z)            # z is left untouched
    dz = act.backward(z, a, da)   # d(loss)/dz from d(loss)/da; z, a, da left untouched

Derivatives come from the saved output where they can (sigmoid a(1-a), tanh 1-a^2,
softmax a(da - sum(da*a))), as the LSTM kernels do. Identifiers: None, "linear", "relu",
"sigmoid", "tanh", "softmax" (over the last axis), or an object returned by get().
"""
import numpy as np

__all__ = ["Activation", "get", "ACTIVATIONS"]


class Activation:
    """An elementwise (or last-axis) function with its derivative. `name` is Keras's."""

    name = None

    def forward(self, z):
        raise NotImplementedError

    def backward(self, z, a, da):
        raise NotImplementedError

    def __call__(self, z):
        return self.forward(np.asarray(z))

    def get_config(self):
        return self.name

    def __repr__(self):
        return f"<activation {self.name}>"

    def __eq__(self, other):
        return isinstance(other, Activation) and other.name == self.name

    def __hash__(self):
        return hash(self.name)


class Linear(Activation):
    name = "linear"

    def forward(self, z):
        return z

    def backward(self, z, a, da):
        return da


class ReLU(Activation):
    name = "relu"

    def forward(self, z):
        return np.maximum(z, 0)

    def backward(self, z, a, da):
        # 0 at z == 0, as Keras (torch, TensorFlow) differentiate relu
        return np.multiply(da, z > 0)


class Sigmoid(Activation):
    name = "sigmoid"

    def forward(self, z):
        # exp(-|z|) never overflows: 1/(1+e) for z >= 0, e/(1+e) for z < 0
        e = np.abs(z)
        np.negative(e, out=e)
        np.exp(e, out=e)
        a = e + 1
        np.reciprocal(a, out=a)
        np.multiply(e, a, out=e)
        np.copyto(a, e, where=z < 0)
        return a

    def backward(self, z, a, da):
        dz = np.subtract(1, a)
        dz *= a
        dz *= da
        return dz


class Tanh(Activation):
    name = "tanh"

    def forward(self, z):
        return np.tanh(z)

    def backward(self, z, a, da):
        dz = np.square(a)
        np.subtract(1, dz, out=dz)
        dz *= da
        return dz


class Softmax(Activation):
    name = "softmax"

    def forward(self, z):
        a = z - z.max(axis=-1, keepdims=True)
        np.exp(a, out=a)
        a /= a.sum(axis=-1, keepdims=True)
        return a

    def backward(self, z, a, da):
        dz = np.multiply(da, a)
        s = dz.sum(axis=-1, keepdims=True)
        dz -= a * s
        return dz


ACTIVATIONS = {cls.name: cls() for cls in (Linear, ReLU, Sigmoid, Tanh, Softmax)}


def get(identifier):
    """The activation for a Keras identifier: None or "linear", "relu", "sigmoid", "tanh",
    "softmax", or an Activation (returned as is). ValueError for anything else."""
    if identifier is None:
        return ACTIVATIONS["linear"]
    if isinstance(identifier, Activation):
        return identifier
    if isinstance(identifier, str) and identifier in ACTIVATIONS:
        return ACTIVATIONS[identifier]
    raise ValueError(f"unknown activation {identifier!r}: fastlstm.keras knows None, "
                     + ", ".join(repr(n) for n in ACTIVATIONS))
