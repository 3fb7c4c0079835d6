"""The `fastlstm` command: `fastlstm info`, `fastlstm bench` and `fastlstm --version`."""
import argparse
import json
import sys


def _csv_choice(all_names, what):
    """argparse type: a comma-separated subset of all_names (order kept)."""
    def parse(text):
        names = [n.strip() for n in text.split(",") if n.strip()]
        unknown = [n for n in names if n not in all_names]
        if unknown or not names:
            raise argparse.ArgumentTypeError(
                f"unknown {what} {', '.join(unknown) or '(none given)'}; "
                f"choose from {', '.join(all_names)}")
        return names
    return parse


def _positive(text):
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}")
    return value


def _non_negative(text):
    if text.strip() == "0":
        return 0
    return _positive(text)


def _thread_count(text):
    """argparse type of --threads: fastlstm.threads' rule (1 .. usable cores)."""
    from .threads import check_num_threads
    try:
        return check_num_threads(_positive(text), "--threads")
    except ValueError as exc:  # "--threads must be ...": argparse names the option itself
        raise argparse.ArgumentTypeError(str(exc).removeprefix("--threads ")) from None


def build_parser():
    """The argument parser of the `fastlstm` command (its subcommands and options)."""
    from ._version import __version__
    from .backends import available_backends
    from .benchmark.configs import CONFIGS, PROGRAMS
    from .benchmark.peers import PEERS
    parser = argparse.ArgumentParser(prog="fastlstm", description="fastlstm: fast CPU LSTMs")
    parser.add_argument("--version", action="version", version=f"fastlstm {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    info = sub.add_parser("info", help="version, backends (and why any is unavailable), "
                                       "threads, BLAS, how the extension was built")
    info.add_argument("--json", action="store_true", help="print JSON instead of text")

    bench = sub.add_parser("bench", help="time forward and forward+backward of the built-in "
                                         "configs on every backend, side by side with peers")
    bench.add_argument("--configs", type=_csv_choice([*CONFIGS, *PROGRAMS], "config"),
                       help=f"comma-separated, from {', '.join([*CONFIGS, *PROGRAMS])} "
                            "(default: all; with --scaling: mid,large). seed-fit times the "
                            "classic Keras program's whole fit in fastlstm.keras, PyTorch and "
                            "Keras, each run in a fresh process")
    bench.add_argument("--backends", type=_csv_choice(available_backends(), "backend"),
                       default=available_backends(),
                       help="comma-separated available backends (default: all); the NumPy "
                            "reference always runs too, as the baseline")
    bench.add_argument("--compare", type=_csv_choice(["auto", "none", *PEERS], "peer"),
                       default=["auto"],
                       help="peers timed side by side: torch, onnxruntime, 'none', or 'auto' "
                            "(default: both; one that is not installed is skipped with a note)")
    bench.add_argument("--repeat", type=_positive, default=7,
                       help="timed calls per implementation, config and mode in each round "
                            "(default 7; stream's back-to-back one-step calls: at least a "
                            "pass of its 100 steps)")
    bench.add_argument("--rounds", type=_positive, default=3,
                       help="rounds: in each, every implementation's process takes its turn "
                            "on every config, one at a time (default 3)")
    bench.add_argument("--mode", choices=["b2b", "idle", "both"], default="both",
                       help="b2b: calls back-to-back (a training loop, a busy server); idle: "
                            "a 50 ms pause before each call (a sporadic caller); both "
                            "(default)")
    bench.add_argument("--cold-starts", type=_non_negative, default=None, metavar="N",
                       help="fresh processes timed from start to a first edge forward "
                            "(default 5, 2 with --quick; 0: skip)")
    bench.add_argument("--quick", action="store_true",
                       help="1 round of 3 calls, 2 cold starts and a smaller GEMM peak "
                            "probe: seconds, for CI and a first look")
    bench.add_argument("--threads", type=_thread_count,
                       help="threads for fastlstm and the peers, at most the usable cores "
                            "(default: every usable core)")
    bench.add_argument("--json", metavar="FILE", help="also write every figure, the machine, "
                                                      "versions, threads and BLAS to FILE")
    bench.add_argument("--plot", metavar="FILE.png", help="bar chart of the ratios per config "
                                                          "(needs matplotlib)")
    bench.add_argument("--no-first-call", action="store_true",
                       help="skip timing the first call (compile, then cached) of JIT "
                            "backends in fresh processes")
    bench.add_argument("--isa", metavar="NAME", type=str.lower,
                       help="force the compiled kernels' variant (avx512, avx2, baseline or "
                            "neon: one this CPU runs) and, for avx2 and baseline, hold "
                            "OpenBLAS, numba and torch to the same instruction sets, in a "
                            "child process: compares the variants on one machine")
    bench.add_argument("--scaling", action="store_true",
                       help="instead: time against threads (1..cores, on --configs) and "
                            "against B, T, H")
    return parser


def cmd_info(args):
    from .info import collect_info, format_info
    info = collect_info()
    print(json.dumps(info, indent=2) if args.json else format_info(info))
    return 0


def _peers(requested):
    """Peers to run: 'auto' asks for all of them (a missing one becomes a one-line note)."""
    from .benchmark.peers import PEERS
    if "none" in requested:
        return []
    if "auto" in requested:
        return list(PEERS)
    return requested


def _check_outputs(args, parser):
    """Refuse up front what would only fail after minutes of benchmarking."""
    import importlib.util
    import os
    if args.plot and importlib.util.find_spec("matplotlib") is None:
        parser.error("--plot needs matplotlib: pip install 'fastlstm[bench]'")
    for path in filter(None, (args.json, args.plot)):
        folder = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(folder):
            parser.error(f"cannot write {path}: folder {folder} does not exist")


def cmd_bench(args, parser, argv):
    from .benchmark import isa
    _check_outputs(args, parser)
    if args.isa:
        why = isa.check(args.isa)
        if why:
            parser.error(f"argument --isa: {why}")
        if not isa.in_place(args.isa):
            return isa.run_in_child(args.isa, argv, _progress)
        from .backends import cython_cpu
        cython_cpu.select_isa(args.isa)  # as loading it with FASTLSTM_ISA set chose already
    from ._version import __version__
    from .benchmark import report
    from .benchmark.machine import machine_summary
    from .benchmark.pool import WorkerError
    from .benchmark.suite import CheckFailed, run_suite
    from .benchmark.timing import MODES
    from .info import collect_info
    from .threads import default_num_threads, get_num_threads, set_num_threads
    args.configs_given = args.configs is not None
    from .benchmark.configs import CONFIGS, PROGRAMS
    args.configs = args.configs or [*CONFIGS, *PROGRAMS]
    programs = [c for c in args.configs if c in PROGRAMS]
    args.configs = [c for c in args.configs if c in CONFIGS]
    if args.threads:
        set_num_threads(args.threads)
    threads = get_num_threads()
    repeat = 3 if args.quick else args.repeat
    rounds = 1 if args.quick else args.rounds
    cold = args.cold_starts if args.cold_starts is not None else (2 if args.quick else 5)
    progress = _progress
    if args.scaling:
        from .benchmark.scaling import format_scaling, run_scaling
        configs = args.configs if args.configs_given and args.configs else ["mid", "large"]
        rows = run_scaling(args.backends, repeat, default_num_threads(), configs, progress)
        print(format_scaling(rows))
        _write_json(args.json, {"machine": collect_info(), "isa": isa.record(),
                                "repeat": repeat, "scaling": rows})
        return 0
    peers = _peers(args.compare)
    info = collect_info()
    if not args.configs:  # programs only
        return _bench_programs(args, programs, peers, threads, info)
    try:
        result = run_suite(args.configs, args.backends, peers, repeat, threads, progress,
                           gemm_n=1024 if args.quick else 2048,
                           first_call=not args.no_first_call, rounds=rounds,
                           modes=MODES if args.mode == "both" else (args.mode,),
                           cold_start_runs=cold)
    except (CheckFailed, WorkerError) as exc:
        print(f"fastlstm bench: {exc}", file=sys.stderr)
        return 1
    isas = isa.record()
    versions = {p: w["version"] for p, w in result["workers"].items() if p in result["peers"]}
    result["machine_summary"] = machine_summary(info)
    header = report.format_header(result, __version__, versions)
    held_back = isa.describe(isas)
    if held_back:
        header += "\n" + held_back
    print(report.format_report(result, header, info))
    if programs:
        result["programs"] = _run_programs(args, programs, peers, threads)
        if result["programs"] is None:
            return 1
    _write_json(args.json, {"machine": info, "isa": isas, "versions": versions, **result})
    if args.plot:
        report.plot_ratios(result, args.plot)
        print(f"wrote {args.plot}", file=sys.stderr)
    return 0


def _run_programs(args, programs, peers, threads):
    """Run and print the whole-program benchmarks (seed-fit); None when one failed."""
    from .benchmark.seed_fit import format_seed_fit, run_seed_fit
    out = {}
    for name in programs:  # seed-fit is the only one so far
        impls = ["fastlstm"] + [p for p in ("torch", "keras")
                                if "auto" in args.compare or p in peers]
        try:
            out[name] = run_seed_fit(1 if args.quick else args.rounds, threads, impls,
                                     _progress)
        except RuntimeError as exc:
            print(f"fastlstm bench: {exc}", file=sys.stderr)
            return None
        print("\n" + format_seed_fit(out[name]))
    return out


def _bench_programs(args, programs, peers, threads, info):
    from .benchmark import isa
    result = _run_programs(args, programs, peers, threads)
    if result is None:
        return 1
    _write_json(args.json, {"machine": info, "isa": isa.record(), "programs": result})
    return 0


def _progress(msg):
    print(msg, file=sys.stderr, flush=True)


def _write_json(path, data):
    if path:
        with open(path, "w") as f:
            json.dump(data, f, indent=2)
        print(f"wrote {path}", file=sys.stderr)


def main(argv=None):
    """Run the `fastlstm` command line.

    Parameters
    ----------
    argv : list of str, optional
        The arguments after the program name, e.g. ``["bench", "--quick"]``;
        ``sys.argv[1:]`` when None.

    Returns
    -------
    int
        The exit status: 0 on success, 1 when the benchmark found an implementation
        that disagrees with the NumPy reference or one of its worker processes crashed,
        hung or failed (with ``bench --isa``, the child process's status).

    Raises
    ------
    SystemExit
        For ``--help`` and ``--version`` (status 0) and for bad arguments (status 2,
        with a message on stderr), as argparse does.
    """
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parser.parse_args(argv)
    if args.command == "info":
        return cmd_info(args)
    return cmd_bench(args, parser, argv)


if __name__ == "__main__":
    sys.exit(main())
