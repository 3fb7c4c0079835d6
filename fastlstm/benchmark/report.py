"""The benchmark's tables, and its plot."""


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


def format_report(result, header):
    parts = [header, "", format_times(result), "",
             "Ratios: other time / fastlstm time (> 1 means fastlstm is faster)",
             format_ratios(result)]
    extras = format_extras(result)
    if extras:
        parts += ["", extras]
    if result.get("first_calls"):
        from .first_call import format_first_calls
        parts += ["", format_first_calls(result["first_calls"])]
    if result["notes"]:
        parts += [""] + result["notes"]
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
