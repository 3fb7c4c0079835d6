"""Cold start: what a fresh process waits for before its first result. Each run is a new
Python process that imports fastlstm, builds the edge model (LSTM(32, 128), backend
"auto") and runs one forward on a (100, 1, 32) float32 input.

Measured from process start to the first result: the parent reads the wall clock
(time.time()) just before it starts the process and passes it in; the child reads the
same clock as its first statement, which gives the interpreter's start-up, and then times
the import, building the model (which loads the backend) and the first forward with its
own perf_counter. The cold start is their sum; exiting is not counted.
"""
import json
import subprocess
import sys
import time

import numpy as np

from .pool import child_env

_SCRIPT = """
import sys, time
t_begin = time.perf_counter()
wall_begin = time.time()
import fastlstm
t_import = time.perf_counter()
fastlstm.set_num_threads(int(sys.argv[2]))
import numpy as np
m = fastlstm.LSTM(32, 128)
x = np.random.default_rng(0).standard_normal((100, 1, 32)).astype(np.float32)
t_build = time.perf_counter()
y, _ = m(x)
t_forward = time.perf_counter()
import json
startup = wall_begin - float(sys.argv[1])
print(json.dumps({"total_s": startup + (t_forward - t_begin), "startup_s": startup,
                  "import_s": t_import - t_begin, "build_s": t_build - t_import,
                  "forward_s": t_forward - t_build, "backend": m.backend_used}))
"""
PARTS = ("total_s", "startup_s", "import_s", "build_s", "forward_s")


def _one_run(threads, timeout):
    start = time.time()
    run = subprocess.run([sys.executable, "-c", _SCRIPT, repr(start), str(threads)],
                         capture_output=True, text=True, env=child_env(), timeout=timeout)
    if run.returncode != 0:
        raise RuntimeError(f"cold-start run failed (exit status {run.returncode}):\n"
                           f"{run.stderr[-2000:]}")
    return json.loads(run.stdout.strip().splitlines()[-1])


def cold_starts(runs, threads, timeout=300):
    """The cold start: medians over `runs` fresh processes, seconds.

    Parameters
    ----------
    runs : int
        Fresh processes, one after another.
    threads : int
        fastlstm's thread count in each.
    timeout : float
        Seconds one process may take.

    Returns
    -------
    dict
        "total_s" (process start to the first result), its parts "startup_s" (the
        interpreter), "import_s" (import fastlstm), "build_s" (the model and its input;
        the backend loads here), "forward_s" (the first forward), each a median; "runs",
        "threads", "backend" (the one "auto" ran), "samples" (each run's figures) and
        "measured" (how, in words).

    Raises
    ------
    RuntimeError
        When a run fails (with the end of its stderr).
    """
    samples = [_one_run(threads, timeout) for _ in range(runs)]
    out = {"runs": runs, "threads": threads, "backend": samples[0]["backend"],
           "samples": samples,
           "measured": "wall clock from just before the parent starts the process to the "
                       "first forward's result in it (exit not counted)"}
    out.update({p: float(np.median([s[p] for s in samples])) for p in PARTS})
    return out


def format_cold_start(c):
    """One line: the median cold start and its parts."""
    ms = {p: c[p] * 1e3 for p in PARTS}
    return (f"Cold start (a fresh process: import fastlstm, build LSTM(32, 128), one forward "
            f"of T=100; median of {c['runs']}): {ms['total_s']:.0f} ms = interpreter "
            f"{ms['startup_s']:.0f} + import {ms['import_s']:.0f} + build {ms['build_s']:.0f}"
            f" + first forward {ms['forward_s']:.0f} ({c['backend']})")
