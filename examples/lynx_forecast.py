"""Forecast the Canadian lynx population one year ahead with a fastlstm LSTM.

Trains an LSTM(16) + linear head on log counts 1821-1920 with Adam, written out
here over fastlstm's forward/backward, model.grads and model.update_weights(), then
forecasts 1921-1934 one step ahead and compares with the seasonal-naive forecast
(the count one 10-year cycle earlier). Run: python examples/lynx_forecast.py
"""
import numpy as np

import fastlstm
from fastlstm.data import load_lynx

WINDOW, TEST_YEARS, EPOCHS, HIDDEN, LR = 20, 14, 300, 16, 0.01


def windows(series, window):
    """Every run of `window` values that a next value follows.

    Parameters
    ----------
    series : ndarray, shape (N,)
        The series.
    window : int
        Values per input, less than N.

    Returns
    -------
    x : ndarray, shape (N - window, window, 1)
        The inputs, batch first, one feature.
    target : ndarray, shape (N - window,)
        The value after each input.
    """
    x = np.stack([series[i:i + window] for i in range(len(series) - window)])
    return x[..., None], series[window:]


def adam(params, grads, state, lr, t, b1=0.9, b2=0.999, eps=1e-8):
    """One Adam step, in place.

    Parameters
    ----------
    params : mapping of str to ndarray
        The parameters, changed in place (views into a model's weights will do).
    grads : mapping of str to ndarray
        The gradient of each parameter, same names and shapes.
    state : dict
        Adam's moving averages per name; starts empty and is updated.
    lr : float
        Learning rate.
    t : int
        The step number, from 1 (for the bias correction).
    b1, b2, eps : float
        Adam's decay rates and its guard against division by zero.
    """
    for k in params:
        m, v = state.setdefault(k, (np.zeros_like(params[k]), np.zeros_like(params[k])))
        m = b1 * m + (1 - b1) * grads[k]
        v = b2 * v + (1 - b2) * grads[k] ** 2
        state[k] = (m, v)
        params[k] -= lr * (m / (1 - b1 ** t)) / (np.sqrt(v / (1 - b2 ** t)) + eps)


def main(epochs=EPOCHS, verbose=True):
    """Train on 1821-1920, forecast 1921-1934 one year ahead.

    Parameters
    ----------
    epochs : int, default 300
        Full-batch training steps.
    verbose : bool, default True
        Print the training loss every 50 epochs and the forecast year by year.

    Returns
    -------
    losses : list of float
        The training MSE (on standardised log counts) of every epoch.
    rmse_lstm, rmse_naive : float
        RMSE of the LSTM's and the seasonal-naive forecast over 1921-1934, in lynx.
    """
    years, counts = load_lynx()
    logc = np.log10(counts.astype(np.float64))
    mean, std = logc[:-TEST_YEARS].mean(), logc[:-TEST_YEARS].std()
    series = (logc - mean) / std

    lstm = fastlstm.LSTM(1, HIDDEN, batch_first=True, dtype="float64", seed=0)
    rng = np.random.default_rng(1)
    head = {"w": rng.normal(0, 0.1, HIDDEN), "b": np.zeros(1)}
    x, target = windows(series[:-TEST_YEARS], WINDOW)
    state, losses = {}, []
    for epoch in range(1, epochs + 1):
        y, _ = lstm(x)
        last = y[:, -1]                                   # (batch, HIDDEN)
        err = last @ head["w"] + head["b"] - target
        losses.append(float(np.mean(err ** 2)))
        d_pred = 2 * err / len(err)                       # d MSE / d prediction
        dy = np.zeros_like(y)
        dy[:, -1] = np.outer(d_pred, head["w"])
        lstm.backward(dy)
        head_grads = {"w": last.T @ d_pred, "b": d_pred.sum(keepdims=True)}
        with lstm.update_weights() as weights:            # in place: no copy, no checks
            adam(weights, lstm.grads, state, LR, epoch)
        adam(head, head_grads, state, LR, epoch)
        if verbose and epoch % 50 == 0:
            print(f"epoch {epoch:4d}  train MSE {losses[-1]:.4f}")

    lstm.eval()
    first = len(series) - TEST_YEARS
    xt = np.stack([series[i - WINDOW:i] for i in range(first, len(series))])[..., None]
    pred = lstm(xt)[0][:, -1] @ head["w"] + head["b"]
    forecast = 10 ** (pred * std + mean)
    actual = counts[first:]
    naive = counts[first - 10:len(counts) - 10]
    rmse = lambda f: float(np.sqrt(np.mean((f - actual) ** 2)))  # noqa: E731
    if verbose:
        for yr, a, f, n in zip(years[first:], actual, forecast, naive):
            print(f"{yr}  actual {a:5d}  lstm {f:7.0f}  seasonal-naive {n:5d}")
        print(f"RMSE 1921-1934: lstm {rmse(forecast):.0f}, seasonal-naive {rmse(naive):.0f}")
    return losses, rmse(forecast), rmse(naive)


if __name__ == "__main__":
    main()
