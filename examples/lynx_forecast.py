"""Forecast the Canadian lynx population one year ahead with a fastlstm LSTM.

Trains an LSTM(16) + linear head on log counts 1821-1920 with Adam, written out
here with fastlstm's forward/backward and model.grads, then forecasts 1921-1934
one step ahead and compares with the seasonal-naive forecast (the count one
10-year cycle earlier). Run: python examples/lynx_forecast.py
"""
import numpy as np

import fastlstm
from fastlstm.data import load_lynx

WINDOW, TEST_YEARS, EPOCHS, HIDDEN, LR = 20, 14, 300, 16, 0.01


def windows(series, window):
    """(x[batch, window, 1], target[batch]) of every window followed by a next value."""
    x = np.stack([series[i:i + window] for i in range(len(series) - window)])
    return x[..., None], series[window:]


def adam(params, grads, state, lr, t, b1=0.9, b2=0.999, eps=1e-8):
    for k in params:
        m, v = state.setdefault(k, (np.zeros_like(params[k]), np.zeros_like(params[k])))
        m = b1 * m + (1 - b1) * grads[k]
        v = b2 * v + (1 - b2) * grads[k] ** 2
        state[k] = (m, v)
        params[k] -= lr * (m / (1 - b1 ** t)) / (np.sqrt(v / (1 - b2 ** t)) + eps)


def main(epochs=EPOCHS, verbose=True):
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
        grads = {**lstm.grads, "w": last.T @ d_pred, "b": d_pred.sum(keepdims=True)}
        weights = {**lstm.state_dict(), **head}
        adam(weights, grads, state, LR, epoch)
        lstm.load_state_dict({k: weights[k] for k in lstm.state_dict()})
        head = {"w": weights["w"], "b": weights["b"]}
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
