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


def _ratio(v):
    return "-" if not v else f"{v:.2f}x"


def format_times(result):
    head = ["config", "implementation", "fwd ms", "GFLOP/s", "% peak",
            "fwd+bwd ms", "GFLOP/s", "% peak"]
    body = [[r["config"], r["impl"], _num(r["forward_ms"], ".3f"),
             _num(r["forward_gflops"], ".2f"), _num(r["forward_pct_peak"], ".1f"),
             _num(r["train_ms"], ".3f"), _num(r["train_gflops"], ".2f"),
             _num(r["train_pct_peak"], ".1f")] for r in result["rows"]]
    return _table(head, body)


def ratio_columns(result):
    cols = [("numpy/forward", "vs numpy fwd"), ("numpy/train", "vs numpy fwd+bwd")]
    for p in result["peers"]:
        cols.append((f"{p}/forward", f"{p} fwd"))
        if p == "torch":
            cols.append((f"{p}/train", f"{p} fwd+bwd"))
    return cols


def format_ratios(result):
    cols = ratio_columns(result)
    head = ["config", "backend"] + [title for _, title in cols]
    body = [[r["config"], r["impl"]] + [_ratio(r["ratios"].get(key)) for key, _ in cols]
            for r in result["rows"] if r["kind"] == "fastlstm"]
    return _table(head, body)


def format_extras(result):
    """Per-call times of the stream config, and lengths against padding (mid)."""
    lines = []
    stream = [r for r in result["rows"] if r["config"] == "stream"]
    if stream:
        lines.append("stream, per one-step call: " + ", ".join(
            f"{r['impl']} {r['forward_us_per_call']:.1f} us"
            + (f" (fwd+bwd {r['train_us_per_call']:.1f} us)" if r.get("train_us_per_call")
               else "") for r in stream))
    by = {(r["config"], r["impl"]): r for r in result["rows"]}
    pairs = [(r, by.get(("mid", r["impl"]))) for r in result["rows"] if r["config"] == "lengths"]
    pairs = [(r, m) for r, m in pairs if m]
    if pairs:
        lines.append("lengths time / padded (mid) time: " + ", ".join(
            f"{r['impl']} fwd {r['forward_ms'] / m['forward_ms']:.2f}"
            + (f" fwd+bwd {r['train_ms'] / m['train_ms']:.2f}" if r["train_ms"] else "")
            for r, m in pairs) + "  (< 1: padding is skipped, not computed)")
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
        how = ["OpenMP" if ext.get("openmp") else "without OpenMP: one core",
               f"{isa['chosen']} kernels" + (" (forced by FASTLSTM_ISA)" if isa.get("forced")
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
    sentence per config group against the fastest peer that ran (against the NumPy
    reference when none did), and the peers that were skipped, with how to install them.

    result: what suite.run_suite returns; machine: what fastlstm.info.collect_info returns.
    """
    lines = [auto_sentence(machine)]
    impl = _summarised_impl(result, machine)
    peers = result["peers"]
    others = peers or (["numpy"] if impl != "numpy" else [])
    groups = {}
    for r in result["rows"]:
        groups.setdefault(r.get("group") or r["config"], []).append(r)
    if others:
        lines.append("x = other time / fastlstm time, as in the ratios above; within 5% "
                     "of 1 reads \"about as fast\".")
        for group, rows in groups.items():
            sentence = _group_sentence(group, rows, impl, others)
            if sentence:
                lines.append(sentence)
    else:
        lines.append("Only the NumPy reference ran: there is nothing to compare it with.")
    skipped = result.get("skipped_peers", {})
    if skipped:
        lines.append("Not compared: " + ", ".join(f"{p} ({why})" for p, why in skipped.items())
                     + f". To compare with them: {INSTALL}.")
    elif not peers:
        lines.append("No peer was asked for (--compare none); PyTorch and ONNX Runtime "
                     f"run side by side when installed: {INSTALL}.")
    wrapped = [textwrap.fill(line, width=100, initial_indent="  ", subsequent_indent="    ",
                             break_on_hyphens=False, break_long_words=False) for line in lines]
    return "\n".join(["Summary:"] + wrapped)


def format_report(result, header, machine=None):
    """The whole text report of one `fastlstm bench` run; the summary closes it when
    `machine` (fastlstm.info.collect_info()) is given."""
    parts = [header, "", format_times(result), "",
             "Ratios: other time / fastlstm time (> 1 means fastlstm is faster)",
             format_ratios(result)]
    extras = format_extras(result)
    if extras:
        parts += ["", extras]
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
    rows = [r for r in result["rows"] if r["impl"] == impl]
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
    ax.set_title(f"{impl} against its peers, {result['threads']} threads")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
