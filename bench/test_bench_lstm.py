"""pytest-benchmark suite: the `fastlstm bench` configs, parametrized over every backend and
peer, each result checked against the NumPy reference before it is timed.

Not part of the default test run (pyproject's testpaths is tests/). Run and compare:
    python -m pytest bench --benchmark-save=before
    python -m pytest bench --benchmark-compare --benchmark-group-by=group
"""
import pytest

import fastlstm
from fastlstm.benchmark.configs import CONFIGS
from fastlstm.benchmark.peers import PEERS, make_peer, peer_status
from fastlstm.benchmark.runners import FastlstmRunner, make_workload
from fastlstm.benchmark.suite import check_close

IMPLS = [f"fastlstm[{b}]" for b in fastlstm.available_backends()] + list(PEERS)
_workloads, _references = {}, {}


def workload(config):
    """The config's inputs and weights, built once per session, and the reference's
    output and input gradient on them (what every implementation is checked against)."""
    if config not in _workloads:
        _workloads[config] = make_workload(CONFIGS[config])
        ref = FastlstmRunner(_workloads[config], "numpy")
        _references[config] = (ref.output(), ref.input_grad())
    return _workloads[config]


def make_runner(impl, wl):
    """A runner for "fastlstm[backend]" or a peer; skips a peer that is not installed."""
    if impl.startswith("fastlstm["):
        return FastlstmRunner(wl, impl[len("fastlstm["):-1])
    if peer_status(impl):
        pytest.skip(peer_status(impl))
    return make_peer(impl, wl, fastlstm.get_num_threads())


@pytest.mark.parametrize("mode", ["forward", "train"])
@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("config", list(CONFIGS))
def test_lstm(benchmark, config, impl, mode):
    wl = workload(config)
    runner = make_runner(impl, wl)
    y_ref, dx_ref = _references[config]
    if mode == "forward":
        check_close(impl, "forward output", runner.output(), y_ref, config)
        fn = runner.forward
    else:
        if runner.train is None:
            pytest.skip(f"{impl} has no training mode")
        check_close(impl, "input gradient", runner.input_grad(), dx_ref, config)
        fn = runner.train
    benchmark.group = f"{config} {mode}"
    benchmark.extra_info.update(config=config, impl=impl, mode=mode,
                                gflop=CONFIGS[config].flops(backward=mode == "train") / 1e9)
    benchmark.pedantic(fn, rounds=5, warmup_rounds=1)


@pytest.mark.parametrize("impl", IMPLS)
def test_stream_step(benchmark, impl):
    """One call of one step with the state carried (fastlstm: model.step when the model
    has it; torch: LSTMCell; ONNX Runtime: the T=1 graph), as `fastlstm bench` times it."""
    wl = workload("stream")
    runner = make_runner(impl, wl)
    check_close(impl, "forward output", runner.output(), _references["stream"][0], "stream")
    benchmark.group = "stream one step"
    benchmark.extra_info.update(config="stream", impl=impl, mode="step",
                                api=getattr(runner, "step_api", None))
    benchmark.pedantic(runner.step, rounds=200, warmup_rounds=10)
