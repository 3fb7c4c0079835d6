"""The thread model: many threads may serve one model and reload its weights at any
moment; several threads may train one model, each backward pairing with its own
forward. Barriers line the threads up so that the races are hit, not hoped for."""
import threading

import numpy as np
import pytest

import fastlstm
from conftest import run_together

BACKENDS = fastlstm.available_backends()


@pytest.mark.parametrize("backend", BACKENDS)
def test_several_threads_train_one_model(backend):
    # the reported crash: 4 threads forward/backward/load_state_dict on one model
    m = fastlstm.LSTM(8, 96, num_layers=2, backend=backend, seed=0)
    sd = m.state_dict()
    rng = np.random.default_rng(1)
    xs = [rng.standard_normal((12, 3, 8)).astype(np.float32) for _ in range(4)]
    expected = []
    for x in xs:  # each thread's answer, computed alone
        y, _ = m(x)
        dx, _ = m.backward(np.ones_like(y))
        expected.append((y, dx, m.flat_grads.copy()))

    def train(i, barrier):
        for _ in range(15):
            barrier.wait()
            y, _ = m(xs[i])
            dx, _ = m.backward(np.ones_like(y))
            np.testing.assert_allclose(y, expected[i][0], rtol=1e-5, atol=1e-6)
            np.testing.assert_allclose(dx, expected[i][1], rtol=1e-5, atol=1e-6)
            np.testing.assert_allclose(m.flat_grads, expected[i][2], rtol=1e-4, atol=1e-5)
            m.load_state_dict(sd)  # same values: a new version mid-training

    run_together(4, train)


@pytest.mark.parametrize("backend", BACKENDS)
def test_hot_reload_never_mixes_weights_and_never_stays_stale(backend):
    m = fastlstm.LSTM(8, 64, num_layers=2, backend=backend, seed=0).eval()
    a = m.state_dict()
    b = {k: -v for k, v in a.items()}
    x = np.random.default_rng(2).standard_normal((10, 2, 8)).astype(np.float32)
    want = {}
    for name, sd in (("a", a), ("b", b)):
        m.load_state_dict(sd)
        want[name] = m(x)[0]
    stop = threading.Event()

    def which(y):
        for name, w in want.items():
            if np.allclose(y, w, rtol=1e-5, atol=1e-6):
                return name
        return None

    def work(i, barrier):
        barrier.wait()
        if i == 0:  # the reloading thread
            for k in range(50):
                m.load_state_dict(a if k % 2 else b)
            stop.set()
            return
        while not stop.is_set():
            assert which(m(x)[0]) is not None, "one call mixed two versions of the weights"

    run_together(3, work)
    # the last reload was `a`: every later call, on any thread, must serve it
    outs = []
    run_together(2, lambda i, barrier: outs.append(which(m(x)[0])))
    assert outs == ["a", "a"] and which(m(x)[0]) == "a"


def test_backward_in_a_thread_that_ran_no_forward_is_refused():
    m = fastlstm.LSTM(3, 4, seed=0)
    y, _ = m(np.ones((2, 1, 3), np.float32))
    errors = []

    def other():
        try:
            m.backward(np.ones_like(y))
        except RuntimeError as exc:
            errors.append(str(exc))
    t = threading.Thread(target=other)
    t.start()
    t.join()
    assert errors and "in this thread" in errors[0]
    m.backward(np.ones_like(y))  # the thread that ran the forward can
    assert np.any(m.flat_grads != 0)
