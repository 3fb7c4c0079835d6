"""compile_settings() lowers numba's global optimisation settings while fastlstm's kernels
compile and must give them back exactly, however many threads compile at once: each of
them used to save what it found and restore that on its way out, so a thread that came in
while another one had the settings lowered restored the lowered ones, for good."""
import os
import subprocess
import sys
import textwrap
import time

import pytest

import fastlstm
from conftest import run_together

pytestmark = pytest.mark.skipif("numba" not in fastlstm.available_backends(),
                                reason="numba is not installed here")


def _settings(options):
    codegen = options._codegen()
    return {"OPT": int(options.numba_config.OPT),
            "SLP_VECTORIZE": options.numba_config.SLP_VECTORIZE,
            "codegen._opt_level": getattr(codegen, "_opt_level", None),
            "codegen._loopvect": getattr(codegen, "_loopvect", None)}


@pytest.fixture
def options():
    """The options module; numba's settings are put back afterwards even if a test
    failed with them lowered, so that no later test compiles at the wrong level."""
    from fastlstm.backends.numba_kernels import options
    codegen = options._codegen()
    saved = {k: getattr(options.numba_config, k) for k in options.COMPILE_SETTINGS}
    cheap = {k: getattr(codegen, k) for k in ("_opt_level", "_loopvect") if hasattr(codegen, k)}
    yield options
    for k, v in saved.items():
        setattr(options.numba_config, k, v)
    for k, v in cheap.items():
        setattr(codegen, k, v)


def _enter_in_threads(options, n, stagger, hold):
    """n threads line up at a barrier, then enter compile_settings() `stagger` s apart and
    stay `hold` s: each one enters while the ones before it are still inside, and they
    leave in the order they came. Returns the settings each saw inside."""
    def work(i, barrier):
        time.sleep(i * stagger)
        with options.compile_settings():
            seen = _settings(options)
            time.sleep(hold)
        return seen
    return run_together(n, work, timeout=60)


@pytest.mark.parametrize("n", [2, 4])
def test_threads_entering_at_once_restore_the_original_settings(options, n):
    original = _settings(options)
    lowered = dict(original, OPT=options.COMPILE_SETTINGS["OPT"],
                   SLP_VECTORIZE=options.COMPILE_SETTINGS["SLP_VECTORIZE"])
    if original["codegen._opt_level"] is not None:
        lowered.update({"codegen._opt_level": 0, "codegen._loopvect": False})
    for _ in range(3):
        seen = _enter_in_threads(options, n, stagger=0.02, hold=0.1)
        assert seen == [lowered] * n  # every thread compiles with our settings
        assert _settings(options) == original  # and numba gets its own back


def test_settings_come_back_after_an_error_inside(options):
    original = _settings(options)
    with pytest.raises(RuntimeError, match="boom"):
        with options.compile_settings():
            with options.compile_settings():  # nested in one thread, too
                raise RuntimeError("boom")
    assert _settings(options) == original


FIRST_CALLS = textwrap.dedent("""
    import json, threading, numpy as np, fastlstm
    from fastlstm.backends import numba_cpu
    from fastlstm.backends.numba_kernels import options
    def settings():
        c = options._codegen()
        return [int(options.numba_config.OPT), options.numba_config.SLP_VECTORIZE,
                getattr(c, "_opt_level", None), getattr(c, "_loopvect", None)]
    before = settings()
    models = [fastlstm.LSTM(6, 24, backend="numba", seed=i, dtype=dt)
              for i, dt in enumerate(["float32", "float64"] * 2)]
    barrier = threading.Barrier(len(models))
    def work(m):
        barrier.wait()
        x = np.ones((5, 2, 6), m.dtype)
        y, _ = m(x)
        m.backward(np.ones_like(y))
    threads = [threading.Thread(target=work, args=(m,)) for m in models]
    [t.start() for t in threads]
    [t.join() for t in threads]
    print(json.dumps({"before": before, "after": settings()}))
""")


def test_first_calls_from_several_threads_leave_numba_as_it_was():
    # the real thing, in a fresh process: every kernel's first call per dtype goes through
    # compile_settings (a compile, or a load from the disk cache), from 4 threads at once
    # (about a second each with the kernels in the disk cache; the race is timing-bound,
    # so three processes: before the fix about half of them ended with OPT=2)
    import json
    for _ in range(3):
        run = subprocess.run([sys.executable, "-c", FIRST_CALLS], capture_output=True,
                             text=True, timeout=600, env=dict(os.environ))
        assert run.returncode == 0, run.stderr[-3000:]
        result = json.loads(run.stdout.strip().splitlines()[-1])
        assert result["after"] == result["before"]
