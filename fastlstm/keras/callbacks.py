"""Keras 3's callbacks for Sequential.fit: Callback, History, EarlyStopping, ModelCheckpoint.

A callback sees the model (`self.model`) and the logs fit passes: at each epoch's end
{"loss", <metrics>, "val_loss", "val_<metrics>"} (means over the epoch's batches, weighted
by batch size). Setting `model.stop_training = True` ends fit after the current batch.
Per-batch hooks cost nothing unless a callback defines them.
"""
import math
import os
import warnings

import numpy as np

__all__ = ["Callback", "History", "EarlyStopping", "ModelCheckpoint"]


class Callback:
    """Base class: override the hooks you need. `self.model` is the model being trained,
    `self.params` fit's {"verbose", "epochs", "steps"}."""

    def __init__(self):
        self.model = None
        self.params = {}

    def set_params(self, params):
        self.params = params

    def set_model(self, model):
        self.model = model

    # batch hooks: the on_train_* ones call the legacy on_batch_* names, as Keras does
    def on_batch_begin(self, batch, logs=None):
        pass

    def on_batch_end(self, batch, logs=None):
        pass

    def on_train_batch_begin(self, batch, logs=None):
        self.on_batch_begin(batch, logs=logs)

    def on_train_batch_end(self, batch, logs=None):
        self.on_batch_end(batch, logs=logs)

    def on_epoch_begin(self, epoch, logs=None):
        pass

    def on_epoch_end(self, epoch, logs=None):
        pass

    def on_train_begin(self, logs=None):
        pass

    def on_train_end(self, logs=None):
        pass

    def on_test_begin(self, logs=None):
        pass

    def on_test_end(self, logs=None):
        pass

    def on_predict_begin(self, logs=None):
        pass

    def on_predict_end(self, logs=None):
        pass


_BATCH_HOOKS = ("on_batch_begin", "on_batch_end", "on_train_batch_begin",
                "on_train_batch_end")


def _has_batch_hooks(callback):
    """Whether `callback` overrides a per-batch hook (fit then calls them)."""
    cls = type(callback)
    return any(getattr(cls, hook) is not getattr(Callback, hook) for hook in _BATCH_HOOKS)


class History(Callback):
    """Records each epoch's logs: `history` = {"loss": [...], "val_loss": [...], ...} and
    `epoch` = the epoch indices. fit returns it and sets `model.history` to it.

    It takes no parameters.
    """

    def __init__(self):
        """Create an empty history (no parameters)."""
        super().__init__()
        self.history = {}
        self.epoch = []

    def on_train_begin(self, logs=None):
        self.epoch = []

    def on_epoch_end(self, epoch, logs=None):
        self.epoch.append(epoch)
        for key, value in (logs or {}).items():
            self.history.setdefault(key, []).append(value)
        if self.model is not None:
            self.model.history = self


def _check_mode(mode, who):
    if mode not in ("auto", "min", "max"):
        raise ValueError(f"{who}: mode must be 'auto', 'min' or 'max', got {mode!r}")
    return mode


def _check_monitor(monitor, who):
    if not isinstance(monitor, str) or not monitor:
        raise ValueError(f"{who}: monitor must be a log name such as 'val_loss', got "
                         f"{monitor!r}")
    return monitor


def _higher_is_better(monitor, model):
    """Keras's mode="auto": the loss falls; a metric follows its direction (accuracy
    rises, errors fall); failing that, names containing "acc" rise."""
    name = monitor[4:] if monitor.startswith("val_") else monitor
    if name == "loss":
        return False
    for metric in getattr(model, "metrics", None) or []:
        if getattr(metric, "name", None) == name:
            direction = getattr(metric, "_direction", None) or getattr(metric, "direction",
                                                                       None)
            if direction in ("up", "down"):
                return direction == "up"
    if "acc" in name:
        return True
    if name in ("mse", "mae", "mape", "msle", "mean_squared_error", "mean_absolute_error",
                "mean_absolute_percentage_error", "mean_squared_logarithmic_error",
                "root_mean_squared_error", "rmse", "huber", "logcosh"):
        return False
    return None


class EarlyStopping(Callback):
    """Stop training when `monitor` has stopped improving (Keras 3's rules).

    An epoch improves when its value beats the best by more than `min_delta` (in the
    direction `mode` says; "auto": the loss and error metrics fall, accuracy rises).
    Training stops after `patience` epochs without improvement (never at the first
    epoch). `baseline`: improvements only reset the wait once they also beat it.
    `start_from_epoch`: epochs before it are not monitored. With restore_best_weights the
    best epoch's weights are put back when training ends (also when it ran to the end).
    A monitor missing from the logs warns and does nothing.

    Parameters
    ----------
    monitor : str, default "val_loss"
        The log to watch.
    min_delta : float, default 0
        The smallest change that counts as an improvement (its absolute value is used).
    patience : int, default 0
        Epochs without improvement before training stops.
    verbose : int, default 0
        Non-zero prints a message when training is stopped and when the best weights are
        restored.
    mode : "auto", "min" or "max", default "auto"
        The direction of improvement.
    baseline : float, optional
        A value improvements must also beat to reset the wait.
    restore_best_weights : bool, default False
        Put the best epoch's weights back when training ends.
    start_from_epoch : int, default 0
        Epochs before it are not monitored.

    Raises
    ------
    ValueError
        If monitor is not a non-empty str, min_delta or baseline is not a number,
        patience or start_from_epoch is not an int >= 0, or mode is unknown.
    """

    def __init__(self, monitor="val_loss", min_delta=0, patience=0, verbose=0, mode="auto",
                 baseline=None, restore_best_weights=False, start_from_epoch=0):
        """Create the callback; the arguments are documented in the class docstring."""
        super().__init__()
        who = "EarlyStopping"
        self.monitor = _check_monitor(monitor, who)
        if isinstance(min_delta, bool) or not isinstance(min_delta, (int, float, np.number)) \
                or not math.isfinite(min_delta):
            raise ValueError(f"{who}: min_delta must be a number, got {min_delta!r}")
        for key, value in (("patience", patience), ("start_from_epoch", start_from_epoch)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
                raise ValueError(f"{who}: {key} must be an int >= 0, got {value!r}")
        if baseline is not None and (isinstance(baseline, bool) or not isinstance(
                baseline, (int, float, np.number))):
            raise ValueError(f"{who}: baseline must be a number or None, got {baseline!r}")
        self.min_delta = abs(float(min_delta))
        self.patience = int(patience)
        self.verbose = verbose
        self.mode = _check_mode(mode, who)
        self.baseline = baseline
        self.restore_best_weights = bool(restore_best_weights)
        self.start_from_epoch = int(start_from_epoch)
        self._higher = None
        self.wait = 0
        self.stopped_epoch = 0
        self.best = None
        self.best_weights = None
        self.best_epoch = 0

    def _direction(self):
        if self.mode != "auto":
            return self.mode == "max"
        higher = _higher_is_better(self.monitor, self.model)
        if higher is None:
            raise ValueError(f"EarlyStopping: monitor={self.monitor!r}: cannot tell whether "
                             "it should rise or fall; pass mode='max' or mode='min'")
        return higher

    def _is_improvement(self, value, reference):
        if reference is None:
            return True
        if self._higher:
            return value - self.min_delta > reference
        return value + self.min_delta < reference

    def on_train_begin(self, logs=None):
        self.wait = 0
        self.stopped_epoch = 0
        self.best = None
        self.best_weights = None
        self.best_epoch = 0
        self._higher = None

    def on_epoch_end(self, epoch, logs=None):
        if self._higher is None:
            self._higher = self._direction()
        current = (logs or {}).get(self.monitor)
        if current is None:
            warnings.warn(f"EarlyStopping is conditioned on {self.monitor!r}, which is not "
                          f"in the logs (available: {', '.join(logs or {})})", stacklevel=2)
            return
        if epoch < self.start_from_epoch:
            return
        current = float(current)
        if self.restore_best_weights and self.best_weights is None:
            self.best_weights = self.model.get_weights()
            self.best_epoch = epoch
        self.wait += 1
        if self._is_improvement(current, self.best):
            self.best = current
            self.best_epoch = epoch
            if self.restore_best_weights:
                self.best_weights = self.model.get_weights()
            if self.baseline is None or self._is_improvement(current, self.baseline):
                self.wait = 0
            return
        if self.wait >= self.patience and epoch > 0:
            self.stopped_epoch = epoch
            self.model.stop_training = True

    def on_train_end(self, logs=None):
        if self.stopped_epoch > 0 and self.verbose:
            print(f"Epoch {self.stopped_epoch + 1}: early stopping")
        if self.restore_best_weights and self.best_weights is not None:
            if self.verbose:
                print("Restoring model weights from the end of the best epoch: "
                      f"{self.best_epoch + 1}.")
            self.model.set_weights(self.best_weights)


class ModelCheckpoint(Callback):
    """Save the model (or its weights) at the end of each epoch, as Keras 3 does.

    Parameters
    ----------
    filepath : str or path
        May hold format fields filled from the epoch (1-based) and the logs, e.g.
        "ckpt/model-{epoch:02d}-{val_loss:.2f}.keras". A `.keras` path for the whole model
        (model.save), a `.weights.h5` path with save_weights_only=True. Folders are made.
    monitor : str, default "val_loss"
        The value compared with save_best_only.
    verbose : int, default 0
        Non-zero prints a message when the model is saved (or not improved).
    save_best_only : bool, default False
        Save only when `monitor` improves on the best so far.
    save_weights_only : bool, default False
        Save the weights alone (model.save_weights) instead of the model.
    mode : "auto", "min" or "max", default "auto"
        The direction of improvement ("auto": names containing "acc" rise, the others
        fall, Keras's rule for this callback).
    save_freq : "epoch"
        Only "epoch" is supported (anything else is a ValueError).
    initial_value_threshold : float, optional
        The best value to beat at the start.

    Raises
    ------
    TypeError
        If filepath is not a str or path.
    ValueError
        If monitor, mode or save_freq is invalid, or filepath does not end in ".keras"
        (".weights.h5" with save_weights_only=True).
    """

    def __init__(self, filepath, monitor="val_loss", verbose=0, save_best_only=False,
                 save_weights_only=False, mode="auto", save_freq="epoch",
                 initial_value_threshold=None):
        """Create the callback; the arguments are documented in the class docstring."""
        super().__init__()
        who = "ModelCheckpoint"
        try:
            filepath = os.fspath(filepath)
        except TypeError:
            raise TypeError(f"{who}: filepath must be a str or a path, got "
                            f"{type(filepath).__name__}") from None
        self.monitor = _check_monitor(monitor, who)
        self.mode = _check_mode(mode, who)
        self.verbose = verbose
        self.save_best_only = bool(save_best_only)
        self.save_weights_only = bool(save_weights_only)
        if save_freq != "epoch":
            raise ValueError(f"{who}: save_freq={save_freq!r} is not supported (only "
                             "'epoch')")
        self.save_freq = save_freq
        if self.save_weights_only:
            if not filepath.endswith(".weights.h5"):
                raise ValueError(f"{who}: with save_weights_only=True the filepath must end "
                                 f"in '.weights.h5' (Keras's weights format), got "
                                 f"filepath={filepath!r}")
        elif not filepath.endswith(".keras"):
            raise ValueError(f"{who}: the filepath must end in '.keras' (Keras's model "
                             f"format), got filepath={filepath!r}")
        self.filepath = filepath
        if self.mode == "max" or (self.mode == "auto" and (
                "acc" in self.monitor or self.monitor.startswith("fmeasure"))):
            self._higher, best = True, -np.inf
        else:
            self._higher, best = False, np.inf
        self.best = best if initial_value_threshold is None else float(
            initial_value_threshold)

    def _file_path(self, epoch, logs):
        try:
            return self.filepath.format(epoch=epoch + 1, **(logs or {}))
        except (KeyError, IndexError, ValueError) as exc:
            raise KeyError(f"ModelCheckpoint: failed to format the filepath "
                           f"{self.filepath!r} with epoch and the logs "
                           f"({', '.join(logs or {})}): {exc!r}") from None

    def _save(self, path):
        folder = os.path.dirname(path)
        if folder:
            os.makedirs(folder, exist_ok=True)
        if self.save_weights_only:
            save_weights = getattr(self.model, "save_weights", None)
            if save_weights is None:
                from . import saving
                save_weights = getattr(saving, "save_weights", None)
                if save_weights is None:
                    raise RuntimeError("ModelCheckpoint: save_weights_only=True needs "
                                       "fastlstm.keras.saving.save_weights, which is "
                                       "missing")
                save_weights(self.model, path)
                return
            save_weights(path)
        else:
            self.model.save(path)

    def on_epoch_end(self, epoch, logs=None):
        path = self._file_path(epoch, logs)
        if not self.save_best_only:
            if self.verbose:
                print(f"\nEpoch {epoch + 1}: saving model to {path}")
            self._save(path)
            return
        current = (logs or {}).get(self.monitor)
        if current is None:
            warnings.warn(f"ModelCheckpoint can save the best model only with "
                          f"{self.monitor!r} in the logs (available: "
                          f"{', '.join(logs or {})}); skipping", stacklevel=2)
            return
        current = float(current)
        better = current > self.best if self._higher else current < self.best
        if better:
            if self.verbose:
                print(f"\nEpoch {epoch + 1}: {self.monitor} improved from {self.best:.5f} "
                      f"to {current:.5f}, saving model to {path}")
            self.best = current
            self._save(path)
        elif self.verbose:
            print(f"\nEpoch {epoch + 1}: {self.monitor} did not improve from "
                  f"{self.best:.5f}")
