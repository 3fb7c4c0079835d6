"""The helper threads that share a call's work with the calling thread.

The caller never waits for a helper: it publishes the call (run()) and starts on the
work at once, as slot 0; each helper, once awake, runs the same kernel as slot 1, 2, ...
and takes whatever work is left (entry.py: units claimed one at a time). A helper that
is asleep, late, or busy elsewhere costs nothing but its help. This replaces numba's
own threading layer (prange), whose every parallel region waits for every thread of
its team: after an idle pause its sleeping threads took up to ~10 ms to wake on a VM,
a 40x slower call.

A helper that finishes spins for SPIN_S (a pause instruction per probe, no system
call), so calls that follow one another (layers, training steps) find it awake; then it
sleeps on a condition variable until the next call. One call at a time has the helpers:
a call made while another thread's call holds them runs on its caller alone (same
results, since they never depend on the threads). Helpers are Python daemon threads,
started when first needed; the kernels release the GIL. A forked child never uses them
(the adapter runs its calls alone): threads do not survive fork.
"""
import threading
import time

import numpy as np

from . import atomics
from .options import kernel

SPIN_S = 1e-3  # how long a helper spins for the next call before it sleeps


@kernel()
def _spin(signal, seen, probes):
    """True as soon as signal[0] != seen, False after `probes` probes."""
    for _ in range(probes):
        if atomics.load(signal, 0) != seen:
            return True
        atomics.pause()
    return False


class Team:
    def __init__(self):
        self._busy = threading.Lock()  # held by the call that has the helpers
        self._cond = threading.Condition(threading.Lock())
        self._signal = np.zeros(8, np.int64)  # [0]: calls published so far
        self._job = None     # (kernel, args, nslots) of the latest call, None after it
        self._helpers = 0    # helper threads started
        self._sleeping = 0   # helpers waiting on _cond
        self._probes = None  # probes of _spin in SPIN_S, measured by the first helper

    @property
    def helpers(self):
        return self._helpers

    def run(self, fn, args, nthreads):
        """fn(*args, nslots, slot, signal, gen, probes): on this thread as slot 0 of
        `nthreads`, helped by up to nthreads - 1 helpers; alone (nslots 1) when nthreads
        is 1 or another call has the helpers. Returns when every unit of the call has
        finished."""
        if nthreads <= 1 or not self._busy.acquire(blocking=False):
            fn(*args, 1, 0, self._signal, 0, 0)
            return
        try:
            seen = int(self._signal[0])
            while self._helpers < nthreads - 1:
                self._helpers += 1
                threading.Thread(target=self._serve, args=(self._helpers, seen), daemon=True,
                                 name=f"fastlstm-numba-{self._helpers}").start()
            self._job = (fn, args, nthreads, seen + 1)
            if self._sleeping:  # read after the signal: see _serve
                self._signal[0] = seen + 1
                with self._cond:
                    self._cond.notify_all()
            # else the kernel publishes it, once it has released the GIL (entry._publish)
            fn(*args, nthreads, 0, self._signal, seen + 1, 0)
        finally:
            self._job = None  # the arrays are the caller's again
            self._busy.release()

    def _calibrate(self):
        probes = 1 << 14
        quiet = np.zeros(1, np.int64)
        _spin(quiet, 0, 1)  # loads or compiles it: not part of the timing
        t0 = time.perf_counter()
        _spin(quiet, 0, probes)
        self._probes = max(1, int(probes * SPIN_S / max(time.perf_counter() - t0, 1e-9)))

    def _serve(self, slot, seen):
        if self._probes is None:
            self._calibrate()
        lingered = False  # just back from a call, which spun for the next one already
        while True:
            now = int(self._signal[0])
            if now == seen:
                if not lingered and _spin(self._signal, seen, self._probes):
                    continue
                lingered = False
                with self._cond:
                    # counted before the signal is read again, and run() reads the count
                    # after publishing: either this thread sees the new call or run()
                    # sees it sleeping and wakes it
                    self._sleeping += 1
                    while int(self._signal[0]) == seen:
                        self._cond.wait()
                    self._sleeping -= 1
                continue
            seen = now
            job = self._job
            if job is None or job[3] != now:  # that call has finished already
                continue
            fn, args, nslots, gen = job
            del job
            if slot < nslots:
                try:
                    # after its share it spins in the kernel for the next call
                    fn(*args, nslots, slot, self._signal, gen, self._probes)
                    lingered = True
                except Exception:  # noqa: BLE001 - the caller's own run raises it
                    pass
            del fn, args


team = Team()
