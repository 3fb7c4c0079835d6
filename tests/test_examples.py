"""The examples run (in their quick modes) and do what they say."""
import runpy
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def _example(name):
    return runpy.run_path(str(EXAMPLES / name))


def test_lynx_forecast_learns_and_beats_the_naive_forecasts(tmp_path):
    png = tmp_path / "lynx.png"
    history, rmse = _example("lynx_forecast.py")["main"](quick=True, verbose=False,
                                                          plot=str(png))
    assert history["loss"][-1] < 0.2 * history["loss"][0]
    assert rmse["lstm"] < rmse["naive"]
    assert rmse["lstm"] < rmse["seasonal-naive"]
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_dna_motif_classifier_beats_the_majority_class_by_far():
    accuracy, baseline = _example("dna_motif_classification.py")["main"](quick=True,
                                                                         verbose=False)
    assert baseline < 0.6
    assert accuracy > 0.85


def test_text_classifier_beats_the_majority_class():
    acc = _example("text_classification.py")["main"](quick=True, verbose=False)
    assert acc["majority"] < 0.5
    assert acc["lstm"] > acc["majority"] + 0.2
    assert acc["bag-of-words"] > acc["majority"]


def test_sensor_stream_equals_a_full_call_and_beats_naive():
    report = _example("sensor_stream.py")["main"](quick=True, verbose=False)
    assert report["max_diff_vs_full"] < 1e-5
    assert report["rmse_lstm"] < report["rmse_naive"]
    assert 0 < report["us_per_call_median"] <= report["us_per_call_p90"]


def test_quickstart_runs(capsys):
    runpy.run_path(str(EXAMPLES / "quickstart.py"), run_name="__main__")
    assert capsys.readouterr().out.splitlines() == [
        "y (8, 20, 64) h_n (4, 8, 32) grad of weight_ih_l0 (128, 16)"]
