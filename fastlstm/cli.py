"""The `fastlstm` command: `fastlstm info` and `fastlstm bench`."""
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


def build_parser():
    from .backends import available_backends
    from .benchmark import CONFIGS
    parser = argparse.ArgumentParser(prog="fastlstm", description="fastlstm: fast CPU LSTMs")
    sub = parser.add_subparsers(dest="command", required=True)

    info = sub.add_parser("info", help="version, backends (and why any is unavailable), "
                                       "threads, BLAS, how the extension was built")
    info.add_argument("--json", action="store_true", help="print JSON instead of text")

    bench = sub.add_parser("bench", help="time forward and forward+backward on the standard "
                                         "configs, every backend, speedup over NumPy")
    bench.add_argument("--configs", type=_csv_choice(list(CONFIGS), "config"),
                       default=list(CONFIGS), help=f"comma-separated, from {', '.join(CONFIGS)}")
    bench.add_argument("--backends", type=_csv_choice(available_backends(), "backend"),
                       default=available_backends(),
                       help="comma-separated available backends (default: all); the NumPy "
                            "reference always runs too, as the baseline")
    bench.add_argument("--repeat", type=_positive, default=5, help="timed runs per figure")
    bench.add_argument("--quick", action="store_true", help="2 timed runs per figure")
    bench.add_argument("--threads", type=_positive, help="threads for every backend")
    bench.add_argument("--json", metavar="FILE", help="also write every figure to FILE")
    return parser


def cmd_info(args):
    from .info import collect_info, format_info
    info = collect_info()
    print(json.dumps(info, indent=2) if args.json else format_info(info))
    return 0


def cmd_bench(args):
    from . import benchmark
    from .info import collect_info
    from .threads import get_num_threads, set_num_threads
    if args.threads:
        set_num_threads(args.threads)
    backends = args.backends if "numpy" in args.backends else ["numpy"] + args.backends
    repeat = 2 if args.quick else args.repeat
    print(f"fastlstm bench: {len(args.configs)} configs x {len(backends)} backends, float32, "
          f"median of {repeat}, {get_num_threads()} threads", file=sys.stderr)
    rows = benchmark.run(args.configs, backends, repeat, progress=benchmark.stderr_progress)
    print(benchmark.format_table(rows))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"machine": collect_info(), "repeat": repeat, "rows": rows}, f, indent=2)
        print(f"wrote {args.json}", file=sys.stderr)
    return 0


def main(argv=None):
    args = build_parser().parse_args(argv)
    return {"info": cmd_info, "bench": cmd_bench}[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
