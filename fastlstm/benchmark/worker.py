"""One implementation's benchmark process: `python -m fastlstm.benchmark.worker LABEL
THREADS`, driven by `fastlstm bench` (pool.py) over JSON lines on stdin and stdout.

Each implementation (a fastlstm backend, PyTorch, ONNX Runtime) lives in a process of its
own, so that one framework's thread pools cannot spin into another's time and each loads
only its own libraries. Between commands the process blocks reading stdin: it uses no CPU
while another implementation is timed, and before answering a timing command it waits for
its own threads to go quiet (timing.quiesce).

Commands, one JSON object per line, each answered by one line ({"ok": true, ...} or
{"ok": false, "error": traceback}):
  {"cmd": "setup", "configs": [Config fields, ...]}  build the runners
  {"cmd": "check", "config": name, "path": file.npz}  write y (and dx) for the checks
  {"cmd": "time", "config": name, "mode": "b2b"|"idle", "what": "forward"|"train",
   "n": calls}                                         the seconds of each timed call
  {"cmd": "quit"}

Test hook: FASTLSTM_BENCH_FAULT="LABEL=KIND[,...]" makes the worker of LABEL misbehave at
its "check" command: wrong-output (y off by 0.01), wrong-grad, crash (exit status 3) or
hang. It exists so the tests can show that a bad worker is refused with a clear error.
"""
import json
import os
import sys
import time
import traceback

FAULT_ENV = "FASTLSTM_BENCH_FAULT"


def _fault(label):
    """The fault injected into this worker by FASTLSTM_BENCH_FAULT, or None."""
    for item in os.environ.get(FAULT_ENV, "").split(","):
        who, _, kind = item.strip().rpartition("=")
        if who == label:
            return kind
    return None


class Worker:
    """The state of one worker process: its implementation and a runner per config."""

    def __init__(self, label, threads):
        self.label, self.threads = label, threads
        self.runners = {}
        self.fault = _fault(label)
        import fastlstm
        fastlstm.set_num_threads(threads)

    def _make_runner(self, wl):
        from .peers import make_peer
        from .runners import FastlstmRunner
        if self.label.startswith("fastlstm["):
            return FastlstmRunner(wl, self.label[len("fastlstm["):-1])
        return make_peer(self.label, wl, self.threads)

    def setup(self, configs):
        from .configs import Config
        from .runners import make_workload
        out = {}
        for fields in configs:
            cfg = Config(**fields)
            runner = self._make_runner(make_workload(cfg))
            self.runners[cfg.name] = runner
            timed_train = runner.train_step if cfg.stream else runner.train
            out[cfg.name] = {"train": timed_train is not None,
                             "step_api": getattr(runner, "step_api", None) if cfg.stream
                             else None}
        return {"pid": os.getpid(), "version": self._version(), "configs": out}

    def _version(self):
        if self.label.startswith("fastlstm["):
            import fastlstm
            return fastlstm.__version__
        from .peers import peer_version
        return peer_version(self.label)

    def check(self, config, path):
        """Write the runner's y (and dx when it trains) to `path`; the NumPy reference's
        worker adds y_whole, the whole sequence in one call (the stream config's oracle)."""
        import numpy as np
        runner = self.runners[config]
        if self.fault == "crash":
            print(f"{self.label}: injected crash (test hook {FAULT_ENV})", file=sys.stderr)
            sys.stderr.flush()
            os._exit(3)
        if self.fault == "hang":
            time.sleep(3600)
        arrays = {"y": np.asarray(runner.output(), np.float64)}
        if runner.train is not None:
            arrays["dx"] = np.asarray(runner.input_grad(), np.float64)
        if self.label == "fastlstm[numpy]":
            arrays["y_whole"] = np.asarray(runner.reference_output(), np.float64)
        if self.fault == "wrong-output":
            arrays["y"] = arrays["y"] + 0.01
        if self.fault == "wrong-grad" and "dx" in arrays:
            arrays["dx"] = arrays["dx"] + 0.01
        np.savez(path, **arrays)
        from .timing import quiesce
        quiesce()  # the next worker's check or timing starts on quiet cores
        return {"train": "dx" in arrays}

    def time(self, config, mode, what, n):
        """Seconds of n timed calls; the stream config's unit is one step."""
        from .timing import quiesce, time_calls
        runner = self.runners[config]
        if runner.wl.cfg.stream:
            fn = runner.step if what == "forward" else runner.train_step
        else:
            fn = runner.forward if what == "forward" else runner.train
        if fn is None:
            raise ValueError(f"{self.label} cannot train")
        times = time_calls(fn, mode, n)
        return {"times": times, "quiet_s": quiesce()}


def serve(label, threads, requests, reply):
    """Answer `requests` (an iterator of JSON lines) through reply(dict) until "quit"."""
    worker = None
    for line in requests:
        if not line.strip():
            continue
        try:
            msg = json.loads(line)
            cmd = msg.pop("cmd")
            if cmd == "quit":
                reply({"ok": True})
                return
            if cmd == "setup":
                worker = Worker(label, threads)
                out = worker.setup(msg["configs"])
            elif cmd == "check":
                out = worker.check(msg["config"], msg["path"])
            elif cmd == "time":
                out = worker.time(msg["config"], msg["mode"], msg["what"], msg["n"])
            else:
                raise ValueError(f"unknown command {cmd!r}")
            reply({"ok": True, **out})
        except Exception:
            reply({"ok": False, "error": traceback.format_exc()})


def main(argv=None):
    """Run one worker: `python -m fastlstm.benchmark.worker LABEL THREADS`."""
    label, threads = (argv or sys.argv[1:])[:2]
    # The protocol gets its own copy of stdout; fd 1 then points at stderr, so whatever a
    # library prints cannot corrupt the JSON lines.
    proto = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)

    def reply(obj):
        proto.write(json.dumps(obj) + "\n")
        proto.flush()
    serve(label, int(threads), sys.stdin, reply)


if __name__ == "__main__":
    main()
