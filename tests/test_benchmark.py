"""The benchmark's parts: configs, interleaved timing, peers agreeing with the reference."""
import json

import numpy as np
import pytest

from fastlstm.benchmark import timing
from fastlstm.benchmark.configs import CONFIGS
from fastlstm.benchmark.peers import make_peer, peer_status
from fastlstm.benchmark.runners import FastlstmRunner, make_workload
from fastlstm.benchmark.suite import CheckFailed, check_close
from fastlstm.cli import main


def test_configs_and_flops():
    edge = CONFIGS["edge"]
    assert edge.flops() == 2 * 100 * 1 * 512 * (32 + 128)
    assert edge.flops(backward=True) == 3 * edge.flops()
    seed = CONFIGS["seed"]
    assert seed.flops() == 32 * 10 * (8 * 50 * (1 + 50) + 8 * 50 * (50 + 50))
    lengths = CONFIGS["lengths"].lengths()
    assert lengths.shape == (16,) and lengths.min() == 50 and lengths.max() == 100
    np.testing.assert_array_equal(lengths, CONFIGS["lengths"].lengths())  # deterministic
    assert CONFIGS["lengths"].flops() < CONFIGS["mid"].flops()
    assert CONFIGS["mid"].lengths() is None


def test_interleaved_runs_alternate_after_warmup():
    calls = []
    medians = timing.interleaved_medians({"a": lambda: calls.append("a"),
                                          "b": lambda: calls.append("b")}, repeat=3, warmup=1)
    assert calls == ["a", "b"] + ["a", "b"] * 3
    assert set(medians) == {"a", "b"} and all(v >= 0 for v in medians.values())


def test_check_close():
    ref = np.array([1.0, -2.0, 0.0])
    check_close("x", "y", ref + 1e-6, ref, "cfg")
    with pytest.raises(CheckFailed, match="x disagrees with the NumPy reference on cfg"):
        check_close("x", "y", ref + 1e-2, ref, "cfg")
    with pytest.raises(CheckFailed):
        check_close("x", "y", np.array([np.nan, -2.0, 0.0]), ref, "cfg")


@pytest.mark.parametrize("peer", ["torch", "onnxruntime"])
@pytest.mark.parametrize("config", ["seed", "stream", "lengths"])
def test_peers_agree_with_the_reference(peer, config):
    if peer_status(peer):
        pytest.skip(peer_status(peer))
    from dataclasses import replace
    cfg = CONFIGS[config]
    cfg = replace(cfg, T=min(cfg.T, 12), H=min(cfg.H, 24), I=min(cfg.I, 5))
    wl = make_workload(cfg)
    ref = FastlstmRunner(wl, "numpy")
    runner = make_peer(peer, wl, threads=1)
    check_close(peer, "forward", runner.output(), ref.output(), config)
    if runner.train is not None:
        check_close(peer, "dx", runner.input_grad(), ref.input_grad(), config)


def test_bench_with_both_peers_prints_their_ratios(capsys, tmp_path):
    for peer in ("torch", "onnxruntime"):
        if peer_status(peer):
            pytest.skip(peer_status(peer))
    pytest.importorskip("matplotlib")
    path, png = tmp_path / "b.json", tmp_path / "b.png"
    assert main(["bench", "--quick", "--configs", "seed,stream", "--json", str(path),
                 "--plot", str(png), "--no-first-call"]) == 0
    out = capsys.readouterr().out
    assert "torch fwd" in out and "torch fwd+bwd" in out and "onnxruntime fwd" in out
    assert "stream, per one-step call: fastlstm[numpy]" in out
    data = json.loads(path.read_text())
    assert set(data["versions"]) == {"torch", "onnxruntime"}
    row = next(r for r in data["rows"] if r["impl"] == "fastlstm[numpy]")
    assert {"torch/forward", "torch/train", "onnxruntime/forward"} <= set(row["ratios"])
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_missing_peer_is_a_one_line_note(monkeypatch, capsys):
    from fastlstm.benchmark import peers
    monkeypatch.setattr(peers, "peer_status", lambda name: f"{name} skipped: not installed")
    from fastlstm.benchmark import suite
    monkeypatch.setattr(suite, "peer_status", peers.peer_status)
    assert main(["bench", "--quick", "--configs", "seed", "--compare", "torch",
                 "--no-first-call"]) == 0
    out = capsys.readouterr().out
    assert out.rstrip().endswith("torch skipped: not installed")


def test_first_call_of_a_jit_backend_is_timed_cold_and_cached(capsys, tmp_path):
    from fastlstm import available_backends
    if "numba" not in available_backends():
        pytest.skip("numba is not installed here")
    path = tmp_path / "b.json"
    assert main(["bench", "--quick", "--configs", "seed", "--backends", "numba", "--compare",
                 "none", "--json", str(path)]) == 0
    out = capsys.readouterr().out
    assert "First call in a fresh process" in out and "numba seed: compile" in out
    (first,) = json.loads(path.read_text())["first_calls"]
    cold, warm = first["cold"], first["warm"]
    assert first["backend"] == "numba" and first["config"] == "seed"
    # the cached run only loads machine code: far quicker than compiling it
    assert warm["forward_s"] < cold["forward_s"] / 3
    assert warm["backward_s"] < cold["backward_s"] / 3


def test_first_call_configs_cover_both_kernel_builds():
    from fastlstm.benchmark.first_call import pick_configs
    assert pick_configs(list(CONFIGS)) == ["edge", "mid"]
    assert pick_configs(["seed", "stream"]) == ["seed"]
