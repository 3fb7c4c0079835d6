"""Build an LSTM from another framework's weights, and hand weights back to it."""
from .api import LSTM
from .params import from_keras_weights, to_keras_weights


def from_keras(kernel, recurrent_kernel, bias=None, *, batch_first=True, dtype="float32",
               backend="auto"):
    """A one-layer LSTM holding a Keras LSTM layer's weights (layer.get_weights()).

    Keras stores kernel (input_size, 4*units) and recurrent_kernel (units, 4*units),
    gates i, f, c, o, and one bias; bias=None for a layer built with use_bias=False.
    batch_first defaults to True because Keras feeds (batch, steps, features).
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
    """[kernel, recurrent_kernel, bias] of one layer/direction, for Keras' layer.set_weights.

    The bias (bias_ih + bias_hh) is left out when the model has bias=False.
    """
    if not isinstance(model, LSTM):
        raise TypeError(f"model must be a fastlstm.LSTM, got {type(model).__name__}")
    if not isinstance(layer, int) or not 0 <= layer < model.num_layers:
        raise ValueError(f"layer must be an int in 0..{model.num_layers - 1}, got {layer!r}")
    if reverse and not model.bidirectional:
        raise ValueError("reverse=True needs a bidirectional model")
    s = f"l{layer}{'_reverse' if reverse else ''}"
    p = model.state_dict()
    if not model.bias:
        return to_keras_weights(p[f"weight_ih_{s}"], p[f"weight_hh_{s}"])
    return to_keras_weights(p[f"weight_ih_{s}"], p[f"weight_hh_{s}"], p[f"bias_ih_{s}"],
                            p[f"bias_hh_{s}"])


def from_torch(module, *, dtype=None, backend="auto"):
    """An LSTM equal to a torch.nn.LSTM instance: same configuration, same weights.

    torch is not imported; the module is read through its attributes and state_dict().
    dtype defaults to the module's own (float32 or float64).
    """
    if not all(hasattr(module, a) for a in ("state_dict", "hidden_size", "num_layers")):
        raise TypeError(f"module must be a torch.nn.LSTM, got {type(module).__name__}")
    if getattr(module, "proj_size", 0):
        raise ValueError("torch LSTMs with proj_size > 0 are not supported")
    state = module.state_dict()
    if dtype is None:
        dtype = str(state["weight_ih_l0"].dtype).replace("torch.", "")
    return LSTM.from_state_dict(state, batch_first=bool(module.batch_first),
                                dropout=float(module.dropout), dtype=dtype, backend=backend)
