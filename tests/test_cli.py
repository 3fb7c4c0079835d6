"""`fastlstm info` and `fastlstm bench`: output, JSON, progress, and clear argument errors."""
import json
import subprocess
import sys

import pytest

from fastlstm import benchmark
from fastlstm.cli import main


def test_info_as_a_module_command():
    out = subprocess.run([sys.executable, "-m", "fastlstm", "info"], capture_output=True,
                         text=True, check=True).stdout
    assert "fastlstm 0." in out and "numpy" in out and "threads:" in out and "blas:" in out


def test_info_json(capsys):
    assert main(["info", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["backends"]["numpy"]["available"] is True
    assert "built" in info["extension"]


def test_bench_quick_prints_table_progress_and_json(capsys, tmp_path):
    path = tmp_path / "bench.json"
    assert main(["bench", "--quick", "--configs", "edge", "--json", str(path)]) == 0
    out, err = capsys.readouterr()
    assert "[1/1] edge on numpy" in err
    header = out.splitlines()[0].split()
    assert header[:3] == ["config", "backend", "fwd"]
    row = next(line for line in out.splitlines() if line.startswith("edge"))
    assert "1.00x" in row
    data = json.loads(path.read_text())
    (r,) = data["rows"]
    assert r["config"] == "edge" and r["forward_ms"] > 0 and r["train_ms"] > 0
    assert r["forward_speedup"] == 1.0 and data["machine"]["threads"] >= 1


@pytest.mark.parametrize("argv,message", [
    (["bench", "--configs", "huge"], "unknown config huge; choose from edge"),
    (["bench", "--backends", "tpu"], "unknown backend tpu"),
    (["bench", "--repeat", "0"], "must be a positive integer"),
    (["bench", "--threads", "-2"], "must be a positive integer"),
    (["bench", "--configs", ","], "unknown config (none given)"),
    (["frobnicate"], "invalid choice"),
])
def test_bad_arguments_exit_2_with_a_message(capsys, argv, message):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_config_flops_and_median():
    cfg = benchmark.CONFIGS["edge"]
    assert cfg.flops() == 2 * 100 * 1 * 512 * (32 + 128)
    assert cfg.flops(backward=True) == 3 * cfg.flops()
    calls = []
    assert benchmark.median_time(lambda: calls.append(1), repeat=3, warmup=2) >= 0
    assert len(calls) == 5


def test_bench_refuses_a_backend_that_disagrees(monkeypatch):
    from fastlstm.backends import reference

    def wrong_forward(x, w_ih, w_hh, b, h0, c0, lengths, y, h_n, c_n, tape):
        reference.forward_layer(x, w_ih, w_hh, b, h0, c0, lengths, y, h_n, c_n, tape)
        y += 0.01

    class Broken:
        NAME = "broken"
        forward_layer = staticmethod(wrong_forward)
        backward_layer = staticmethod(reference.backward_layer)

    from fastlstm import backends
    monkeypatch.setitem(backends.BACKENDS, "broken", ("broken", "test only"))
    monkeypatch.setitem(backends._module_cache, "broken", Broken)
    monkeypatch.setattr(backends, "_status_cache", {"numpy": "", "broken": ""})
    with pytest.raises(AssertionError, match="broken disagrees with the reference on edge"):
        benchmark.check_against_reference(benchmark.CONFIGS["edge"], "broken")
