"""The compiled kernels' thread pool (src_cython/pool.h): the calling thread never waits
for a helper that is not there, and results never depend on which threads, or how many,
took part: 1 thread, 2, and 2 with a helper that wakes late give the same bits."""
import threading

import numpy as np
import pytest

import fastlstm
from conftest import require_backend


@pytest.fixture(autouse=True)
def _cython_available():
    require_backend("cython")


@pytest.fixture
def cy(monkeypatch):
    from fastlstm.backends import cython_cpu
    saved, isa = fastlstm.get_num_threads(), cython_cpu.ISA
    # the small shapes here get a team of 2 whatever the plan's thresholds say: the pool,
    # not the plan, is under test
    for name in ("STEPS_MIN_WORK", "STEPS_MIN_CALL_WORK", "MIN_MACS_PER_CALL_AND_THREAD"):
        monkeypatch.setattr(cython_cpu, name, 1)
    cython_cpu._plans.clear()
    yield cython_cpu
    cython_cpu._plans.clear()
    cython_cpu._k.pool_set_helper_delay_us(0)
    cython_cpu.FORCE_PATH = None
    cython_cpu.select_isa(isa)
    fastlstm.set_num_threads(saved)


def _train_once(T, B, I, H, dtype, lengths, seed=0):
    """Every output of one forward and backward of a 2-layer bidirectional model."""
    m = fastlstm.LSTM(I, H, num_layers=2, bidirectional=True, backend="cython", seed=seed,
                      dtype=dtype)
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((T, B, I)).astype(dtype)
    y, (h, c) = m(x, lengths=lengths)
    dy = rng.standard_normal(y.shape).astype(dtype)
    dx, (dh0, dc0) = m.backward(dy)
    grads = [np.array(g) for g in m.grads.values()]
    return [y, h, c, dx, dh0, dc0, *grads]


def _assert_same_bits(a, b):
    assert len(a) == len(b)
    for u, v in zip(a, b):
        np.testing.assert_array_equal(u, v)


def _wait_for_helpers(cy, m, x, seconds=5.0):
    """Call m(x) until a helper takes part (a helper of an earlier test may still be in
    its test delay): the pool is then back to normal."""
    import time
    cy._k.pool_set_helper_delay_us(0)
    until = time.monotonic() + seconds
    while time.monotonic() < until:
        cy._k.pool_reset_stats()
        m(x)
        if cy._k.pool_stats()["helpers"] > 0:
            return
    pytest.fail(f"no helper took part in {seconds} s of calls")


def _runnable():
    from fastlstm.backends import cython_cpu
    return cython_cpu.runnable_isas()


@pytest.mark.parametrize("isa", _runnable())
@pytest.mark.parametrize("path", ["rows", "steps"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("T,B,I,H,lengths", [
    (7, 13, 5, 40, None), (9, 20, 3, 17, "ragged"), (5, 1, 4, 70, None),
    (3, 32, 1, 50, None), (1, 9, 6, 33, None)])
def test_same_bits_whoever_takes_part(cy, isa, path, dtype, T, B, I, H, lengths):
    cy.select_isa(isa)
    cy.FORCE_PATH = path
    if lengths == "ragged":
        lengths = np.random.default_rng(B).integers(1, T + 1, B)
    fastlstm.set_num_threads(1)
    alone = _train_once(T, B, I, H, dtype, lengths)
    fastlstm.set_num_threads(2)
    _assert_same_bits(_train_once(T, B, I, H, dtype, lengths), alone)
    cy._k.pool_set_helper_delay_us(300)  # the helper joins part-way, or not at all
    _assert_same_bits(_train_once(T, B, I, H, dtype, lengths), alone)


def test_a_helper_that_never_comes_is_not_waited_for(cy):
    """With every helper asleep for 0.2 s before it may join, calls still finish, all
    their work done by the calling thread: it waited for no one."""
    fastlstm.set_num_threads(2)
    cy.FORCE_PATH = "steps"  # a phase per step: the old kernels met the team at every one
    m = fastlstm.LSTM(32, 128, backend="cython", seed=1).eval()
    x = np.random.default_rng(1).standard_normal((50, 1, 32)).astype(np.float32)
    expected = m(x)[0]
    cy._k.pool_set_helper_delay_us(200_000)
    for _ in range(3):  # the first call may have found a helper spinning: it joins at once
        m(x)
    cy._k.pool_reset_stats()
    for _ in range(5):
        np.testing.assert_array_equal(m(x)[0], expected)
    stats = cy._k.pool_stats()
    assert stats["helpers"] == 0 and stats["caller"] > 0, stats


def test_a_late_helper_joins_and_takes_what_is_left(cy):
    """A helper that wakes 300 us into a long call still gets units to run; the result is
    the same bits as one thread's."""
    fastlstm.set_num_threads(1)
    m = fastlstm.LSTM(32, 256, backend="cython", seed=2)
    x = np.random.default_rng(2).standard_normal((400, 1, 32)).astype(np.float32)
    dy = np.ones((400, 1, 256), np.float32)
    expected = [m(x)[0], m.backward(dy)[0]]
    fastlstm.set_num_threads(2)
    _wait_for_helpers(cy, m, x)
    cy._k.pool_set_helper_delay_us(300)
    shared = False
    for _ in range(20):  # a busy machine may keep the helper off its core for a whole call
        cy._k.pool_reset_stats()
        got = [m(x)[0], m.backward(dy)[0]]
        _assert_same_bits(got, expected)
        stats = cy._k.pool_stats()
        if stats["helpers"] > 0 and stats["caller"] > 0:
            shared = True
            break
    assert shared, "in 20 long calls the late helper never took a unit"


def test_concurrent_callers_each_get_their_own_results(cy):
    """Python threads calling at once with 2 threads each: one job has the helpers, the
    others run on their calling thread; each gets its own result, bit for bit."""
    fastlstm.set_num_threads(2)
    models = [fastlstm.LSTM(6, 40 + 16 * i, backend="cython", seed=i) for i in range(4)]
    rng = np.random.default_rng(0)
    xs = [rng.standard_normal((20, 12, 6)).astype(np.float32) for _ in models]
    dys = [np.ones((20, 12, m.hidden_size), np.float32) for m in models]
    expected = [(m(x)[0], m.backward(dy)[0]) for m, x, dy in zip(models, xs, dys)]
    errors = []
    start = threading.Barrier(len(models))

    def work(i):
        try:
            start.wait()
            for _ in range(25):
                y = models[i](xs[i])[0]
                dx = models[i].backward(dys[i])[0]
                if not (np.array_equal(y, expected[i][0]) and np.array_equal(dx, expected[i][1])):
                    errors.append(i)
        except Exception as exc:  # noqa: BLE001 (reported below)
            errors.append(repr(exc))

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(models))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not any(t.is_alive() for t in threads), "a caller hung"
    assert errors == []


def test_spin_time_is_settable_and_checked(cy):
    before = cy._k.pool_spin_us()
    try:
        assert cy._k.pool_spin_us(0) == 0
        fastlstm.set_num_threads(2)
        m = fastlstm.LSTM(8, 64, backend="cython", seed=0).eval()
        x = np.ones((30, 16, 8), np.float32)
        first = m(x)[0]
        np.testing.assert_array_equal(m(x)[0], first)  # helpers asleep at once: still right
        with pytest.raises(ValueError, match="us must be >= 0"):
            cy._k.pool_spin_us(-1)
    finally:
        cy._k.pool_spin_us(before)


def _two_thread_output_in_child(conn, x):
    """In a fork()ed child: the pool's helpers did not come along; a job asking for 2
    threads must start new ones, not wait for the old."""
    from fastlstm.backends import cython_cpu
    fastlstm.set_num_threads(2)
    cython_cpu._k.pool_reset_stats()
    m = fastlstm.LSTM(x.shape[2], 96, backend="cython", seed=3)
    y = m.eval()(x)[0]
    for _ in range(50):  # long enough calls for a new helper to join some
        m(x)
    conn.send((y, cython_cpu._k.pool_stats()))


@pytest.mark.skipif(not hasattr(__import__("os"), "fork"), reason="needs os.fork")
def test_a_forked_child_gets_helpers_of_its_own(cy):
    import multiprocessing
    fastlstm.set_num_threads(2)
    x = np.random.default_rng(0).standard_normal((300, 1, 8)).astype(np.float32)
    m = fastlstm.LSTM(8, 96, backend="cython", seed=3).eval()
    expected = m(x)[0]  # the parent's helpers exist (and may be mid-spin) at the fork
    ctx = multiprocessing.get_context("fork")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=_two_thread_output_in_child, args=(child, x))
    proc.start()
    proc.join(timeout=60)
    if proc.is_alive():
        proc.kill()
        pytest.fail("the forked child hung")
    assert proc.exitcode == 0
    y, stats = parent.recv()
    np.testing.assert_array_equal(y, expected)
    assert stats["started"] >= 1, stats  # its own helper, started after the fork


def test_many_calls_with_random_delays_stay_exact(cy):
    """A few hundred calls of mixed shapes and modes with helpers joining at random
    moments, against the same calls on one thread."""
    rng = np.random.default_rng(5)
    cases = []
    for _ in range(12):
        T, B, I, H = (int(rng.integers(1, 30)), int(rng.integers(1, 40)),
                      int(rng.integers(1, 20)), int(rng.integers(1, 90)))
        m = fastlstm.LSTM(I, H, num_layers=2, backend="cython", seed=int(rng.integers(99)))
        x = rng.standard_normal((T, B, I)).astype(np.float32)
        cases.append((m, x, np.ones((T, B, H), np.float32)))
    fastlstm.set_num_threads(1)
    expected = [(m(x)[0], m.backward(dy)[0]) for m, x, dy in cases]
    fastlstm.set_num_threads(2)
    for r in range(20):
        cy._k.pool_set_helper_delay_us(int(rng.integers(0, 200)) if r % 2 else 0)
        for (m, x, dy), (y_ref, dx_ref) in zip(cases, expected):
            np.testing.assert_array_equal(m(x)[0], y_ref)
            np.testing.assert_array_equal(m.backward(dy)[0], dx_ref)


@pytest.mark.parametrize("value,expect", [("0", "0"), ("150", "150"), ("-1", "error"),
                                          ("soon", "error")])
def test_spin_time_from_the_environment(value, expect):
    import os
    import subprocess
    import sys
    run = subprocess.run(
        [sys.executable, "-c", "from fastlstm.backends import cython_cpu as c; "
         "print(c._k.pool_spin_us())"],
        capture_output=True, text=True, env={**os.environ, "FASTLSTM_SPIN_US": value},
        timeout=60)
    if expect == "error":
        assert run.returncode != 0 and "FASTLSTM_SPIN_US" in run.stderr
        assert "whole number of microseconds" in run.stderr
    else:
        assert run.returncode == 0, run.stderr
        assert run.stdout.strip() == expect


_ONE_CORE_CHILD = """
import os
import numpy as np
import fastlstm
from fastlstm.backends import cython_cpu as cy
m = fastlstm.LSTM(32, 128, backend="cython", seed=3)
x = np.random.default_rng(3).standard_normal((60, 1, 32)).astype(np.float32)
dy = np.ones((60, 1, 128), np.float32)
fastlstm.set_num_threads(1)  # no helper yet
expected = [m(x)[0], m.backward(dy)[0]]
fastlstm.set_num_threads(2)
os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # the helper will inherit it
for path in ("steps", "rows"):
    cy.FORCE_PATH = path
    for _ in range(3):
        m(x)
    cy._k.pool_reset_stats()
    for _ in range(5):
        got = [m(x)[0], m.backward(dy)[0]]
        for a, b in zip(got, expected):
            np.testing.assert_array_equal(a, b)
    stats = cy._k.pool_stats()
    assert stats["started"] == 1 and stats["helpers"] == 0 and stats["caller"] > 0, stats
print("ok")
"""


@pytest.mark.skipif(not hasattr(__import__("os"), "sched_setaffinity"),
                    reason="needs os.sched_setaffinity")
def test_a_helper_on_the_callers_core_leaves_the_work_to_it():
    """A process held to one core, 2 threads: the helper can only take turns with the
    caller there, and every unit it claimed would hold the caller up until the scheduler
    handed the core over (~10 ms a time on a VM). It does not join; the results are one
    thread's, bit for bit."""
    import subprocess
    import sys
    run = subprocess.run([sys.executable, "-c", _ONE_CORE_CHILD], capture_output=True,
                         text=True, timeout=300)
    assert run.returncode == 0 and run.stdout.strip() == "ok", run.stderr[-3000:]
