"""The benchmark's tables, its closing summary, and its plot."""
import textwrap

from .peers import INSTALL

# Ratios nearer 1 than this read "about as fast": the same figure moves by 10-20% between
# runs on a shared machine, so 0.98x is no verdict.
FASTER, SLOWER = 1.05, 1 / 1.05


def _table(head, body, right_from=2):
    """Aligned text table; columns from `right_from` on are right-aligned numbers."""
    widths = [max(len(str(row[i])) for row in [head] + body) for i in range(len(head))]

    def line(row):
        return "  ".join(str(v).rjust(w) if i >= right_from else str(v).ljust(w)
                         for i, (v, w) in enumerate(zip(row, widths))).rstrip()
    return "\n".join([line(head), "  ".join("-" * w for w in widths)] + [line(r) for r in body])


def _num(v, fmt):
    return "-" if v is None else format(v, fmt)


def _ms(v):
    """A time in ms to three or four significant figures."""
    if v is None:
        return "-"
    return f"{v:.1f}" if v >= 100 else f"{v:.2f}" if v >= 1 else f"{v:.3f}"


def _us(v):
    """A time in us: one decimal below 100 us."""
    return f"{v:.1f}" if v < 100 else f"{v:.0f}"


def _time(row, key):
    """A row's time: ms, or us for one-step calls (the stream config)."""
    v = row.get(f"{key}_ms")
    if v is None or row.get("unit") != "step":
        return _ms(v)
    return f"{_us(v * 1e3)} us"


def _ratio(v):
    return "-" if not v else f"{v:.2f}x"


def _modes(result):
    """The modes a result holds, in order (one unnamed mode for rows without one)."""
    return result.get("modes") or [None]


def _rows(result, mode):
    return [r for r in result["rows"] if r.get("mode") == mode]


def mode_title(mode):
    """What a mode means, for headings: "back-to-back calls" or the idle pause."""
    from .timing import MODE_TITLES
    return MODE_TITLES.get(mode, mode or "")


def _capital(text):
    return text[:1].upper() + text[1:]


def format_times(result, mode=None):
    """The times table of one mode: median and 90th percentile of forward and
    forward+backward per config and implementation (ms; us per step for stream)."""
    head = ["config", "implementation", "fwd ms", "p90", "% peak",
            "fwd+bwd ms", "p90", "% peak"]
    body = [[r["config"], r["impl"], _time(r, "forward"), _time(r, "forward_p90"),
             _num(r["forward_pct_peak"], ".1f"), _time(r, "train"), _time(r, "train_p90"),
             _num(r["train_pct_peak"], ".1f")] for r in _rows(result, mode)]
    return _table(head, body)


def ratio_columns(result):
    cols = [("numpy/forward", "vs numpy fwd"), ("numpy/train", "vs numpy fwd+bwd")]
    for p in result["peers"]:
        cols.append((f"{p}/forward", f"{p} fwd"))
        if p == "torch":
            cols.append((f"{p}/train", f"{p} fwd+bwd"))
    return cols


def format_ratios(result, mode=None):
    """The ratios table of one mode: other median / fastlstm median (> 1: fastlstm is
    faster), per config and fastlstm backend."""
    cols = ratio_columns(result)
    head = ["config", "backend"] + [title for _, title in cols]
    body = [[r["config"], r["impl"]] + [_ratio(r["ratios"].get(key)) for key, _ in cols]
            for r in _rows(result, mode) if r["kind"] == "fastlstm"]
    return _table(head, body)


def format_stream_step(result):
    """The one-step streaming latency of every implementation in each mode (us, median
    and p90), and the call each one makes; '' when the stream config did not run."""
    steps = result.get("stream_step") or []
    if not steps:
        return ""
    api_text = {"step": "model.step(x_t, state)", "call": "model(x[t:t+1], state)"}
    apis = {}  # one entry for every fastlstm backend that makes the same call
    for s in steps:
        who = "fastlstm" if s["impl"].startswith("fastlstm[") else s["impl"]
        apis.setdefault(who, []).append(api_text.get(s["api"], s["api"]))
    calls = "; ".join(f"{who}: {' / '.join(dict.fromkeys(a))}" for who, a in apis.items())
    lines = [f"One streamed step (the stream config: B=1, state carried by the caller), us, "
             f"median (p90); calls: {calls}:"]
    for mode in _modes(result):
        these = [s for s in steps if s["mode"] == mode]
        if these:
            lines.append(f"{mode_title(mode)}: " + ", ".join(
                f"{s['impl']} {_us(s['us'])} ({_us(s['p90_us'])})" for s in these))
    return "\n".join(_wrap(line, "  " if i else "") for i, line in enumerate(lines))


def _wrap(line, indent=""):
    """One line of text wrapped to 100 columns, continued two spaces further in."""
    return textwrap.fill(line, width=100, initial_indent=indent,
                         subsequent_indent=indent + "  ", break_on_hyphens=False,
                         break_long_words=False)


def format_extras(result):
    """The one-step streaming latency, and lengths against padding (mid), back-to-back."""
    lines = []
    step = format_stream_step(result)
    if step:
        lines.append(step)
    mode = _modes(result)[0]
    rows = _rows(result, mode)
    by = {(r["config"], r["impl"]): r for r in rows}
    pairs = [(r, by.get(("mid", r["impl"]))) for r in rows if r["config"] == "lengths"]
    pairs = [(r, m) for r, m in pairs if m]
    if pairs:
        lines.append(_wrap("lengths time / padded (mid) time: " + ", ".join(
            f"{r['impl']} fwd {r['forward_ms'] / m['forward_ms']:.2f}"
            + (f" fwd+bwd {r['train_ms'] / m['train_ms']:.2f}" if r["train_ms"] else "")
            for r, m in pairs) + "  (< 1: padding is skipped, not computed)"))
    return "\n".join(lines)


def _span(ratios):
    lo, hi = f"{min(ratios):.2f}", f"{max(ratios):.2f}"
    return f"{lo}x" if lo == hi else f"{lo}-{hi}x"


def verdict(pairs):
    """In words, fastlstm against another implementation over some configs.

    pairs: (config, other time / fastlstm time). Gives "faster (1.70-2.80x)", "slower
    (0.90x)", "about as fast (0.98x)", or, when configs differ, each verdict with the
    configs it holds on: "faster on edge, seed (1.70-2.80x), slower on stream (0.90x)".
    """
    parts = []
    for word, holds in (("faster", lambda r: r >= FASTER), ("slower", lambda r: r <= SLOWER),
                        ("about as fast", lambda r: SLOWER < r < FASTER)):
        hit = [(config, r) for config, r in pairs if holds(r)]
        if hit:
            parts.append((word, hit))
    if len(parts) == 1:
        word, hit = parts[0]
        return f"{word} ({_span([r for _, r in hit])})"
    return ", ".join(f"{word} on {', '.join(c for c, _ in hit)} ({_span([r for _, r in hit])})"
                     for word, hit in parts)


def auto_sentence(machine):
    """Which backend backend="auto" uses on this machine and why, from the
    `fastlstm.info.collect_info()` dict."""
    order, status = machine["auto_order"], machine["backends"]
    first, rest = order[0], order[1:]
    if first == "cython":
        ext = machine["extension"]
        isa = ext.get("isa") or {}
        how = [f"{isa['chosen']} kernels" + (" (forced by FASTLSTM_ISA)" if isa.get("forced")
                                             else "") if isa.get("chosen")
               else "kernel variant unknown"]
        if ext.get("debug"):
            how.append("a debug build: index checks on, slower")
        why = f"the compiled extension is built here ({', '.join(how)})"
    elif first == "numba":
        why = (f"the compiled extension is not built here ({status['cython']['reason']}); "
               "numba compiles its kernels on first use and caches them")
    else:
        missing = [f"{name}: {b['reason']}" for name, b in status.items()
                   if name != first and not b["available"]]
        why = f"no faster backend can run here ({'; '.join(missing)})"
    return f"auto uses {first}: {why}" + (f"; next in line: {', '.join(rest)}." if rest
                                           else ".")


def _summarised_impl(result, machine):
    """The fastlstm backend the summary speaks for: auto's choice when it ran, else the
    first fast backend that ran, else the reference."""
    ran = result["backends"]
    auto = machine["auto_order"][0]
    if auto in ran:
        return auto
    return next((b for b in ran if b != "numpy"), "numpy")


def _group_sentence(group, rows, impl, others):
    """One sentence: `impl` against the fastest of `others` per config, forward and
    forward+backward. None when nothing in the group can be compared."""
    configs = list(dict.fromkeys(r["config"] for r in rows))
    ours = {r["config"]: r for r in rows if r["impl"] == f"fastlstm[{impl}]"}
    clauses = []
    for mode, title in (("forward", "forward"), ("train", "forward+backward")):
        pairs, fastest, ran = [], [], set()
        for config in (c for c in configs if c in ours):
            ratios = {o: ours[config]["ratios"].get(f"{o}/{mode}") for o in others}
            ratios = {o: v for o, v in ratios.items() if v}
            if ratios:
                best = min(ratios, key=ratios.get)  # the smallest time ratio: the fastest
                pairs.append((config, ratios[best]))
                fastest.append(best)
                ran.update(ratios)
        if pairs:
            names = ", ".join(_name(o) for o in dict.fromkeys(fastest))
            who = f"the fastest peer ({names})" if len(ran) > 1 else names
            clauses.append(f"{title} against {who}: {verdict(pairs)}")
    if not clauses:
        return None
    return f"{group} ({', '.join(configs)}): fastlstm[{impl}] {'; '.join(clauses)}."


def _name(other):
    return "the NumPy reference" if other == "numpy" else other


def format_summary(result, machine):
    """The closing lines of `fastlstm bench`: which backend auto uses here and why, one
    sentence per config group (per mode, when both ran) against the fastest peer that
    ran (against the NumPy reference when none did), and the peers that were skipped,
    with how to install them.

    result: what suite.run_suite returns; machine: what fastlstm.info.collect_info returns.
    """
    lines = [(auto_sentence(machine), 1)]
    impl = _summarised_impl(result, machine)
    peers = result["peers"]
    others = peers or (["numpy"] if impl != "numpy" else [])
    modes = _modes(result)
    if others:
        lines.append(("x = other time / fastlstm time (medians), as in the ratios above; "
                      "within 5% of 1 reads \"about as fast\".", 1))
        for mode in modes:
            groups = {}
            for r in _rows(result, mode):
                groups.setdefault(r.get("group") or r["config"], []).append(r)
            sentences = [_group_sentence(group, rows, impl, others)
                         for group, rows in groups.items()]
            sentences = [t for t in sentences if t]
            if len(modes) > 1 and sentences:
                lines.append((_capital(mode_title(mode)) + ":", 1))
            lines += [(t, 2 if len(modes) > 1 else 1) for t in sentences]
    else:
        lines.append(("Only the NumPy reference ran: there is nothing to compare it with.", 1))
    skipped = result.get("skipped_peers", {})
    if skipped:
        lines.append(("Not compared: " + ", ".join(f"{p} ({why})" for p, why in skipped.items())
                      + f". To compare with them: {INSTALL}.", 1))
    elif not peers:
        lines.append(("No peer was asked for (--compare none); PyTorch and ONNX Runtime "
                      f"run side by side when installed: {INSTALL}.", 1))
    wrapped = [textwrap.fill(line, width=100, initial_indent="  " * level,
                             subsequent_indent="  " * level + "  ", break_on_hyphens=False,
                             break_long_words=False) for line, level in lines]
    return "\n".join(["Summary:"] + wrapped)


def format_header(result, version, versions):
    """The report's opening lines: fastlstm's version, threads, the peers' versions
    (`versions`: {peer: version}), the machine (result["machine_summary"]), the GEMM peak
    and how the run was made."""
    from .machine import machine_text
    rounds, repeat = result["rounds"], result["repeat"]
    lines = [f"fastlstm {version} bench: float32, {result['threads']} threads"
             + "".join(f"; {p} {v}" for p, v in versions.items()),
             f"machine: {machine_text(result['machine_summary'])}; float32 GEMM peak "
             f"{result['gemm_peak_gflops']:.0f} GFLOP/s",
             f"Each implementation in a process of its own, one at a time; {rounds} "
             f"round{'s' if rounds > 1 else ''} of {repeat} calls per implementation, config "
             "and mode, the first implementation rotating from round to round."]
    return "\n".join(_wrap(line) for line in lines)


def format_report(result, header, machine=None):
    """The whole text report of one `fastlstm bench` run: per mode a times table and a
    ratios table, then the one-step streaming latency, cold start and first calls; the
    summary closes it when `machine` (fastlstm.info.collect_info()) is given."""
    parts = [header]
    for mode in _modes(result):
        if mode:
            parts += ["", f"== {_capital(mode_title(mode))} =="]
        parts += ["", "Median and 90th percentile (p90), ms (stream: us per one-step call)",
                  format_times(result, mode), "",
                  "Ratios, other median / fastlstm median (> 1 means fastlstm is faster)",
                  format_ratios(result, mode)]
    extras = format_extras(result)
    if extras:
        parts += ["", extras]
    if result.get("cold_start"):
        from .cold_start import format_cold_start
        parts += ["", _wrap(format_cold_start(result["cold_start"]))]
    if result.get("first_calls"):
        from .first_call import format_first_calls
        parts += ["", format_first_calls(result["first_calls"])]
    if machine is not None:
        parts += ["", format_summary(result, machine)]
    return "\n".join(parts)


def plot_ratios(result, path):
    """Bar chart of peer time / fastlstm time per config for the first fastlstm backend
    that is not the reference (or the reference when it is alone)."""
    import matplotlib
    import matplotlib.ticker
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    backends = [b for b in result["backends"] if b != "numpy"] or ["numpy"]
    impl = f"fastlstm[{backends[0]}]"
    mode = _modes(result)[0]  # back-to-back when it ran
    rows = [r for r in _rows(result, mode) if r["impl"] == impl]
    cols = [(k, t) for k, t in ratio_columns(result) if not k.startswith("numpy/")] or \
        ratio_columns(result)
    configs = [r["config"] for r in rows]
    width = 0.8 / len(cols)
    fig, ax = plt.subplots(figsize=(max(6, 1.4 * len(configs)), 4.5))
    for j, (key, title) in enumerate(cols):
        values = [r["ratios"].get(key) or 0 for r in rows]
        xs = [i + (j - (len(cols) - 1) / 2) * width for i in range(len(configs))]
        bars = ax.bar(xs, values, width, label=title)
        ax.bar_label(bars, labels=[f"{v:.2f}" if v else "" for v in values], fontsize=7)
    ax.axhline(1.0, color="black", linewidth=0.8)
    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
    ax.yaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.set_xticks(range(len(configs)), configs)
    ax.set_ylabel(f"time / {impl} time (log; > 1: fastlstm faster)")
    ax.set_title(f"{impl} against its peers, {result['threads']} threads"
                 + (f", {mode_title(mode)}" if mode else ""))
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
