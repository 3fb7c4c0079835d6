"""The benchmark's parts: configs, interleaved timing, peers agreeing with the reference (the
one-step stream path included), the report and its closing summary."""
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
    import time
    calls = []

    def slow():
        calls.append("a")
        time.sleep(0.002)
    medians = timing.interleaved_medians({"a": slow, "b": lambda: calls.append("b")},
                                         repeat=3, warmup=1, settle=0)
    assert calls == ["a", "b"] + ["a", "b"] * 3
    assert set(medians) == {"a", "b"}
    assert medians["a"] >= 0.002 > medians["b"]  # each label's own calls are the ones timed


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


def test_stream_steps_carry_the_state_and_match_one_whole_call():
    from dataclasses import replace
    cfg = replace(CONFIGS["stream"], T=6, I=3, H=5)
    r = FastlstmRunner(make_workload(cfg), "numpy")
    # the checked pass goes through the same one-step call as the timed steps
    np.testing.assert_allclose(r.output(), r.reference_output(), rtol=1e-5, atol=1e-6)
    for t in range(1, cfg.T):
        r.step()
        assert r._cursor.t == t and r._cursor.state is not None
    r.step()  # after the last step the stream starts again from a zero state
    assert r._cursor.t == 0 and r._cursor.state is None


def test_bench_with_both_peers_prints_their_ratios(capsys, tmp_path):
    for peer in ("torch", "onnxruntime"):
        if peer_status(peer):
            pytest.skip(peer_status(peer))
    pytest.importorskip("matplotlib")
    path, png = tmp_path / "b.json", tmp_path / "b.png"
    assert main(["bench", "--quick", "--configs", "seed,stream", "--backends", "numpy",
                 "--json", str(path), "--plot", str(png), "--no-first-call",
                 "--cold-starts", "0"]) == 0
    out = capsys.readouterr().out
    assert "torch fwd" in out and "torch fwd+bwd" in out and "onnxruntime fwd" in out
    step = " ".join(out[out.index("One streamed step"):].split())
    assert "calls: fastlstm: model" in step and "torch: LSTMCell; onnxruntime: LSTM graph " \
        "of T=1:" in step
    assert "back-to-back calls: fastlstm[numpy] " in step and " torch " in step
    assert "idle caller (a 50 ms pause before each call): fastlstm[numpy] " in step
    data = json.loads(path.read_text())
    assert set(data["versions"]) == {"torch", "onnxruntime"}
    assert data["versions"]["torch"] == data["workers"]["torch"]["version"]
    for mode in ("b2b", "idle"):
        row = next(r for r in data["rows"] if r["impl"] == "fastlstm[numpy]"
                   and r["mode"] == mode)
        assert {"torch/forward", "torch/train", "onnxruntime/forward"} <= set(row["ratios"])
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_missing_peer_is_reported_in_the_closing_summary(monkeypatch, capsys):
    from fastlstm.benchmark import peers, suite
    monkeypatch.setattr(suite, "peer_status", lambda name: f"{name} not installed")
    import fastlstm
    fast = "cython" if "cython" in fastlstm.available_backends() else "numba"
    assert main(["bench", "--quick", "--configs", "seed", "--compare", "torch",
                 "--backends", fast, "--no-first-call", "--cold-starts", "0"]) == 0
    out, err = capsys.readouterr()
    assert "torch skipped: torch not installed" in err  # said while it runs, and at the end
    summary = out[out.index("\n\nSummary:\n"):].strip()
    assert "\n\n" not in summary  # the summary is the last block of the output
    assert "Not compared: torch (torch not installed). To compare with them: " \
        f"{peers.INSTALL}." in flat(summary)
    assert "against the NumPy reference" in flat(summary)


# --- the closing summary, from synthetic results -----------------------------------------

def flat(text):
    """The summary without its line wrapping."""
    return " ".join(text.split())


MACHINE = {"auto_order": ["cython", "numba", "numpy"],
           "backends": {"cython": {"available": True, "reason": ""},
                        "numba": {"available": True, "reason": ""},
                        "numpy": {"available": True, "reason": ""}},
           "extension": {"built": True, "openmp": True, "debug": False,
                         "isa": {"chosen": "avx512", "forced": None, "error": None,
                                 "available": ["avx512", "avx2", "baseline"],
                                 "built": ["avx512", "avx2", "baseline"]}}}


def synthetic_result(ratios, peers=("torch", "onnxruntime"), backends=("numpy", "cython"),
                     skipped=None):
    """A run_suite-shaped dict; ratios: {(config, impl): {"torch/forward": 2.0, ...}}."""
    from fastlstm.benchmark.configs import CONFIGS
    rows = []
    for (config, impl), r in ratios.items():
        rows.append({"config": config, "group": CONFIGS[config].group, "impl": impl,
                     "kind": "fastlstm", "forward_ms": 1.0, "train_ms": 2.0, "ratios": r})
    return {"rows": rows, "peers": list(peers), "backends": list(backends),
            "peers_requested": list(peers) + list(skipped or {}),
            "skipped_peers": dict(skipped or {})}


def test_summary_against_the_fastest_peer_faster():
    from fastlstm.benchmark.report import format_summary
    result = synthetic_result({
        ("edge", "fastlstm[cython]"): {"numpy/forward": 4.6, "torch/forward": 2.76,
                                       "torch/train": 2.86, "onnxruntime/forward": 1.74},
        ("seed", "fastlstm[cython]"): {"numpy/forward": 3.2, "torch/forward": 2.26,
                                       "torch/train": 1.49, "onnxruntime/forward": 1.2},
        ("edge", "fastlstm[numpy]"): {"numpy/forward": 1.0, "torch/forward": 0.6},
        ("mid", "fastlstm[cython]"): {"torch/forward": 1.5, "torch/train": 1.3,
                                      "onnxruntime/forward": 1.4}})
    text = format_summary(result, MACHINE)
    lines = text.splitlines()
    assert lines[0] == "Summary:"
    assert flat(text).startswith(
        "Summary: auto uses cython: the compiled extension is built here (avx512 "
        "kernels); next in line: numba, numpy.")
    # the fastest peer of each config: onnxruntime forward, torch (the only one) training
    assert "small models (edge, seed): fastlstm[cython] forward against the fastest peer " \
        "(onnxruntime): faster (1.20-1.74x); forward+backward against torch: faster " \
        "(1.49-2.86x)." in flat(text)
    assert "training batches (mid): fastlstm[cython] forward against the fastest peer " \
        "(onnxruntime): faster (1.40x); forward+backward against torch: faster (1.30x)." \
        in flat(text)
    assert "Not compared" not in text and "pip install" not in text  # both peers ran
    assert "numpy" not in flat(text).split("next in line: numba, numpy.")[1].replace(
        "NumPy", "")  # the reference's own row is not what the summary speaks for
    assert all(len(line) <= 100 for line in lines)


def test_summary_says_slower_and_names_the_configs_when_they_differ():
    from fastlstm.benchmark.report import format_summary
    result = synthetic_result({
        ("large", "fastlstm[cython]"): {"torch/forward": 0.9, "torch/train": 0.97,
                                        "onnxruntime/forward": 0.94},
        ("mid", "fastlstm[cython]"): {"torch/forward": 0.5, "onnxruntime/forward": 0.8,
                                      "torch/train": 1.0},
        ("lengths", "fastlstm[cython]"): {"torch/forward": 3.27, "torch/train": 5.72,
                                          "onnxruntime/forward": 1.47}})
    text = flat(format_summary(result, MACHINE))
    assert "GEMM-sized batches (large): fastlstm[cython] forward against the fastest peer " \
        "(torch): slower (0.90x); forward+backward against torch: about as fast (0.97x)." \
        in text
    assert "training batches (mid, lengths): fastlstm[cython] forward against the fastest " \
        "peer (torch, onnxruntime): faster on lengths (1.47x), slower on mid (0.50x); " \
        "forward+backward against torch: faster on lengths (5.72x), about as fast on mid " \
        "(1.00x)." in text


def test_summary_without_peers_compares_with_the_reference_and_says_how_to_install_them():
    from fastlstm.benchmark.peers import INSTALL
    from fastlstm.benchmark.report import format_summary
    skipped = {"torch": "torch not installed", "onnxruntime": "onnxruntime and onnx not installed"}
    result = synthetic_result({
        ("stream", "fastlstm[cython]"): {"numpy/forward": 2.62, "numpy/train": 7.09},
        ("stream", "fastlstm[numba]"): {"numpy/forward": 2.04, "numpy/train": 4.87}},
        peers=(), backends=("numpy", "cython", "numba"), skipped=skipped)
    text = flat(format_summary(result, MACHINE))
    assert "small models (stream): fastlstm[cython] forward against the NumPy reference: " \
        "faster (2.62x); forward+backward against the NumPy reference: faster (7.09x)." in text
    assert "fastlstm[numba]" not in text  # one backend, auto's, speaks for fastlstm
    assert text.endswith("Not compared: torch (torch not installed), onnxruntime (onnxruntime "
                         f"and onnx not installed). To compare with them: {INSTALL}.")
    assert 'pip install "fastlstm[compare]"' in INSTALL and 'pip install ".[compare]"' in INSTALL
    none_asked = synthetic_result({("edge", "fastlstm[cython]"): {"numpy/forward": 0.8}},
                                  peers=())
    text = flat(format_summary(none_asked, MACHINE))
    assert "forward against the NumPy reference: slower (0.80x)." in text
    assert text.endswith(f"No peer was asked for (--compare none); PyTorch and ONNX Runtime "
                         f"run side by side when installed: {INSTALL}.")


def test_summary_says_why_auto_picks_its_backend():
    from fastlstm.benchmark.report import auto_sentence, format_summary
    forced = {"chosen": "avx2", "forced": "avx2", "error": None, "available": ["avx2"],
              "built": ["avx2"]}
    serial = {**MACHINE, "extension": {"built": True, "openmp": False, "debug": True,
                                       "isa": forced}}
    assert auto_sentence(serial) == (
        "auto uses cython: the compiled extension is built here (avx2 kernels (forced by "
        "FASTLSTM_ISA), a debug build: index checks on, slower); "
        "next in line: numba, numpy.")
    no_ext = {"auto_order": ["numba", "numpy"], "extension": {"built": False},
              "backends": {"cython": {"available": False, "reason": "fastlstm._cy.lstm_cpu "
                                      "is not installed"},
                           "numba": {"available": True, "reason": ""},
                           "numpy": {"available": True, "reason": ""}}}
    assert auto_sentence(no_ext) == (
        "auto uses numba: the compiled extension is not built here (fastlstm._cy.lstm_cpu is "
        "not installed); numba compiles its kernels on first use and caches them; next in "
        "line: numpy.")
    bare = {**no_ext, "auto_order": ["numpy"],
            "backends": {**no_ext["backends"],
                         "numba": {"available": False, "reason": "numba is not installed"}}}
    assert auto_sentence(bare) == (
        "auto uses numpy: no faster backend can run here (cython: fastlstm._cy.lstm_cpu is "
        "not installed; numba: numba is not installed).")
    # a run of the reference alone, no peers: nothing to compare, said so
    alone = synthetic_result({("edge", "fastlstm[numpy]"): {"numpy/forward": 1.0}},
                             peers=(), backends=("numpy",))
    text = flat(format_summary(alone, bare))
    assert "Only the NumPy reference ran: there is nothing to compare it with." in text
    # auto's backend was not benchmarked (--backends numba): the one that ran speaks
    only_numba = synthetic_result({("edge", "fastlstm[numba]"): {"torch/forward": 1.23}},
                                  peers=("torch",), backends=("numpy", "numba"))
    text = flat(format_summary(only_numba, MACHINE))
    assert "small models (edge): fastlstm[numba] forward against torch: faster (1.23x)." in text


def test_verdict_words_follow_the_ratios():
    from fastlstm.benchmark.report import verdict
    assert verdict([("a", 2.8)]) == "faster (2.80x)"
    assert verdict([("a", 0.9), ("b", 0.7)]) == "slower (0.70-0.90x)"
    assert verdict([("a", 1.04), ("b", 0.96)]) == "about as fast (0.96-1.04x)"
    assert verdict([("a", 1.05), ("b", 0.95), ("c", 1.0)]) == \
        "faster on a (1.05x), slower on b (0.95x), about as fast on c (1.00x)"


def test_first_call_of_a_jit_backend_is_timed_cold_and_cached(capsys, tmp_path):
    from fastlstm.backends import backend_status
    assert not backend_status()["numba"], "numba is a dependency: it must be usable here"
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
