"""`fastlstm info`, `fastlstm bench` and `fastlstm --version`: output, JSON, progress, and
clear argument errors."""
import json
import subprocess
import sys

import pytest

from fastlstm.cli import build_parser, main
from fastlstm.threads import default_num_threads

CORES = default_num_threads()


def test_info_as_a_module_command():
    out = subprocess.run([sys.executable, "-m", "fastlstm", "info"], capture_output=True,
                         text=True, check=True).stdout
    assert "fastlstm 0." in out and "numpy" in out and "threads:" in out and "blas:" in out


def test_version_prints_the_version_and_exits_0():
    import fastlstm
    run = subprocess.run([sys.executable, "-m", "fastlstm", "--version"], capture_output=True,
                         text=True)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == f"fastlstm {fastlstm.__version__}"


def test_show_config_prints_or_returns_the_info_report(capsys):
    import fastlstm
    info = fastlstm.show_config(mode="dicts")
    assert capsys.readouterr().out == ""
    assert info["fastlstm"] == fastlstm.__version__ and info["auto_order"][-1] == "numpy"
    assert fastlstm.show_config() is None
    out = capsys.readouterr().out
    assert out.startswith(f"fastlstm {fastlstm.__version__}") and "auto tries: " in out
    with pytest.raises(ValueError, match="mode must be 'stdout' or 'dicts', got 'json'"):
        fastlstm.show_config("json")


def test_info_json(capsys):
    assert main(["info", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["backends"]["numpy"]["available"] is True
    assert "built" in info["extension"]


def test_bench_quick_prints_table_progress_and_json(capsys, tmp_path):
    import os
    path = tmp_path / "bench.json"
    assert main(["bench", "--quick", "--configs", "edge", "--compare", "none", "--backends",
                 "numpy", "--json", str(path)]) == 0
    out, err = capsys.readouterr()
    assert "[1/1] edge (B=1 T=100 I=32 H=128): checking" in err
    assert "round 1/1: edge (b2b, idle)" in err and "cold start: 2 fresh processes" in err
    assert "GEMM peak" in out and "Each implementation in a process of its own" in out
    assert all(len(line) <= 100 for line in out.splitlines())
    blocks = out.split("\n\n")
    b2b = blocks.index("== Back-to-back calls ==")
    idle = blocks.index("== Idle caller (a 50 ms pause before each call) ==")
    assert b2b < idle
    for i in (b2b, idle):
        table = blocks[i + 1].splitlines()
        assert table[0].startswith("Median and 90th percentile (p90), ms")
        assert table[1].split()[:5] == ["config", "implementation", "fwd", "ms", "p90"]
        assert table[3].split()[:2] == ["edge", "fastlstm[numpy]"]
    cold = next(b for b in blocks if b.startswith("Cold start"))
    assert "median of 2" in " ".join(cold.split())
    data = json.loads(path.read_text())
    assert data["modes"] == ["b2b", "idle"] and data["rounds"] == 1 and data["repeat"] == 3
    rows = {r["mode"]: r for r in data["rows"]}
    assert set(rows) == {"b2b", "idle"} and len(data["rows"]) == 2
    for r in rows.values():
        assert r["config"] == "edge" and r["pid"] != os.getpid()
        assert 0 < r["forward_ms"] <= r["forward_p90_ms"]
        assert 0 < r["train_ms"] <= r["train_p90_ms"]
        assert 0 < r["forward_pct_peak"] < 100
        assert r["ratios"] == {"numpy/forward": 1.0, "numpy/train": 1.0}
    assert data["gemm_peak_gflops"] > 1
    summary = " ".join(out.split("\n\n")[-1].split())  # the closing block, unwrapped
    assert summary.startswith("Summary: auto uses ")
    assert "Only the NumPy reference ran" in summary and "No peer was asked for" in summary
    assert data["machine"]["threads"] >= 1 and "blas" in data["machine"]
    machine = data["machine_summary"]
    assert machine["cpu"] == data["machine"]["cpu"] and machine["cores"] == CORES
    assert machine["isa"] == (data["machine"]["extension"].get("isa") or {}).get("chosen")
    cold = data["cold_start"]
    assert cold["runs"] == 2 and 0 < cold["forward_s"] < cold["total_s"]
    assert 0 < cold["import_s"] < cold["total_s"]


def test_bench_one_mode_without_cold_start(capsys, tmp_path):
    path = tmp_path / "bench.json"
    assert main(["bench", "--quick", "--configs", "seed", "--compare", "none", "--backends",
                 "numpy", "--mode", "b2b", "--cold-starts", "0", "--json", str(path)]) == 0
    out = capsys.readouterr().out
    assert "== Back-to-back calls ==" in out and "Idle caller" not in out
    assert "Cold start" not in out
    data = json.loads(path.read_text())
    assert {r["mode"] for r in data["rows"]} == {"b2b"} and data["cold_start"] is None


@pytest.mark.parametrize("argv,message", [
    (["bench", "--configs", "huge"], "unknown config huge; choose from edge"),
    (["bench", "--backends", "tpu"], "unknown backend tpu"),
    (["bench", "--compare", "tensorflow"], "unknown peer tensorflow"),
    (["bench", "--repeat", "0"], "must be a positive integer"),
    (["bench", "--threads", "-2"], "must be a positive integer"),
    (["bench", "--threads", str(CORES + 1)],
     f"argument --threads: must be at most {CORES}, the cores this process may run on"),
    (["bench", "--configs", ","], "unknown config (none given)"),
    (["bench", "--json", "/no/such/folder/x.json"], "folder /no/such/folder does not exist"),
    (["bench", "--mode", "busy"], "argument --mode: invalid choice: 'busy'"),
    (["bench", "--rounds", "0"], "argument --rounds: must be a positive integer"),
    (["bench", "--cold-starts", "-1"], "argument --cold-starts: must be a positive integer"),
    (["frobnicate"], "invalid choice"),
])
def test_bad_arguments_exit_2_with_a_message(capsys, argv, message):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_bench_with_more_threads_than_cores_exits_2_instead_of_crashing():
    # it used to hand 100000 threads to torch (a segfault) and ONNX Runtime (a hang)
    run = subprocess.run([sys.executable, "-m", "fastlstm", "bench", "--threads", "100000",
                          "--quick", "--configs", "edge", "--backends", "numpy",
                          "--no-first-call"], capture_output=True, text=True, timeout=120)
    assert run.returncode == 2, f"exit status {run.returncode}\n{run.stderr[-2000:]}"
    assert f"argument --threads: must be at most {CORES}" in run.stderr
    assert "got 100000" in run.stderr and run.stdout == ""


def test_bench_accepts_every_core():
    assert build_parser().parse_args(["bench", "--threads", str(CORES)]).threads == CORES


def test_bench_refuses_to_time_a_backend_that_disagrees(monkeypatch, capsys):
    from fastlstm.benchmark.worker import FAULT_ENV
    # the test hook makes that backend's worker process add 0.01 to its output
    monkeypatch.setenv(FAULT_ENV, "fastlstm[numpy]=wrong-output")
    code = main(["bench", "--quick", "--configs", "seed", "--compare", "none", "--backends",
                 "numpy", "--cold-starts", "0"])
    assert code == 1
    out, err = capsys.readouterr()
    assert "fastlstm[numpy] disagrees with the NumPy reference on seed (forward output)" in err
    assert "round 1/1" not in err and out == ""  # nothing was timed


def test_bench_reports_a_crashed_worker_and_exits_1(monkeypatch, capsys):
    from fastlstm.benchmark.worker import FAULT_ENV
    monkeypatch.setenv(FAULT_ENV, "fastlstm[numpy]=crash")
    code = main(["bench", "--quick", "--configs", "seed", "--compare", "none", "--backends",
                 "numpy", "--cold-starts", "0"])
    assert code == 1
    err = capsys.readouterr().err
    assert "fastlstm bench: benchmark worker fastlstm[numpy] (pid " in err
    assert "exited with status 3 during 'check'" in err and "injected crash" in err


def test_scaling(capsys, monkeypatch):
    from fastlstm.benchmark import scaling
    from fastlstm.benchmark.configs import Config
    monkeypatch.setattr(scaling, "BASE", Config("scaling", B=2, T=5, I=3, H=4))
    monkeypatch.setattr(scaling, "GRID", {"B": [1, 4], "T": [5, 10], "H": [4, 8]})
    assert main(["bench", "--scaling", "--quick", "--configs", "seed", "--backends",
                 "numpy"]) == 0
    out = capsys.readouterr().out
    lines = [line.split() for line in out.splitlines() if line.startswith("numpy")]
    varied = [(row[1], row[2]) for row in lines]
    assert ("threads", "(seed)") in varied  # "threads (seed)", then the thread count
    assert ("B", "4") in varied and ("H", "8") in varied
    h8 = next(row for row in lines if row[1:3] == ["H", "8"])
    assert float(h8[-1]) == pytest.approx(8 * (3 + 8) / (4 * (3 + 4)), rel=1e-2)  # FLOPs ~ H(I+H)


def test_bench_isa_refuses_a_variant_that_cannot_run(capsys):
    from fastlstm.backends import backend_status
    if backend_status()["cython"]:
        expected = "argument --isa: needs the compiled extension"
    else:
        from fastlstm.backends import cython_cpu
        expected = (f"argument --isa: this build has no 'bogus' kernels (built: "
                    f"{', '.join(cython_cpu.VARIANTS)}); this CPU can run: "
                    f"{', '.join(cython_cpu.runnable_isas())}")
    with pytest.raises(SystemExit) as exit_info:
        main(["bench", "--isa", "bogus", "--configs", "seed"])
    assert exit_info.value.code == 2
    assert expected in capsys.readouterr().err


def _bench_json(run, path):
    assert run.returncode == 0, f"exit status {run.returncode}\n{run.stderr[-3000:]}"
    return json.loads(path.read_text())


def test_bench_isa_runs_a_child_with_the_variant_and_the_restrictions(tmp_path):
    from conftest import require_backend
    require_backend("cython")
    from fastlstm.backends import cython_cpu
    from fastlstm.benchmark.isa import environment, shell_text
    lowest = cython_cpu.runnable_isas()[-1]  # baseline on x86-64
    env = environment(lowest)
    path = tmp_path / "bench.json"
    run = subprocess.run([sys.executable, "-m", "fastlstm", "bench", "--isa", lowest.upper(),
                          "--quick", "--configs", "seed", "--compare", "none", "--backends",
                          "cython", "--no-first-call", "--threads", "1", "--json", str(path)],
                         capture_output=True, text=True, timeout=300, cwd=tmp_path)
    data = _bench_json(run, path)
    assert f"running in a child process with {shell_text(env)}" in run.stderr
    assert data["isa"]["kernels"] == lowest and data["isa"]["forced"] == lowest
    assert data["isa"]["environment"] == env
    assert data["machine"]["extension"]["isa"]["chosen"] == lowest
    assert {r["impl"] for r in data["rows"]} == {"fastlstm[numpy]", "fastlstm[cython]"}
    assert f"fastlstm's kernels {lowest} (forced by FASTLSTM_ISA={lowest})" in run.stdout
    if "OPENBLAS_CORETYPE" in env:  # OpenBLAS took the name (it ignores one it does not know)
        arch = {b.get("architecture") for b in data["machine"]["blas"]
                if b.get("internal_api") == "openblas"}
        assert arch <= {env["OPENBLAS_CORETYPE"]}


def test_bench_isa_runs_in_this_process_when_its_environment_is_set(monkeypatch, tmp_path,
                                                                      capsys):
    from conftest import require_backend
    require_backend("cython")
    from fastlstm.backends import cython_cpu
    from fastlstm.benchmark import isa
    runnable = cython_cpu.runnable_isas()
    if len(runnable) < 2:
        pytest.skip(f"this CPU runs one variant only ({runnable[0]})")

    def no_child(*args):
        raise AssertionError("ran a child process")
    monkeypatch.setattr(isa, "run_in_child", no_child)
    for k, v in isa.environment(runnable[1]).items():
        monkeypatch.setenv(k, v)
    before, path = cython_cpu.ISA, tmp_path / "bench.json"
    try:
        assert main(["bench", "--isa", runnable[1], "--quick", "--configs", "seed",
                     "--compare", "none", "--backends", "cython", "--no-first-call",
                     "--json", str(path)]) == 0
    finally:
        cython_cpu.select_isa(before)
    data = json.loads(path.read_text())
    assert data["isa"]["kernels"] == runnable[1]
    assert data["isa"]["environment"] == isa.environment(runnable[1])
    assert "running in a child process" not in capsys.readouterr().err


def test_bench_seed_fit_times_the_whole_keras_program(capsys, tmp_path):
    path = tmp_path / "fit.json"
    assert main(["bench", "--configs", "seed-fit", "--quick", "--compare", "none",
                 "--json", str(path)]) == 0
    out = capsys.readouterr().out
    assert "seed-fit: LSTM(50, return_sequences) -> LSTM(50) -> Dense(1)" in out
    run = json.loads(path.read_text())["programs"]["seed-fit"]
    ours = run["impls"]["fastlstm"]
    assert ours["fit_s"] > 0 and ours["last_loss"] < 0.05  # it learned the sine
    assert run["program"]["epochs"] == 100 and run["ratios"] == {}


def test_bench_seed_fit_runs_the_rounds_asked_for(monkeypatch, capsys):
    from fastlstm.benchmark import seed_fit
    runs = []

    def fake_run(cmd, **kwargs):
        runs.append(cmd)
        out = json.dumps({"fit_s": 0.1, "first_loss": 0.5, "last_loss": 0.01, "version": "x"})
        return subprocess.CompletedProcess(cmd, 0, stdout=out + "\n", stderr="")

    monkeypatch.setattr(seed_fit.subprocess, "run", fake_run)
    assert main(["bench", "--configs", "seed-fit", "--compare", "none", "--rounds", "5",
                 "--no-first-call", "--cold-starts", "0"]) == 0
    assert len(runs) == 5 and "5 fresh processes" in capsys.readouterr().out


def test_bench_seed_fit_refuses_a_run_that_did_not_learn(monkeypatch):
    from fastlstm.benchmark import seed_fit

    def fake_run(cmd, **kwargs):
        out = json.dumps({"fit_s": 0.1, "first_loss": 0.5, "last_loss": 0.4, "version": "x"})
        return subprocess.CompletedProcess(cmd, 0, stdout=out + "\n", stderr="")

    monkeypatch.setattr(seed_fit.subprocess, "run", fake_run)
    with pytest.raises(RuntimeError, match="seed-fit run of fastlstm did not learn"):
        seed_fit.run_seed_fit(1, 1, ["fastlstm"], progress=lambda msg: None)
