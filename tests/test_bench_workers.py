"""`fastlstm bench`'s worker processes: each implementation in a process of its own, both
modes with median and p90, a worker that is wrong, crashes or hangs refused with a clear
error, and the cold start. Tiny configs: seconds. No timed assertions (speed is shown by
the benchmark itself)."""
import json
import os
from dataclasses import replace

import numpy as np
import pytest

import fastlstm
from fastlstm.benchmark import timing
from fastlstm.benchmark.cold_start import cold_starts
from fastlstm.benchmark.configs import CONFIGS
from fastlstm.benchmark.peers import PEERS, peer_status
from fastlstm.benchmark.pool import WorkerError, WorkerProcess
from fastlstm.benchmark.suite import CheckFailed, run_suite
from fastlstm.benchmark.worker import FAULT_ENV, serve

TINY = [replace(CONFIGS["seed"], T=4, H=6), replace(CONFIGS["stream"], T=5, I=3, H=6)]
PEERS_HERE = [p for p in PEERS if not peer_status(p)]


def fast_backend():
    """The compiled backend when it is built here, else the reference alone."""
    return "cython" if "cython" in fastlstm.available_backends() else "numpy"


def tiny_suite(**kw):
    args = dict(config_names=TINY, backends=[fast_backend()], peers=[], repeat=2, threads=1,
                progress=lambda msg: None, gemm_n=64, first_call=False, rounds=2,
                cold_start_runs=0)
    return run_suite(**{**args, **kw})


def test_time_calls_pauses_only_when_idle(monkeypatch):
    calls, sleeps = [], []
    monkeypatch.setattr(timing.time, "sleep", sleeps.append)
    times = timing.time_calls(lambda: calls.append(1), "b2b", 3, warmup=2)
    assert len(times) == 3 and len(calls) == 5 and sleeps == []  # warm-up, untimed
    calls.clear()
    times = timing.time_calls(lambda: calls.append(1), "idle", 4)
    assert len(times) == 4 and len(calls) == 4 and sleeps == [timing.IDLE_S] * 4
    with pytest.raises(ValueError, match="mode must be one of b2b, idle"):
        timing.time_calls(lambda: None, "busy", 1)


def test_summarize_gives_median_and_p90():
    s = timing.summarize([1.0, 2.0, 3.0, 4.0, 100.0])
    assert s["median"] == 3.0 and s["p90"] == pytest.approx(61.6)
    assert timing.summarize([2.0]) == {"median": 2.0, "p90": 2.0}


def test_worker_protocol_in_process(tmp_path):
    from dataclasses import asdict
    cfg = TINY[0]
    path = tmp_path / "out.npz"
    requests = [json.dumps(m) for m in (
        {"cmd": "setup", "configs": [asdict(cfg)]},
        {"cmd": "check", "config": cfg.name, "path": str(path)},
        {"cmd": "time", "config": cfg.name, "mode": "b2b", "what": "train", "n": 3},
        {"cmd": "frobnicate"},
        {"cmd": "quit"},
        {"cmd": "time", "config": cfg.name, "mode": "b2b", "what": "forward", "n": 1})]
    answers = []
    serve("fastlstm[numpy]", 1, iter(requests), answers.append)
    setup, check, timed, unknown, quit_ = answers  # nothing answered after "quit"
    assert setup["ok"] and setup["pid"] == os.getpid() and setup["configs"][cfg.name]["train"]
    assert check == {"ok": True, "train": True}
    with np.load(path) as f:
        assert set(f.files) == {"y", "dx", "y_whole"}
        np.testing.assert_allclose(f["y"], f["y_whole"], rtol=1e-6)
    assert len(timed["times"]) == 3 and all(t > 0 for t in timed["times"])
    assert not unknown["ok"] and "unknown command 'frobnicate'" in unknown["error"]
    assert quit_ == {"ok": True}


def test_each_implementation_runs_in_a_process_of_its_own_in_both_modes():
    result = tiny_suite(peers=PEERS_HERE)
    labels = ["fastlstm[numpy]"] + (["fastlstm[cython]"] if fast_backend() == "cython"
                                    else []) + PEERS_HERE
    pids = {label: w["pid"] for label, w in result["workers"].items()}
    assert list(pids) == labels
    assert len(set(pids.values())) == len(labels) and os.getpid() not in pids.values()
    assert result["parent_pid"] == os.getpid()
    for pid in pids.values():  # every worker is gone once the run is over
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    assert result["modes"] == ["b2b", "idle"]
    rows = {(r["config"], r["impl"], r["mode"]): r for r in result["rows"]}
    assert len(rows) == len(result["rows"]) == len(TINY) * len(labels) * 2
    for (config, impl, mode), r in rows.items():
        assert r["pid"] == pids[impl]
        trains = impl != "onnxruntime"
        for what in ("forward", "train") if trains else ("forward",):
            assert 0 < r[f"{what}_ms"] <= r[f"{what}_p90_ms"]
            # 2 rounds of 2 calls; back-to-back one-step calls: a pass of T steps a round
            calls = 2 * (5 if config == "stream" and mode == "b2b" else 2)
            assert r[f"{what}_samples"] == calls == len(r[f"{what}_times_ms"])
            assert np.median(r[f"{what}_times_ms"]) == pytest.approx(r[f"{what}_ms"], abs=1e-3)
        if not trains:
            assert r["train_ms"] is None
    ours = rows[("seed", f"fastlstm[{fast_backend()}]", "idle")]
    assert ours["ratios"]["numpy/forward"] == pytest.approx(
        rows[("seed", "fastlstm[numpy]", "idle")]["forward_ms"] / ours["forward_ms"])
    steps = {(s["impl"], s["mode"]): s for s in result["stream_step"]}
    assert set(steps) == {(impl, mode) for impl in labels for mode in ("b2b", "idle")}
    for (impl, mode), s in steps.items():
        assert s["us"] == pytest.approx(rows[("stream", impl, mode)]["forward_ms"] * 1e3)
        assert s["us"] <= s["p90_us"]
        expected = {"torch": "LSTMCell", "onnxruntime": "LSTM graph of T=1"}.get(impl)
        assert s["api"] == (expected or ("step" if hasattr(fastlstm.LSTM, "step") else "call"))


def test_one_mode_only():
    result = tiny_suite(config_names=TINY[:1], modes=("idle",), rounds=1)
    assert {r["mode"] for r in result["rows"]} == {"idle"} and result["modes"] == ["idle"]


@pytest.mark.parametrize("fault,what", [("wrong-output", "forward output"),
                                        ("wrong-grad", "input gradient")])
def test_a_worker_that_disagrees_is_refused_before_timing(monkeypatch, fault, what):
    label = f"fastlstm[{fast_backend()}]"
    monkeypatch.setenv(FAULT_ENV, f"{label}={fault}")
    with pytest.raises(CheckFailed, match=rf"{label.replace('[', '.')} disagrees with the "
                                          rf"NumPy reference on seed \({what}\)"):
        tiny_suite()


def test_a_crashing_worker_gives_a_clear_error(monkeypatch):
    label = f"fastlstm[{fast_backend()}]"
    monkeypatch.setenv(FAULT_ENV, f"{label}=crash")
    with pytest.raises(WorkerError) as info:
        tiny_suite()
    text = str(info.value)
    assert f"benchmark worker {label} (pid " in text
    assert "exited with status 3 during 'check'" in text
    assert "Its stderr ends:\n" in text and "injected crash" in text


def test_a_hanging_worker_is_killed_after_its_time_limit(monkeypatch, tmp_path):
    from dataclasses import asdict
    monkeypatch.setenv(FAULT_ENV, "fastlstm[numpy]=hang")
    w = WorkerProcess("fastlstm[numpy]", 1)
    try:
        w.request("setup", configs=[asdict(TINY[0])])
        with pytest.raises(WorkerError, match=r"fastlstm\[numpy\] \(pid \d+\) did not answer "
                                              r"'check' within 2 s and was killed"):
            w.request("check", timeout=2, config=TINY[0].name, path=str(tmp_path / "x.npz"))
        assert w.proc.poll() is not None
    finally:
        w.close()


def test_a_worker_that_fails_a_command_says_why():
    w = WorkerProcess("fastlstm[no-such-backend]", 1)
    try:
        with pytest.raises(WorkerError, match=r"failed on 'setup':\nTraceback"):
            w.request("setup", configs=[dict(vars(TINY[0]))])
    finally:
        w.close()


def test_cold_start_times_a_fresh_process():
    c = cold_starts(2, 1)
    assert c["runs"] == 2 and len(c["samples"]) == 2
    assert c["backend"] in fastlstm.available_backends()
    for s in c["samples"]:
        parts = s["startup_s"] + s["import_s"] + s["build_s"] + s["forward_s"]
        assert 0 < s["startup_s"] and 0 < s["import_s"] and 0 < s["forward_s"]
        assert parts == pytest.approx(s["total_s"])
    assert c["total_s"] == np.median([s["total_s"] for s in c["samples"]])
