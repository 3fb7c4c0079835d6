"""A sensor loop: one reading in, one forecast out, per call, on a stateful LSTM.

Trains a `Sequential([LSTM(32), Dense(1)])` on windows of a noisy temperature-like signal
(a daily cycle plus drift), then copies its weights into the same model built with
`stateful=True` for batches of one reading: each `predict_on_batch` call feeds the
newest reading, the LSTM keeps its state between calls, and the call returns the forecast
of the next reading. Prints the per-call latency (median and 90th percentile), checks that
the streamed forecasts equal one full-sequence call, and compares the forecast error with
the naive forecast (the next reading equals this one).

Run: python examples/sensor_stream.py [--quick]
"""
import argparse
import time

import numpy as np

from fastlstm.keras import LSTM, Dense, Input, Sequential
from fastlstm.keras.utils import set_random_seed, timeseries_windows

PERIOD, WINDOW, UNITS = 48, 24, 32  # readings per day, training window, LSTM units


def signal(n, rng):
    """n readings: a daily cycle, a slow drift and sensor noise, standardised (float32)."""
    t = np.arange(n)
    s = np.sin(2 * np.pi * t / PERIOD) + 0.3 * np.sin(2 * np.pi * t / (7 * PERIOD))
    return (s + 0.05 * rng.standard_normal(n)).astype(np.float32)


def main(quick=False, verbose=True):
    """Train, then stream the readings one call each.

    Parameters
    ----------
    quick : bool, default False
        Fewer epochs and a shorter stream: seconds, for CI.
    verbose : bool, default True
        Print the latency and the errors.

    Returns
    -------
    report : dict
        "us_per_call_median", "us_per_call_p90" (latency of one streamed call),
        "rmse_lstm", "rmse_naive" (forecast of the next reading over the stream) and
        "max_diff_vs_full" (streamed against one full-sequence call).
    """
    set_random_seed(0)
    rng = np.random.default_rng(0)
    train = signal(2000, rng)
    x, y = timeseries_windows(train, WINDOW)
    model = Sequential([Input((WINDOW, 1)), LSTM(UNITS), Dense(1)])
    model.compile(optimizer="adam", loss="mse")
    model.fit(x, y, epochs=15 if quick else 30, batch_size=64, verbose=0)

    stream = signal(300 if quick else 2000, np.random.default_rng(1))
    live = Sequential([Input((1, 1), batch_size=1), LSTM(UNITS, stateful=True), Dense(1)])
    live.set_weights(model.get_weights())
    out, times = np.empty(len(stream), np.float32), []
    for i, reading in enumerate(stream):                      # the sensor loop
        t0 = time.perf_counter()
        out[i] = live.predict_on_batch(reading.reshape(1, 1, 1))[0, 0]
        times.append(time.perf_counter() - t0)

    # the same numbers from one call over the whole stream (return_sequences + Dense per step)
    full = Sequential([Input((len(stream), 1)), LSTM(UNITS, return_sequences=True), Dense(1)])
    full.set_weights(model.get_weights())
    whole = full.predict(stream.reshape(1, -1, 1), verbose=0)[0, :, 0]
    err = {"rmse_lstm": out[:-1] - stream[1:], "rmse_naive": stream[:-1] - stream[1:]}
    report = {"us_per_call_median": float(np.median(times) * 1e6),
              "us_per_call_p90": float(np.percentile(times, 90) * 1e6),
              **{k: float(np.sqrt(np.mean(v ** 2))) for k, v in err.items()},
              "max_diff_vs_full": float(np.max(np.abs(out - whole)))}
    if verbose:
        print(f"{len(stream)} readings, one predict_on_batch call each: "
              f"{report['us_per_call_median']:.0f} us median, "
              f"{report['us_per_call_p90']:.0f} us p90 per call")
        print(f"next-reading RMSE: lstm {report['rmse_lstm']:.4f}, naive "
              f"{report['rmse_naive']:.4f}; streamed vs one full call: max difference "
              f"{report['max_diff_vs_full']:.2g}")
    return report


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer epochs, shorter stream")
    main(quick=ap.parse_args().quick)
