"""Reliability of the fast backends (issue 9): caches published once under threads,
read-only inputs, accurate small values, bounded scratch memory, NaN padding ignored."""
import os
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

import fastlstm
from conftest import require_backend, run_together

BACKENDS = fastlstm.available_backends()
FAST = [name for name in BACKENDS if name != "numpy"]


def _slowed(fn, delay=0.02):
    """fn, sleeping before it returns: widens the window of a check-then-set race."""
    def slow(*args, **kwargs):
        out = fn(*args, **kwargs)
        time.sleep(delay)
        return out
    return slow


# ---- 1. caches published once ----

def test_cython_backward_layout_built_once_under_threads(monkeypatch):
    require_backend("cython")
    from fastlstm.backends import cython_cpu
    rng = np.random.default_rng(0)
    H, I = 40, 7
    p = cython_cpu.pack_weights(rng.standard_normal((4 * H, I)).astype(np.float32),
                                rng.standard_normal((4 * H, H)).astype(np.float32),
                                np.zeros(4 * H, np.float32))
    monkeypatch.setattr(cython_cpu, "_aligned_empty", _slowed(cython_cpu._aligned_empty))
    seen = run_together(6, lambda i, _: (p.for_backward().wb, p.k.wb))
    first = seen[0][0]
    # every thread got, and still sees, the one layout: none was replaced under a reader
    assert all(a is first and b is first for a, b in seen)
    with pytest.raises(ValueError, match="never replaced"):
        p.k.set_wb(first.copy())


def test_numba_layouts_published_once_under_threads(monkeypatch):
    require_backend("numba")
    from fastlstm.backends import numba_cpu
    rng = np.random.default_rng(0)
    H, I = 40, 7
    p = numba_cpu.pack_weights(rng.standard_normal((4 * H, I)),
                               rng.standard_normal((4 * H, H)), np.zeros(4 * H))
    monkeypatch.setattr(numba_cpu, "blocks", _slowed(numba_cpu.blocks))
    fwd = run_together(6, lambda i, _: p.forward(8))
    bwd = run_together(6, lambda i, _: p.backward(8))
    assert all(f is p._forward[8] for f in fwd)
    assert all(b is p._backward[8] for b in bwd)


@pytest.mark.parametrize("backend", FAST)
def test_training_one_model_from_threads_gives_right_gradients(backend):
    """Each thread's backward pairs with its own forward over shared packed weights,
    reloaded between calls (issue 9's reproducer)."""
    base = fastlstm.LSTM(8, 96, num_layers=2, backend=backend, seed=0)
    sd = base.state_dict()
    rng = np.random.default_rng(1)
    xs = [rng.standard_normal((12, 3, 8)).astype(np.float32) for _ in range(4)]
    expected = []
    for x in xs:
        y, _ = base(x)
        dx, _ = base.backward(np.ones_like(y))
        expected.append((dx, {k: v.copy() for k, v in base.grads.items()}))
    bad = []

    def work(i, barrier):
        for _ in range(20):
            barrier.wait()
            y, _ = base(xs[i])
            dx, _ = base.backward(np.ones_like(y))
            if not np.allclose(dx, expected[i][0], rtol=1e-4, atol=1e-5):
                bad.append("dx")
            bad.extend(k for k, v in base.grads.items()
                       if not np.allclose(v, expected[i][1][k], rtol=1e-4, atol=1e-5))
            base.load_state_dict(sd)
        return True

    run_together(4, work)
    assert not bad, bad


# ---- 2. read-only inputs ----

def _read_only(a, how, tmp_path):
    if how == "flag":
        a = a.copy()
        a.flags.writeable = False
        return a
    if how == "frombuffer":
        return np.frombuffer(a.tobytes(), a.dtype).reshape(a.shape)
    path = tmp_path / f"a{id(a)}.npy"  # mmap
    np.save(path, a)
    return np.load(path, mmap_mode="r")


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize("use_lengths", [False, True])
@pytest.mark.parametrize("how", ["flag", "frombuffer", "mmap"])
def test_read_only_inputs(backend, batch_first, use_lengths, how, tmp_path):
    """x, h0, c0, dy, dh_n, dc_n that cannot be written are accepted and give the writable
    arrays' results, in training and in eval."""
    from conftest import random_problem
    T, B = 6, 3
    lengths = np.array([6, 2, 4]) if use_lengths else None
    for dtype in ("float32", "float64"):
        m = fastlstm.LSTM(5, 9, num_layers=2, batch_first=batch_first, dtype=dtype,
                          backend=backend, seed=2)
        x, hx, (dy, dh_n, dc_n) = random_problem(m, T, B, seed=1, with_hx=True,
                                                  lengths=lengths)
        ro = [_read_only(a, how, tmp_path) for a in (x, *hx, dy, dh_n, dc_n)]
        assert not any(a.flags.writeable for a in ro)
        results = []
        for xx, h0, c0, g_y, g_h, g_c in ((x, *hx, dy, dh_n, dc_n), ro):
            y, (h, c) = m(xx, (h0, c0), lengths)
            dx, (dh0, dc0) = m.backward(g_y, g_h, g_c)
            grads = {k: v.copy() for k, v in m.grads.items()}
            y_eval, _ = m.eval()(xx, (h0, c0), lengths)
            m.train()
            results.append((y, h, c, dx, dh0, dc0, y_eval, grads))
        # numba compiles read-only arrays separately: the same math, maybe another order
        tol = dict(rtol=1e-5, atol=1e-6) if dtype == "float32" else dict(rtol=1e-12, atol=1e-13)
        for a, b in zip(results[0][:-1], results[1][:-1]):
            np.testing.assert_allclose(b, a, **tol)
        for k in results[0][-1]:
            np.testing.assert_allclose(results[1][-1][k], results[0][-1][k], **tol)


# ---- 3. accurate small values ----

def _normwise(a, ref):
    return np.linalg.norm(a - ref) / np.linalg.norm(ref)


@pytest.mark.parametrize("backend", FAST)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("scale", [1e-2, 1e-4, 1e-6])
def test_small_weights_keep_relative_accuracy(backend, dtype, scale):
    """tanh near 0 must not cancel: y and dx against the float64 reference stay within a
    small multiple of the reference's own error in this dtype."""
    kwargs = dict(num_layers=2, dtype=dtype)
    m = fastlstm.LSTM(16, 32, backend=backend, seed=0, **kwargs)
    sd = {k: v * scale for k, v in m.state_dict().items()}
    m.load_state_dict(sd)
    same = fastlstm.LSTM(16, 32, backend="numpy", **kwargs)
    same.load_state_dict(sd)
    exact = fastlstm.LSTM(16, 32, backend="numpy", num_layers=2, dtype="float64")
    exact.load_state_dict({k: v.astype(np.float64) for k, v in sd.items()})
    x = np.random.default_rng(0).standard_normal((10, 4, 16))
    out = {}
    for name, model in (("fast", m), ("same", same), ("exact", exact)):
        y, _ = model(x.astype(model.dtype))
        dx, _ = model.backward(np.ones_like(y))
        out[name] = y.astype(np.float64), dx.astype(np.float64)
    eps = np.finfo(dtype).eps
    for k in range(2):
        own = _normwise(out["same"][k], out["exact"][k])
        err = _normwise(out["fast"][k], out["exact"][k])
        assert err <= 8 * max(own, eps), (k, err, own)


# ---- 4. scratch memory bounded ----

RSS_AFTER_BIG_CALL = textwrap.dedent("""
    import gc, json, resource, sys, numpy as np, fastlstm
    def rss():
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * __import__("os").sysconf("SC_PAGE_SIZE")
    backend, training = sys.argv[1], sys.argv[2] == "1"
    T, B, I, H = 500, 256, 1024, 4
    lengths = np.full(B, T); lengths[1:] = T - np.arange(1, B) % 7  # M distinct from T*B
    x = np.ones((T, B, I), np.float32)
    small = fastlstm.LSTM(I, H, backend=backend)
    small(x[:3, :2], lengths=[3, 2])  # compiled, and a small scratch held, before measuring
    gc.collect()
    before = rss()
    m = fastlstm.LSTM(I, H, backend=backend)
    if not training:
        m.eval()
    y, _ = m(x, lengths=lengths)
    if training:
        m.backward(np.ones_like(y))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB
    del m, y
    gc.collect()
    print(json.dumps({"before": before, "peak": peak, "after": rss()}))
""")


@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="needs /proc")
@pytest.mark.parametrize("backend", FAST)
@pytest.mark.parametrize("training", [False, True])
def test_big_call_scratch_is_given_back(backend, training):
    """After a call needing over 500 MiB of scratch (x packed by lengths alone is 500 MiB)
    and del model, the process holds within 100 MiB of what it held before."""
    import json
    require_backend(backend)
    out = subprocess.run([sys.executable, "-c", RSS_AFTER_BIG_CALL, backend,
                          "1" if training else "0"], capture_output=True, text=True,
                         timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    r = json.loads(out.stdout.strip().splitlines()[-1])
    assert r["peak"] - r["before"] > 400 << 20, r  # the call did need the scratch
    assert r["after"] - r["before"] < 100 << 20, r


# ---- 5. padding ignored ----

@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("batch_first", [False, True])
def test_nan_in_padding_is_ignored(backend, batch_first):
    """x past a sequence's length may hold NaN: every output and gradient equals the
    zero-padded one's."""
    from conftest import random_problem
    T, B = 7, 4
    lengths = np.array([7, 3, 5, 1])
    m = fastlstm.LSTM(5, 6, num_layers=2, bidirectional=True, batch_first=batch_first,
                      backend=backend, dtype="float64", seed=1)
    x, hx, weights = random_problem(m, T, B, seed=2, with_hx=True, lengths=lengths)
    pad = np.arange(T)[:, None] >= lengths[None, :]
    if batch_first:
        pad = pad.T
    results = []
    for fill in (0.0, np.nan):
        xx = x.copy()
        xx[pad] = fill
        y, (h, c) = m(xx, hx, lengths)
        dx, (dh0, dc0) = m.backward(*weights)
        grads = [m.grads[k].copy() for k in sorted(m.grads)]
        results.append([y, h, c, dx, dh0, dc0, *grads])
    for a, b in zip(*results):
        assert np.all(np.isfinite(b))
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("backend", ["cython", "numba", "numpy"])
def test_training_forward_reuses_the_last_tape_and_stays_right(backend):
    """A training forward writes over its thread's last tape (no fresh tens of MB per
    call): the gradients after two calls equal a fresh model's after one."""
    require_backend(backend)
    m = fastlstm.LSTM(3, 5, num_layers=2, backend=backend, seed=1)
    rng = np.random.default_rng(2)
    x1, x2 = (rng.standard_normal((6, 2, 3)).astype(np.float32) for _ in range(2))
    dy = rng.standard_normal((6, 2, 5)).astype(np.float32)
    m(x1)
    first = m._train_state().tape.tapes()
    m(x2)
    again = m._train_state().tape.tapes()
    assert all(again[i] is first[i] for i in first)  # reused, not reallocated
    dx, _ = m.backward(dy)
    fresh = fastlstm.LSTM(3, 5, num_layers=2, backend=backend, seed=1)
    fresh(x2)
    dx_fresh, _ = fresh.backward(dy)
    np.testing.assert_array_equal(dx, dx_fresh)
    for name, g in fresh.grads.items():
        np.testing.assert_array_equal(m.grads[name], g, err_msg=name)
    m(rng.standard_normal((4, 2, 3)).astype(np.float32))  # another shape: new arrays
    assert m._train_state().tape.tapes()[0].h.shape == (5, 2, 5)


def test_forward_that_fails_half_way_leaves_no_tape(monkeypatch):
    """The tape is dropped before its arrays are reused: a forward that raises in its
    second layer must not leave backward a half-overwritten tape."""
    from fastlstm.backends import reference
    m = fastlstm.LSTM(3, 4, num_layers=2, backend="numpy", seed=1)
    x = np.ones((5, 1, 3), np.float32)
    m(x)
    real, calls = reference.forward_layer, []

    def second_layer_fails(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("kernel failed")
        return real(*args, **kwargs)
    monkeypatch.setattr(reference, "forward_layer", second_layer_fails)
    with pytest.raises(RuntimeError, match="kernel failed"):
        m(x)
    with pytest.raises(RuntimeError, match="the last forward\\(\\) raised an error"):
        m.backward(np.ones((5, 1, 4), np.float32))
