"""Whether this process was made by fork() from one that may have started thread teams.

Neither an OpenMP team (libgomp: the child believes the parent's workers exist and waits
for them forever) nor numba's OpenMP layer (it aborts the child) survives fork(), so the
kernels of a forked child run on its own thread. Spawned processes are not affected.
"""
import os

_forked = False


def _after_fork_in_child():
    global _forked
    _forked = True


os.register_at_fork(after_in_child=_after_fork_in_child)


def in_forked_child():
    return _forked
