"""The parent's side of the benchmark's worker processes (worker.py): start them, send a
command, wait for its answer with a time limit, and turn a worker that crashed, hung or
failed into a WorkerError that carries the end of its stderr."""
import json
import os
import queue
import subprocess
import sys
import tempfile
import threading

# Seconds a worker may take to answer: setting up and checking include imports and, for
# numba, compiling into an empty cache (tens of seconds); one batch of timed calls of the
# large config takes seconds.
SETUP_TIMEOUT_S = 900.0
TIME_TIMEOUT_S = 600.0


class WorkerError(RuntimeError):
    """A benchmark worker crashed, hung, or failed a command; the message says which
    worker, what it was doing, and ends with its stderr."""


def child_env():
    """This environment for a child Python process that imports the same fastlstm as this
    one: the folder holding it first on PYTHONPATH when a fresh interpreter would not find
    it there (a source checkout run from elsewhere), and PYTHONSAFEPATH=1, so that the
    current folder is not put first on sys.path: run from a clone with fastlstm installed,
    the clone's sources (without the compiled extension) would shadow the install."""
    import site
    import fastlstm
    root = os.path.dirname(os.path.dirname(os.path.abspath(fastlstm.__file__)))
    installed = {os.path.abspath(p) for p in site.getsitepackages()
                 + [site.getusersitepackages()]}
    env = {**os.environ, "PYTHONSAFEPATH": "1"}
    if root in installed:
        return env
    path = os.environ.get("PYTHONPATH")
    return {**env, "PYTHONPATH": root + (os.pathsep + path if path else "")}


class WorkerProcess:
    """One running worker: `label` (e.g. "fastlstm[cython]", "torch") on `threads`."""

    def __init__(self, label, threads):
        self.label = label
        self._stderr = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "fastlstm.benchmark.worker", label, str(threads)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._stderr,
            env=child_env())
        self._lines = queue.Queue()
        # A thread that blocks reading the worker's answers: the parent can then wait for
        # one with a time limit, on any OS, without polling.
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self):
        for line in self.proc.stdout:
            self._lines.put(line)
        self._lines.put(None)

    def stderr_tail(self, limit=3000):
        """The last `limit` characters the worker wrote to stderr."""
        self._stderr.flush()
        self._stderr.seek(0)
        text = self._stderr.read().decode("utf-8", "replace")
        return text[-limit:].rstrip()

    def _error(self, what):
        tail = self.stderr_tail()
        return WorkerError(f"benchmark worker {self.label} (pid {self.proc.pid}) {what}"
                           + (f"\nIts stderr ends:\n{tail}" if tail else ""))

    def send(self, cmd, **fields):
        """Send one command without waiting for its answer."""
        try:
            self.proc.stdin.write((json.dumps({"cmd": cmd, **fields}) + "\n").encode())
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError):
            raise self._error(f"could not be sent {cmd!r}: it exited with status "
                              f"{self.proc.wait()}") from None

    def receive(self, cmd, timeout):
        """The answer (a dict) to the command sent last, within `timeout` seconds."""
        try:
            line = self._lines.get(timeout=timeout)
        except queue.Empty:
            self.kill()
            raise self._error(f"did not answer {cmd!r} within {timeout:g} s and was "
                              "killed") from None
        if line is None:
            raise self._error(f"exited with status {self.proc.wait()} during {cmd!r}")
        answer = json.loads(line)
        if not answer.pop("ok"):
            raise self._error(f"failed on {cmd!r}:\n{answer['error'].rstrip()}")
        return answer

    def request(self, cmd, timeout=TIME_TIMEOUT_S, **fields):
        """Send a command and return its answer."""
        self.send(cmd, **fields)
        return self.receive(cmd, timeout)

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()

    def close(self):
        """Ask the worker to quit (kill it if it does not within seconds)."""
        try:
            if self.proc.poll() is None:
                self.request("quit", timeout=10)
                self.proc.wait(timeout=10)
        except (WorkerError, subprocess.TimeoutExpired, ValueError):
            pass
        finally:
            self.kill()
            self._reader.join(timeout=5)  # it reads to the end first: EOF once killed
            for f in (self.proc.stdin, self.proc.stdout, self._stderr):
                try:
                    f.close()
                except OSError:  # a pipe to a dead worker with bytes still unsent
                    pass


class WorkerPool:
    """One WorkerProcess per label, all closed on leaving the `with` block."""

    def __init__(self, labels, threads):
        self.workers = {}
        try:
            for label in labels:
                self.workers[label] = WorkerProcess(label, threads)
        except BaseException:
            self.close()
            raise

    def __getitem__(self, label):
        return self.workers[label]

    def setup(self, configs, timeout=SETUP_TIMEOUT_S):
        """Build every worker's runners for `configs` (Config objects), the workers
        importing in parallel (nothing is timed yet); {label: its answer}."""
        from dataclasses import asdict
        fields = [asdict(c) for c in configs]
        for w in self.workers.values():
            w.send("setup", configs=fields)
        return {label: w.receive("setup", timeout) for label, w in self.workers.items()}

    def close(self):
        for w in self.workers.values():
            w.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
