"""Keras-style models on the fastlstm engine: Keras 3's names and semantics, NumPy only.

    from fastlstm.keras import Sequential, LSTM, Dense
    model = Sequential([LSTM(50, return_sequences=True, input_shape=(10, 1)), LSTM(50), Dense(1)])
    model.compile(optimizer="adam", loss="mse")
    model.fit(x, y, epochs=100, batch_size=32)

Each LSTM layer runs on fastlstm.LSTM (the fastest backend here); dense layers, losses and
optimizers are NumPy. Names are loaded on first use, so importing fastlstm.keras is cheap.
"""
import importlib

# public name -> submodule that defines it
_EXPORTS = {
    "Sequential": "model", "Input": "layers",
    "Layer": "layers", "LSTM": "layers", "Bidirectional": "layers", "Dense": "layers",
    "Dropout": "layers", "Embedding": "layers", "InputLayer": "layers",
    "SGD": "optimizers", "Adam": "optimizers", "AdamW": "optimizers", "RMSprop": "optimizers",
    "History": "callbacks", "EarlyStopping": "callbacks", "ModelCheckpoint": "callbacks",
    "Callback": "callbacks",
    "load_model": "saving", "save_model": "saving",
}
_SUBMODULES = ("layers", "model", "optimizers", "losses", "metrics", "activations",
               "callbacks", "utils", "saving", "random")

__all__ = sorted(_EXPORTS) + list(_SUBMODULES)


def __getattr__(name):
    if name in _SUBMODULES:
        return importlib.import_module(f".{name}", __name__)
    if name in _EXPORTS:
        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module 'fastlstm.keras' has no attribute {name!r}")


def __dir__():
    return __all__
