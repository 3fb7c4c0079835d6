"""Build an LSTM from another framework's weights, and hand weights back to it.

The model keeps one internal layout (torch's names and gate order); each framework's
layout is translated here, at the edge, and nowhere else.
"""
import numbers

import numpy as np

from .api import LSTM
from .params import from_keras_weights, layer_param_names, to_keras_weights


def from_keras(kernel, recurrent_kernel, bias=None, *, batch_first=True, dtype="float32",
               backend="auto"):
    """A one-layer LSTM holding the weights of one Keras LSTM layer.

    ``fastlstm.from_keras(*layer.get_weights())`` gives a model whose output equals the
    layer's (Keras' default activations: sigmoid gates, tanh cell). Keras' gate order
    i, f, c, o is torch's i, f, g, o, so the kernels only need transposing; its single
    bias becomes ``bias_ih`` and ``bias_hh`` is zero (only their sum enters the equations).

    Parameters
    ----------
    kernel : array_like, shape (input_size, 4*units)
        The layer's input weights (Keras' ``kernel``).
    recurrent_kernel : array_like, shape (units, 4*units)
        The layer's recurrent weights (Keras' ``recurrent_kernel``).
    bias : array_like, shape (4*units,), optional
        The layer's bias; None for a layer built with ``use_bias=False``, which gives
        a model with ``bias=False``.
    batch_first : bool, default True
        The model's input layout; True because Keras feeds (batch, steps, features).
    dtype : {"float32", "float64"}, default "float32"
        The model's dtype; the weights are cast to it.
    backend : str, default "auto"
        The backend to run on, as for :class:`fastlstm.LSTM`.

    Returns
    -------
    LSTM
        A one-layer, one-direction model with ``input_size`` and ``hidden_size`` read
        from the kernels' shapes, in training mode.

    Raises
    ------
    ValueError
        If the shapes do not fit together as one Keras LSTM layer's weights, or `dtype`
        or `backend` is not one fastlstm knows.
    TypeError
        If a weight does not hold real numbers.

    See Also
    --------
    to_keras : the inverse, for ``layer.set_weights``.
    """
    w_ih, w_hh, b_ih, b_hh = from_keras_weights(kernel, recurrent_kernel, bias)
    model = LSTM(w_ih.shape[1], w_hh.shape[1], bias=b_ih is not None,
                 batch_first=batch_first, dtype=dtype, backend=backend)
    state = {"weight_ih_l0": w_ih, "weight_hh_l0": w_hh}
    if b_ih is not None:
        state.update(bias_ih_l0=b_ih, bias_hh_l0=b_hh)
    model.load_state_dict(state)
    return model


def to_keras(model, layer=0, reverse=False):
    """The weights of one layer and direction of a model, as Keras' LSTM layer holds them.

    ``layer.set_weights(fastlstm.to_keras(model))`` makes a Keras ``LSTM(hidden_size)``
    layer compute what that layer and direction of `model` computes.

    Parameters
    ----------
    model : LSTM
        The model to read.
    layer : int, default 0
        Which layer, ``0 <= layer < model.num_layers``.
    reverse : bool, default False
        The reverse direction of a bidirectional model instead of the forward one.

    Returns
    -------
    list of ndarray
        ``[kernel, recurrent_kernel, bias]``: kernel (layer's input size, 4*hidden_size),
        recurrent_kernel (hidden_size, 4*hidden_size) and bias (4*hidden_size,) =
        ``bias_ih + bias_hh``; without the bias when the model has ``bias=False``.
        Copies: changing them does not change the model.

    Raises
    ------
    TypeError
        If `model` is not a :class:`fastlstm.LSTM`.
    ValueError
        If `layer` is not an int in ``0..num_layers-1``, or `reverse` is set on a model
        that is not bidirectional.

    See Also
    --------
    from_keras : the inverse.
    """
    if not isinstance(model, LSTM):
        raise TypeError(f"model must be a fastlstm.LSTM, got {type(model).__name__}")
    if (isinstance(layer, (bool, np.bool_)) or not isinstance(layer, numbers.Integral)
            or not 0 <= layer < model.num_layers):
        raise ValueError(f"layer must be an int in 0..{model.num_layers - 1}, got {layer!r}")
    if reverse and not model.bidirectional:
        raise ValueError("reverse=True needs a bidirectional model")
    p = model.state_dict()
    names = layer_param_names(int(layer), 1 if reverse else 0, model.bias)
    return to_keras_weights(*(p[n] for n in names if n is not None))


def from_torch(module, *, dtype=None, backend="auto"):
    """An LSTM equal to a ``torch.nn.LSTM``: same configuration, same weights.

    torch itself is not imported: the module is read through its attributes
    (``hidden_size``, ``num_layers``, ``batch_first``, ``dropout``, ``proj_size``) and
    its ``state_dict()``, which also gives the input size, bias and directions.

    Parameters
    ----------
    module : torch.nn.LSTM
        The module to copy. Later changes to it do not reach the returned model.
    dtype : {"float32", "float64"}, optional
        The model's dtype; by default the module's own.
    backend : str, default "auto"
        The backend to run on, as for :class:`fastlstm.LSTM`.

    Returns
    -------
    LSTM
        A model in training mode, whatever the module's mode (``.eval()`` it for
        inference).

    Raises
    ------
    TypeError
        If `module` does not look like a ``torch.nn.LSTM`` (no ``state_dict``,
        ``hidden_size`` or ``num_layers``), or is another recurrent module (GRU, RNN).
    ValueError
        If the module has ``proj_size > 0``, or its dtype is not float32 or float64 and
        no `dtype` is given.

    See Also
    --------
    LSTM.from_state_dict : the same from a state dict alone.
    """
    if not all(hasattr(module, a) for a in ("state_dict", "hidden_size", "num_layers")):
        raise TypeError(f"module must be a torch.nn.LSTM, got {type(module).__name__}")
    mode = getattr(module, "mode", "LSTM")  # torch's RNN, GRU and LSTM share one base class
    if mode != "LSTM":
        raise TypeError(f"module must be a torch.nn.LSTM, got a {type(module).__name__} "
                        f"(mode {mode!r}): only LSTMs are supported")
    if getattr(module, "proj_size", 0):
        raise ValueError("torch LSTMs with proj_size > 0 are not supported")
    state = module.state_dict()
    if dtype is None:
        dtype = str(state["weight_ih_l0"].dtype).replace("torch.", "")
    return LSTM.from_state_dict(state, batch_first=bool(module.batch_first),
                                dropout=float(module.dropout), dtype=dtype, backend=backend)
