"""The examples run and do what they say."""
import runpy
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def test_lynx_forecast_trains_and_beats_seasonal_naive():
    example = runpy.run_path(str(EXAMPLES / "lynx_forecast.py"))
    losses, rmse_lstm, rmse_naive = example["main"](verbose=False)
    assert losses[-1] < 0.2 * losses[0]
    assert rmse_lstm < rmse_naive


def test_quickstart_runs(capsys):
    runpy.run_path(str(EXAMPLES / "quickstart.py"), run_name="__main__")
    assert capsys.readouterr().out.splitlines() == [
        "y (8, 20, 64) h_n (4, 8, 32) grad of weight_ih_l0 (128, 16)"]
