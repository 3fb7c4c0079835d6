"""Shared test helpers: tolerance tables, random problems, loss weights."""
import os

import numpy as np
import pytest

import fastlstm

# Forward and gradient tolerances per dtype (rtol = atol), explicit and in one place.
TOL = {"float64": 1e-8, "float32": 1e-4}


def random_problem(model, T, B, seed=0, with_hx=False, lengths=None, unbatched=False):
    """x, hx, and loss weights (dy, dh_n, dc_n) shaped for `model`."""
    rng = np.random.default_rng(seed)
    H, LD = model.hidden_size, model.num_layers * model.num_directions
    dt = model.dtype
    if unbatched:
        x_shape, s_shape = (T, model.input_size), (LD, H)
        y_shape = (T, model.num_directions * H)
    else:
        x_shape = (B, T, model.input_size) if model.batch_first else (T, B, model.input_size)
        s_shape = (LD, B, H)
        y_shape = x_shape[:2] + (model.num_directions * H,)
    x = rng.standard_normal(x_shape).astype(dt)
    hx = None
    if with_hx:
        hx = (0.5 * rng.standard_normal(s_shape).astype(dt),
              0.5 * rng.standard_normal(s_shape).astype(dt))
    dy = rng.standard_normal(y_shape).astype(dt)
    if lengths is not None and not unbatched:  # the loss ignores padding, as torch's does
        mask = np.arange(T)[:, None] < np.asarray(lengths)[None, :]
        dy *= (mask.T if model.batch_first else mask)[..., None]
    dh_n = rng.standard_normal(s_shape).astype(dt)
    dc_n = rng.standard_normal(s_shape).astype(dt)
    return x, hx, (dy, dh_n, dc_n)


def assert_backend_matches_reference(backend, dtype, T, B, I, H, layers=1, bidir=False,
                                     lengths=None, seed=0):
    """Forward (y, h_n, c_n) and every gradient of `backend` against the NumPy reference."""
    kw = dict(num_layers=layers, bidirectional=bidir, dtype=dtype)
    fast = fastlstm.LSTM(I, H, backend=backend, seed=seed, **kw)
    ref = fastlstm.LSTM(I, H, backend="numpy", **kw)
    ref.load_state_dict(fast.state_dict())
    x, hx, weights = random_problem(fast, T, B, seed=seed + 1, with_hx=True, lengths=lengths)
    out = []
    for m in (fast, ref):
        y, (h, c) = m(x, hx, lengths)
        dx, (dh0, dc0) = m.backward(*weights)
        out.append([y, h, c, dx, dh0, dc0] + [m.grads[k] for k in sorted(m.grads)])
    assert fast.backend_used == backend
    tol = TOL[dtype]
    for a, b in zip(*out):
        np.testing.assert_allclose(a, b, rtol=tol, atol=tol)


def run_together(n, work, timeout=120):
    """work(i, barrier) on n threads released at once (barrier.wait() lines them up again
    between rounds); returns their results in order and re-raises the first failure,
    after which the barrier is broken so that no thread waits for good. A thread still
    running after `timeout` seconds fails the test as hung."""
    import threading
    barrier = threading.Barrier(n)
    out, errors = [None] * n, []

    def run(i):
        try:
            barrier.wait()
            out[i] = work(i, barrier)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the main thread
            errors.append(exc)
            barrier.abort()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=timeout)
        assert not t.is_alive(), "a thread hung"
    if errors:
        raise errors[0]
    return out


def run_in_threads(models, inputs, rounds, same):
    """Call every model on its input from its own Python thread, all at once, `rounds`
    times; returns the indices of calls whose output was not `same` as a lone call's."""
    expected = [m(x)[0] for m, x in zip(models, inputs)]

    def work(i, barrier):
        return sum(not same(models[i](inputs[i])[0], expected[i]) for _ in range(rounds))
    failures = run_together(len(models), work, timeout=300)
    return [i for i, count in enumerate(failures) for _ in range(count)]


def _send_output(conn, backend, x):
    conn.send(fastlstm.LSTM(x.shape[2], 64, backend=backend, seed=3).eval()(x)[0])


def output_in_forked_child(backend, x, timeout):
    """y of a fresh eval-mode LSTM(I, 64, seed=3) on x, computed in a fork()ed child
    (fails the test if the child hangs or dies)."""
    import multiprocessing
    ctx = multiprocessing.get_context("fork")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=_send_output, args=(child, backend, x))
    proc.start()
    proc.join(timeout=timeout)
    if proc.is_alive():
        proc.kill()
        pytest.fail("the forked child hung")
    assert proc.exitcode == 0
    return parent.recv()


def flushed_cell_state(backend, T, B):
    """c_n of a `backend` LSTM whose zero weights halve a subnormal c0 at every step
    (i = f = 0.5, g = 0): all zeros when the kernel flushes denormals. Also checks that
    the caller's floating-point mode is back afterwards."""
    tiny = np.float32(1e-39)  # subnormal in float32
    m = fastlstm.LSTM(1, 16, backend=backend, seed=0).eval()
    m.load_state_dict({k: np.zeros_like(v) for k, v in m.state_dict().items()})
    hx = (np.zeros((1, B, 16), np.float32), np.full((1, B, 16), tiny, np.float32))
    _, (_, c) = m(np.zeros((T, B, 1), np.float32), hx)
    assert tiny * np.float32(0.5) != 0  # the caller's mode is restored
    return c, hx


def require_backend(name):
    """Skip a backend that cannot run here; in CI (CI=true) fail instead: both fast
    backends must run there, and a broken build must not turn their tests into skips."""
    from fastlstm.backends import backend_status
    reason = backend_status()[name]
    if reason:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true: backend {name} unavailable: {reason}", pytrace=False)
        pytest.skip(f"backend {name} unavailable: {reason}")
