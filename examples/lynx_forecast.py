"""Forecast the Canadian lynx population one year ahead, the Keras way, on fastlstm.

Trains `Sequential([LSTM(16), Dense(1)])` with Adam on standardised log counts 1821-1920
(windows of 20 years -> the next year), forecasts 1921-1934 one step ahead and compares it
with the naive forecast (last year's count) and the seasonal-naive one (the count one
10-year cycle earlier). Writes a PNG of the forecast when matplotlib is installed.

Run: python examples/lynx_forecast.py [--quick] [--plot lynx.png]
"""
import argparse

import numpy as np

from fastlstm.data import load_lynx
from fastlstm.keras import LSTM, Adam, Dense, Input, Sequential
from fastlstm.keras.utils import set_random_seed, timeseries_windows

WINDOW, TEST_YEARS, HIDDEN = 20, 14, 16


def main(quick=False, verbose=True, plot=None):
    """Train on 1821-1920, forecast 1921-1934 one year ahead.

    Parameters
    ----------
    quick : bool, default False
        Fewer epochs (50 instead of 100): for CI.
    verbose : bool, default True
        Print the forecast year by year and the RMSEs.
    plot : str or None
        Write a PNG of the series and the forecasts there (needs matplotlib).

    Returns
    -------
    history : dict of str to list of float
        fit's History.history (training MSE per epoch on standardised log counts).
    rmse : dict of str to float
        RMSE over 1921-1934, in lynx, of "lstm", "naive" and "seasonal-naive".
    """
    set_random_seed(0)
    years, counts = load_lynx()
    logc = np.log10(counts.astype(np.float64))
    mean, std = logc[:-TEST_YEARS].mean(), logc[:-TEST_YEARS].std()
    series = ((logc - mean) / std).astype(np.float32)

    x, y = timeseries_windows(series[:-TEST_YEARS], WINDOW)          # (80, 20, 1), (80, 1)
    model = Sequential([Input((WINDOW, 1)), LSTM(HIDDEN), Dense(1)])
    model.compile(optimizer=Adam(learning_rate=0.01), loss="mse")
    history = model.fit(x, y, epochs=50 if quick else 100, batch_size=len(x), verbose=0)

    first = len(series) - TEST_YEARS                                   # one step ahead
    xt = np.stack([series[i - WINDOW:i] for i in range(first, len(series))])[..., None]
    forecast = 10 ** (model.predict(xt, verbose=0)[:, 0] * std + mean)
    actual = counts[first:]
    forecasts = {"lstm": forecast, "naive": counts[first - 1:-1],
                 "seasonal-naive": counts[first - 10:len(counts) - 10]}
    rmse = {k: float(np.sqrt(np.mean((f - actual) ** 2))) for k, f in forecasts.items()}
    if verbose:
        for i, yr in enumerate(years[first:]):
            print(f"{yr}  actual {actual[i]:5d}  lstm {forecast[i]:7.0f}  "
                  f"naive {forecasts['naive'][i]:5d}  seasonal-naive "
                  f"{forecasts['seasonal-naive'][i]:5d}")
        print("RMSE 1921-1934: " + ", ".join(f"{k} {v:.0f}" for k, v in rmse.items()))
    if plot:
        _plot(years, counts, years[first:], forecasts, plot)
    return history.history, rmse


def _plot(years, counts, test_years, forecasts, path):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("no plot: matplotlib is not installed (pip install matplotlib)")
        return
    fig, ax = plt.subplots(figsize=(9, 4))
    ax.plot(years, counts, color="0.3", label="lynx trapped")
    for name, style in (("lstm", "o-"), ("seasonal-naive", "x--")):
        ax.plot(test_years, forecasts[name], style, label=f"{name} forecast")
    ax.set_xlabel("year")
    ax.set_ylabel("lynx")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    print(f"wrote {path}")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer epochs (seconds)")
    ap.add_argument("--plot", default="lynx_forecast.png", help="PNG to write ('' for none)")
    args = ap.parse_args()
    main(quick=args.quick, plot=args.plot or None)
