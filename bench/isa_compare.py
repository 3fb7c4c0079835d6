"""fastlstm's kernel variants against the peers held to the same instruction sets, each
implementation timed in a process of its own.

    python bench/isa_compare.py                        # avx512 and avx2 rows (x86-64)
    python bench/isa_compare.py --isa avx2,baseline --configs edge,mid --rounds 5

For every instruction set: fastlstm[cython] forced to that variant (FASTLSTM_ISA), and
fastlstm[numba], PyTorch and ONNX Runtime (forward only), all started with the variables
of `fastlstm bench --isa` (fastlstm/benchmark/isa.py) that hold OpenBLAS, numba and torch
to it (ONNX Runtime has no such setting: its row is the same for every set). Each round
starts one fresh process per implementation, one after another (A B C ... A B C ...), so
no thread pool spins into another's time and the machine's slow moments are shared; each
process checks its output against the NumPy reference before timing, then times
back-to-back calls. The figures are medians over rounds of each process's median, ms.
"""
import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

IMPLS = ["cython", "numba", "torch", "onnxruntime"]
CONFIGS = ["edge", "single", "mid", "large"]


def worker(impl, configs, threads):
    """Time one implementation on every config; print one JSON line of medians."""
    from fastlstm.benchmark.configs import CONFIGS as ALL
    from fastlstm.benchmark.peers import make_peer, peer_status
    from fastlstm.benchmark.runners import FastlstmRunner, make_workload
    from fastlstm.benchmark.suite import check_close
    if impl in ("torch", "onnxruntime") and peer_status(impl):
        print("RESULT " + json.dumps({"skipped": peer_status(impl)}))
        return
    import fastlstm
    fastlstm.set_num_threads(threads)
    out = {}
    for name in configs:
        cfg = ALL[name]
        wl = make_workload(cfg)
        runner = (FastlstmRunner(wl, impl) if impl in ("cython", "numba")
                  else make_peer(impl, wl, threads))
        ref = FastlstmRunner(wl, "numpy")
        check_close(runner.label, "forward", runner.output(), ref.output(), name)
        reps = max(5, int(0.5 / max(_once(runner.forward), 1e-5)))  # ~0.5 s per figure
        fwd = _median(runner.forward, min(reps, 200))
        train = None
        if runner.train is not None:
            check_close(runner.label, "input gradient", runner.input_grad(), ref.input_grad(),
                        name, tol=1e-3)
            train = _median(runner.train, min(max(5, reps // 3), 100))
        out[name] = [fwd, train]
    print("RESULT " + json.dumps(out))


def _once(fn):
    fn()
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def _median(fn, n):
    fn()
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times)) * 1e3


def run(isas, configs, rounds, threads):
    from fastlstm.benchmark.isa import environment
    jobs = [(isa, impl) for isa in isas for impl in IMPLS]
    runs = {job: [] for job in jobs}
    for r in range(rounds):
        for isa, impl in jobs:
            env = {**os.environ, **environment(isa)}
            proc = subprocess.run([sys.executable, __file__, "--worker", impl, "--configs",
                                   ",".join(configs), "--threads", str(threads)],
                                  env=env, capture_output=True, text=True, check=False)
            line = [x for x in proc.stdout.splitlines() if x.startswith("RESULT ")]
            if proc.returncode or not line:
                raise SystemExit(f"{impl} ({isa}) failed:\n{proc.stderr[-3000:]}")
            runs[(isa, impl)].append(json.loads(line[0][7:]))
            print(f"round {r + 1}/{rounds}: {isa} {impl} done", file=sys.stderr, flush=True)
    return {f"{isa}/{impl}": _medians(results, configs) for (isa, impl), results in runs.items()}


def _medians(results, configs):
    if "skipped" in results[0]:
        return {"skipped": results[0]["skipped"]}
    out = {}
    for name in configs:
        fwd = float(np.median([r[name][0] for r in results]))
        trains = [r[name][1] for r in results if r[name][1] is not None]
        out[name] = [fwd, float(np.median(trains)) if trains else None]
    return out


def _fmt(v):
    return "-" if v is None else f"{v:.3g}" if v < 10 else f"{v:.1f}"


def table(figures, isas, configs):
    """Markdown: per config and instruction set, each implementation's fwd / fwd+bwd, and
    fastlstm[cython]'s ratios (other time / its time: above 1, fastlstm is faster)."""
    lines = ["| config | isa | fastlstm[cython] | fastlstm[numba] | torch | onnxruntime fwd | "
             "vs torch fwd / fwd+bwd | vs ORT fwd |", "|---" * 8 + "|"]
    for name in configs:
        for isa in isas:
            cells, got = [], {}
            for impl in IMPLS:
                f = figures[f"{isa}/{impl}"]
                got[impl] = f.get(name, [None, None])
                fwd, train = got[impl]
                cells.append("skipped" if "skipped" in f else
                             _fmt(fwd) if impl == "onnxruntime" else
                             f"{_fmt(fwd)} / {_fmt(train)}")
            ours = got["cython"]

            def ratio(peer, k):
                v = got[peer][k]
                return "-" if v is None or not ours[k] else f"{v / ours[k]:.2f}x"
            lines.append(f"| {name} | {isa} | " + " | ".join(cells) +
                         f" | {ratio('torch', 0)} / {ratio('torch', 1)} | "
                         f"{ratio('onnxruntime', 0)} |")
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--isa", default="avx512,avx2", help="instruction sets (default: %(default)s)")
    ap.add_argument("--configs", default=",".join(CONFIGS))
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", help="write every figure here")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    args = ap.parse_args()
    configs = args.configs.split(",")
    if args.worker:
        return worker(args.worker, configs, args.threads)
    from fastlstm.benchmark.isa import check
    isas = args.isa.split(",")
    for isa in isas:
        why = check(isa)
        if why:
            raise SystemExit(f"--isa {isa}: {why}")
    figures = run(isas, configs, args.rounds, args.threads)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"isas": isas, "configs": configs, "rounds": args.rounds,
                       "threads": args.threads, "figures_ms": figures}, f, indent=1)
    print(table(figures, isas, configs))


if __name__ == "__main__":
    main()
