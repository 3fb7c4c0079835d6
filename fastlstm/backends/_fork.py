"""Whether this process was made by fork() from one that may have started thread teams.

numba's OpenMP layer does not survive fork() (it aborts the child; libgomp's team would
leave the child waiting for workers that do not exist), so numba's kernels in a forked
child run on its own thread. (The compiled kernels' pool needs no such rule: it starts
new helpers in the child.) Spawned processes are not affected.
"""
import os

_forked = False


def _after_fork_in_child():
    global _forked
    _forked = True


os.register_at_fork(after_in_child=_after_fork_in_child)


def in_forked_child():
    return _forked
