"""Thread counts are checked in one place (fastlstm.threads): a count above the cores this
process may run on is refused with a ValueError naming the argument, before anything is
changed. Each check runs in a child process with a timeout: before the rule existed,
100000 threads went straight to BLAS, OpenMP and numba, and a crash there must fail the
test rather than take the test session down."""
import subprocess
import sys
import textwrap

import fastlstm
from fastlstm.threads import default_num_threads


def _child(code, timeout=120):
    run = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                         text=True, timeout=timeout)
    assert run.returncode == 0, f"exit status {run.returncode}\n{run.stdout}\n{run.stderr}"
    return run.stdout


def test_more_threads_than_cores_is_refused_and_changes_nothing():
    out = _child("""
        import numpy as np, pytest, fastlstm
        from fastlstm.threads import default_num_threads
        cores = default_num_threads()
        before = fastlstm.get_num_threads()
        for n in (cores + 1, 100000):
            with pytest.raises(ValueError) as info:
                fastlstm.set_num_threads(n)
            assert str(info.value).startswith(f"n must be at most {cores}, "), info.value
            assert f"got {n}" in str(info.value), info.value
            assert fastlstm.get_num_threads() == before
        x = np.ones((5, 3, 8), np.float32)
        for backend in fastlstm.available_backends():  # still runs, on the old count
            m = fastlstm.LSTM(8, 16, backend=backend, seed=0)
            y, _ = m(x)
            m.backward(np.ones_like(y))
        print("ok")
    """)
    assert out.strip() == "ok"


def test_every_core_is_accepted():
    cores = default_num_threads()
    old = fastlstm.get_num_threads()
    try:
        assert fastlstm.set_num_threads(cores) == cores == fastlstm.get_num_threads()
        assert fastlstm.set_num_threads(1) == 1 == fastlstm.get_num_threads()
    finally:
        fastlstm.set_num_threads(old)


def test_the_check_names_its_argument():
    from fastlstm.threads import check_num_threads
    cores = default_num_threads()
    assert check_num_threads(cores, "workers") == cores
    for bad, kind in ((cores + 1, ValueError), (0, ValueError), (2.0, TypeError),
                      (True, TypeError)):
        try:
            check_num_threads(bad, "workers")
        except kind as exc:
            assert str(exc).startswith("workers must be"), exc
        else:
            raise AssertionError(f"{bad!r} was accepted")
