"""What only the numba backend has: its serial and parallel builds and block widths,
its caller-owned workspace (the kernels allocate nothing), thread-count changes
(in-process and across cached runs), its on-disk cache folder, lazy import, fork,
concurrent threads, denormals and NaN/inf."""
import json
import os
import platform
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import fastlstm
from conftest import (assert_backend_matches_reference, flushed_cell_state,
                      output_in_forked_child, require_backend, run_in_threads)


@pytest.fixture(autouse=True)
def _numba_available():
    require_backend("numba")


@pytest.fixture
def nb():
    from fastlstm.backends import numba_cpu
    saved = fastlstm.get_num_threads()
    yield numba_cpu
    numba_cpu.FORCE = numba_cpu.FORWARD_WIDTH = numba_cpu.BACKWARD_WIDTH = None
    fastlstm.set_num_threads(saved)


def compare_with_reference(*args, **kwargs):
    assert_backend_matches_reference("numba", *args, **kwargs)


@pytest.mark.parametrize("build", ["serial", "parallel"])
@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("T,B,H,width", [(1, 1, 20, 64), (6, 1, 33, 16), (5, 13, 40, 16),
                                         (7, 9, 16, 32), (4, 40, 24, 128)])
def test_both_builds_on_one_and_two_threads(nb, build, threads, dtype, T, B, H, width):
    nb.FORCE = build
    nb.FORWARD_WIDTH = width
    nb.BACKWARD_WIDTH = 16 if width > 16 else 32  # forward and backward split differently
    fastlstm.set_num_threads(threads)
    lengths = None if B == 1 else np.random.default_rng(B).integers(1, T + 1, B)
    compare_with_reference(dtype, T, B, 7, H, layers=2, bidir=True, lengths=lengths)


def test_blocks_cover_every_unit_once(nb):
    for H in (1, 15, 16, 17, 100, 512):
        for width in (16, 32, 64):
            bounds = nb.blocks(H, width)
            assert bounds[0] == 0 and bounds[-1] == H and np.all(np.diff(bounds) > 0)
            assert np.all(np.diff(bounds)[:-1] == width)


@pytest.mark.parametrize("build", ["serial", "parallel"])
@pytest.mark.parametrize("lengths", [None, [6, 2, 5]])
def test_workspace_is_exactly_what_its_regions_describe(nb, monkeypatch, build, lengths):
    """The kernels run in a workspace of exactly workspace_size() elements, NaN-filled
    so a region read before it is written would show, and refuse one element fewer,
    leaving the caller's floating-point mode as it was."""
    nb.FORCE = build
    fastlstm.set_num_threads(2)
    sizes = []

    def exact(n, dtype):
        sizes.append(n)
        return np.full(n, np.nan, dtype)
    monkeypatch.setattr(nb, "scratch", exact)
    compare_with_reference("float64", 6, 3, 5, 40, bidir=True, lengths=lengths)
    assert len(sizes) == 4  # forward and backward, both directions
    monkeypatch.setattr(nb, "scratch", lambda n, dtype: np.zeros(n - 1, dtype))
    m = fastlstm.LSTM(5, 40, backend="numba", dtype="float64")
    with pytest.raises(ValueError, match="workspace is smaller"):
        m(np.zeros((6, 3, 5)), lengths=lengths)
    assert np.float32(1e-39) * np.float32(0.5) != 0  # refused before flushing denormals


def test_workspace_regions_are_aligned_and_sized(nb):
    from fastlstm.backends.numba_kernels import entry
    regions = entry.forward_regions.py_func(5, 3, 7, 40, 11, 2, 32)  # T B I H M groups widest
    assert regions == ((11 * 160,), (2, 3 * 4 * 32), (2, 3, 40), (3, 40), (11, 7))
    dense = entry.backward_regions.py_func(5, 3, 7, 40, 15, 2, 16)
    assert dense[-3:] == ((0, 7), (0, 40), (0, 7))  # M = T*B: x, h and dx are read in place
    assert dense[4:7] == ((0, 160, 7), (0, 160, 40), (0, 160))  # one weight chunk: no partials
    assert entry.backward_regions.py_func(5, 30, 7, 40, 150, 2, 16)[4] == (1, 160, 7)
    assert [entry.weight_chunks.py_func(M) for M in (63, 64, 1023, 1024)] == [1, 2, 2, 4]
    end = 0
    for shape in regions:  # every region starts on a multiple of ALIGN elements
        end = -(-end // entry.ALIGN) * entry.ALIGN + int(np.prod(shape))
    assert entry.workspace_size(regions) == end
    work = nb.scratch(end, np.float32)
    assert work.ctypes.data % 64 == 0 and work.size >= end
    assert nb.scratch(end // 2, np.float32) is work  # kept and reused for smaller calls


NO_ALLOCATIONS = textwrap.dedent("""
    import json, numba, numpy as np, fastlstm
    from numba.core.runtime import rtsys
    from fastlstm.backends import numba_cpu
    from fastlstm.backends.numba_kernels import entry
    fastlstm.set_num_threads(2)
    allocate = numba.njit(lambda n: np.empty(n))
    allocate(3)  # compiles it and starts numba's runtime, which turns the counters on
    before = rtsys.get_allocation_stats().alloc
    allocate(3)
    out = {"control": rtsys.get_allocation_stats().alloc - before}  # the counter works
    unboxed = [0]  # numba counts each array argument it receives as one allocation
    from fastlstm.backends.numba_kernels import team
    for module, name in ((entry, "forward"), (entry, "backward"), (team, "_spin")):
        def counted(*args, kernel=getattr(module, name)):  # helpers too, and their spin
            unboxed[0] += sum(isinstance(a, np.ndarray) for a in args)
            return kernel(*args)
        setattr(module, name, counted)
    x = np.random.default_rng(0).standard_normal((6, 3, 5)).astype(np.float32)
    for build in ("serial", "parallel"):
        numba_cpu.FORCE = build
        m = fastlstm.LSTM(5, 40, backend="numba", seed=0)
        for lengths in (None, [6, 2, 4]):
            for _ in range(2):  # the first call compiles or loads, and sizes the scratch
                before, unboxed[0] = rtsys.get_allocation_stats().alloc, 0
                y, _ = m(x, lengths=lengths)
                m.backward(np.ones_like(y))
                m.eval()(x, lengths=lengths)
                m.train()
                allocs = rtsys.get_allocation_stats().alloc - before
                out[f"{build} {lengths}"] = allocs - unboxed[0]
    print(json.dumps(out))
""")


def test_kernels_allocate_nothing():
    """numba's runtime counts every array a compiled function allocates (NUMBA_NRT_STATS):
    a training step and an inference call, serial and parallel, dense and with lengths,
    allocate none once the caller's scratch is sized."""
    env = {**os.environ, "NUMBA_NRT_STATS": "1"}
    run = subprocess.run([sys.executable, "-c", NO_ALLOCATIONS], capture_output=True,
                         text=True, env=env, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    counts = json.loads(run.stdout.strip().splitlines()[-1])
    assert counts.pop("control") > 0
    assert counts == {f"{b} {n}": 0 for b in ("serial", "parallel")
                      for n in ("None", "[6, 2, 4]")}


def test_plan_runs_small_steps_serially(nb):
    fastlstm.set_num_threads(2)
    threads = min(2, __import__("numba").config.NUMBA_NUM_THREADS)
    assert nb.plan(100, 16, 256, )[:2] == (threads > 1, threads)  # mid: a team pays
    assert nb.plan(100, 1, 64)[0] is False                    # too little work per step
    assert nb.plan(1, 64, 512)[0] is False                    # one step: waking costs more
    fastlstm.set_num_threads(1)
    assert nb.plan(100, 64, 512)[:2] == (False, 1)


def test_plan_asks_helpers_in_by_shape_and_thread_count(nb, monkeypatch):
    """Which calls the helpers are asked into (the benchmark's configs, 2 threads), and
    that one thread, a forked child or FORCE decide it whatever the shape."""
    import numba
    monkeypatch.setattr(numba.config, "NUMBA_NUM_THREADS", 4)
    fastlstm.set_num_threads(2)
    assert nb.plan(100, 1, 128) == (False, 1, 64)     # edge: too little work per step
    assert nb.plan(10, 32, 50) == (True, 2, 32)       # seed
    assert nb.plan(100, 1, 256) == (True, 2, 64)      # single
    assert nb.plan(100, 16, 256) == (True, 2, 32)     # mid
    assert nb.plan(50, 64, 512) == (True, 2, 128)     # large
    assert nb.plan(1, 64, 512)[0] is False            # one step runs alone
    nb.FORCE = "parallel"
    assert nb.plan(100, 1, 8)[:2] == (True, 2)
    nb.FORCE = "serial"
    assert nb.plan(50, 64, 512)[:2] == (False, 1)
    nb.FORCE = None
    monkeypatch.setattr(nb, "in_forked_child", lambda: True)
    assert nb.plan(50, 64, 512)[:2] == (False, 1)
    monkeypatch.undo()
    fastlstm.set_num_threads(1)
    assert nb.plan(50, 64, 512)[:2] == (False, 1)


def _train_step(T, B, I, H, lengths=None, dtype=np.float32):
    m = fastlstm.LSTM(I, H, num_layers=2, bidirectional=True, backend="numba", seed=4,
                      dtype=dtype)
    x = np.random.default_rng(5).standard_normal((T, B, I)).astype(dtype)
    y, (h, c) = m(x, lengths=lengths)
    dy = np.random.default_rng(6).standard_normal(y.shape).astype(dtype)
    dx = m.backward(dy)[0]
    return [y, h, c, dx] + [g.copy() for g in m.grads.values()]


@pytest.mark.parametrize("T,B,I,H,lengths", [(9, 4, 5, 40, None), (10, 32, 1, 50, None),
                                             (6, 3, 7, 33, [6, 2, 5]), (12, 70, 3, 20, None)])
def test_results_are_bit_identical_whoever_runs_them(nb, T, B, I, H, lengths):
    """Alone, with the helpers, on one thread or two: the same bits (each unit of work
    is computed the same whoever runs it, and partial sums are added in a fixed order)."""
    runs = []
    for threads, force in ((1, None), (2, "serial"), (2, "parallel"), (2, "parallel")):
        fastlstm.set_num_threads(min(threads, fastlstm.threads.default_num_threads()))
        nb.FORCE = force
        runs.append(_train_step(T, B, I, H, lengths))
    for other in runs[1:]:
        for a, b in zip(runs[0], other):
            np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("slots", [(0,), (1, 0), (0, 1), (2, 0, 1)])
def test_the_caller_finishes_with_helpers_absent_early_or_late(nb, monkeypatch, slots):
    """A call published for three threads finishes on the caller alone (slot 0: no
    helper came), and a helper that runs before the caller or after it (nothing left
    then) changes nothing: every unit runs exactly once (all of them by whoever came
    first, since the others' owners had not come), the results are the same."""
    fastlstm.set_num_threads(1)
    expected = _train_step(7, 5, 3, 40, [7, 3, 5, 1, 6])
    calls = []

    def run(fn, args, nthreads):  # the threads of `slots` one after another
        for slot in slots:  # (no signal to publish or wait for)
            fn(*args, 3, slot, np.zeros(1, np.int64), 0, 0)
        calls.append((args[-2], args[-1], args[0].shape[0]))
    monkeypatch.setattr(nb.team, "run", run)
    monkeypatch.setattr(nb, "plan", lambda T, B, H: (True, 3, nb.block_width(B)))
    got = _train_step(7, 5, 3, 40, [7, 3, 5, 1, 6])
    for a, b in zip(expected, got):
        np.testing.assert_array_equal(a, b)
    assert len(calls) == 8  # 2 layers x 2 directions, forward and backward
    for first, ctl, T in calls:
        P, U = len(first) - 1, first[-1]
        assert np.array_equal(ctl[1:1 + P], np.diff(first))  # every unit finished once
        ran = ctl[1 + P:1 + P + U]
        assert np.all(ran == slots[0] + 1)  # the first to come takes all, absent owners'



def test_a_call_while_the_helpers_are_busy_runs_alone(nb):
    """Two Python threads calling at once: one gets the helpers, the other runs alone,
    both get the results of a call alone."""
    fastlstm.set_num_threads(min(2, fastlstm.threads.default_num_threads()))
    nb.FORCE = "serial"
    expected = _train_step(20, 16, 8, 64)
    nb.FORCE = "parallel"
    outs = [None] * 2

    def work(i):
        outs[i] = [_train_step(20, 16, 8, 64) for _ in range(5)]
    import threading
    threads = [threading.Thread(target=work, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for runs in outs:
        for run in runs:
            for a, b in zip(expected, run):
                np.testing.assert_array_equal(a, b)


def test_thread_count_changes_between_calls(nb):
    import numba
    nb.FORCE = "parallel"
    m = fastlstm.LSTM(5, 48, num_layers=2, backend="numba", seed=1)
    x = np.random.default_rng(2).standard_normal((9, 4, 5)).astype(np.float32)
    dy = np.ones((9, 4, 48), np.float32)
    results = []
    for n in (2, 1, 2, 1):
        fastlstm.set_num_threads(n)
        numba.set_num_threads(1)  # someone else's numba code changed it: we set it back
        y = m.train()(x)[0]
        results.append((y, m.backward(dy)[0]))
    for y, dx in results[1:]:
        np.testing.assert_allclose(y, results[0][0], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(dx, results[0][1], rtol=1e-5, atol=1e-6)


CACHED_RUN = textwrap.dedent("""
    import json, sys, numpy as np, numba, fastlstm
    from fastlstm.backends import numba_cpu
    from fastlstm.backends.numba_kernels import entry
    numba_cpu.FORCE = "parallel"
    out = {"cache_dir": numba_cpu.CACHE_DIR, "numba_threads": numba.config.NUMBA_NUM_THREADS}
    from fastlstm.threads import default_num_threads
    widest = min(numba.config.NUMBA_NUM_THREADS, default_num_threads())  # the cores allow
    for n in (widest, 1, 2):
        fastlstm.set_num_threads(min(n, widest))
        m = fastlstm.LSTM(6, 40, backend="numba", seed=5)
        x = np.linspace(-2, 2, 8 * 3 * 6, dtype=np.float32).reshape(8, 3, 6)
        y, _ = m(x)
        dx = m.backward(np.ones_like(y))[0]
        out[str(n)] = [y.tolist(), dx.tolist()]
    out["hits"] = {f: sum(getattr(entry, f).stats.cache_hits.values()) for f in
                   ("forward", "backward")}
    print(json.dumps(out))
""")


def _cached_run(cache_dir, numba_threads):
    env = {**os.environ, "FASTLSTM_NUMBA_CACHE_DIR": str(cache_dir),
           "NUMBA_NUM_THREADS": str(numba_threads)}
    run = subprocess.run([sys.executable, "-c", CACHED_RUN], capture_output=True, text=True,
                         env=env, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    return json.loads(run.stdout.strip().splitlines()[-1])


def test_cached_parallel_kernels_survive_thread_count_changes(tmp_path):
    """numba once crashed running parallel code cached under another thread count
    (numba#7518, seen in pynndescent): compile with 3 threads, then load the cache with
    1 and 2, changing the count between calls too."""
    first = _cached_run(tmp_path, 3)
    assert not any(first["hits"].values()) and first["cache_dir"].startswith(str(tmp_path))
    assert any(p.suffix == ".nbi" for p in Path(first["cache_dir"]).rglob("*"))
    for threads in (1, 2):
        again = _cached_run(tmp_path, threads)
        assert all(again["hits"][f] > 0 for f in ("forward", "backward"))  # not recompiled
        for n in ("1", "2"):
            for ours, theirs in zip(again[n], first[n]):
                np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-6)


def test_cache_folder_falls_back_when_site_packages_and_home_are_read_only(monkeypatch,
                                                                          tmp_path):
    from fastlstm.backends.numba_kernels import options
    monkeypatch.delenv("FASTLSTM_NUMBA_CACHE_DIR", raising=False)
    monkeypatch.setattr(options.numba_config, "CACHE_DIR", "")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "home-cache"))
    monkeypatch.setattr(options.tempfile, "gettempdir", lambda: str(tmp_path / "tmp"))
    read_only = (str(options.HERE), str(tmp_path / "home-cache"))
    real = options._writable
    monkeypatch.setattr(options, "_writable",
                        lambda folder: not str(folder).startswith(read_only) and real(folder))
    chosen = options.choose_cache_dir()
    assert chosen.startswith(str(tmp_path / "tmp"))  # the temp folder is next in line
    monkeypatch.setattr(options, "_writable", lambda folder: False)
    with pytest.warns(RuntimeWarning, match="no writable folder"):
        assert options.choose_cache_dir() is None


def test_runs_with_no_writable_cache_folder(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")  # a folder cannot be made below a file, even by root
    code = ("import warnings, numpy as np, fastlstm\n"
            "from fastlstm.backends import numba_cpu\n"
            "m = fastlstm.LSTM(3, 5, backend='numba', seed=0).eval()\n"
            "r = fastlstm.LSTM(3, 5, backend='numpy', seed=0).eval()\n"
            "x = np.ones((4, 2, 3), np.float32)\n"
            "assert numba_cpu.CACHE_DIR is None\n"
            "np.testing.assert_allclose(m(x)[0], r(x)[0], rtol=1e-4, atol=1e-4)\n"
            "print('ok')\n")
    env = {**os.environ, "FASTLSTM_NUMBA_CACHE_DIR": str(blocker / "cache")}
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=env, timeout=600)
    assert run.returncode == 0 and "ok" in run.stdout, run.stderr[-3000:]
    assert "no writable folder" in run.stderr  # said once, with what to do about it


def test_importing_fastlstm_does_not_import_numba():
    code = ("import sys, numpy as np, fastlstm\n"
            "fastlstm.LSTM(3, 4, backend='numpy')(np.zeros((2, 1, 3), np.float32))\n"
            "if 'cython' in fastlstm.available_backends():\n"
            "    m = fastlstm.LSTM(3, 4)\n"
            "    m(np.zeros((2, 1, 3), np.float32))\n"
            "    assert m.backend_used == 'cython'\n"
            "print('numba' in sys.modules)\n")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "False"


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_works_in_a_forked_child(nb):
    nb.FORCE = "parallel"
    fastlstm.set_num_threads(2)
    x = np.ones((20, 16, 8), np.float32)
    expected = fastlstm.LSTM(8, 64, backend="numba", seed=3).eval()(x)[0]  # pool is up now
    np.testing.assert_allclose(output_in_forked_child("numba", x, timeout=120), expected,
                               rtol=1e-5, atol=1e-6)


def test_concurrent_python_threads_get_their_own_results(nb):
    nb.FORCE = "parallel"
    models = [fastlstm.LSTM(6, 24 + 8 * i, backend="numba", seed=i).eval() for i in range(4)]
    rng = np.random.default_rng(0)
    inputs = [rng.standard_normal((12, 3, 6)).astype(np.float32) for _ in models]
    same = lambda a, b: np.allclose(a, b, rtol=1e-6, atol=1e-7)  # noqa: E731
    assert run_in_threads(models, inputs, 20, same) == []


@pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64"), reason="x86 MXCSR only")
@pytest.mark.parametrize("build", ["serial", "parallel"])
def test_denormals_are_flushed_inside_and_only_inside(nb, build):
    nb.FORCE = build
    c, _ = flushed_cell_state("numba", T=3, B=2)
    assert np.all(c == 0)


@pytest.mark.filterwarnings("ignore:invalid value:RuntimeWarning")  # the reference, on inf
def test_nan_and_inf_propagate_like_the_reference(nb):
    m = fastlstm.LSTM(3, 8, backend="numba", seed=0).eval()
    ref = fastlstm.LSTM(3, 8, backend="numpy").eval()
    ref.load_state_dict(m.state_dict())
    x = np.random.default_rng(0).standard_normal((5, 4, 3)).astype(np.float32)
    x[1, 0, 0] = np.nan   # row 0 turns NaN from step 1 on
    x[2, 1, :] = 1e30     # row 1 saturates every gate
    x[3, 2, :] = -np.inf  # row 2: -inf input, finite or NaN as the reference says
    ours, theirs = m(x)[0], ref(x)[0]
    np.testing.assert_array_equal(np.isnan(ours), np.isnan(theirs))
    assert np.isnan(ours[1:, 0]).all()
    ok = ~np.isnan(theirs)
    np.testing.assert_allclose(ours[ok], theirs[ok], rtol=1e-4, atol=1e-4)


def test_info_reports_the_cache_folder(nb):
    from fastlstm.info import collect_info
    info = collect_info()
    assert info["numba"]["cache_dir"] == nb.CACHE_DIR
    assert info["numba"]["threading_layer"]
