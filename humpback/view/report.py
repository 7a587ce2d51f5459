"""``humpback report``: one self-contained HTML file that shows a run, iteration by iteration.

Figures come from :mod:`humpback.view.read` (the run folder only). Plots are drawn with matplotlib (Agg)
and embedded as base64 PNG; the numbers each plot was drawn from sit beside it (``data-values``, bar
heights read back from the figure), so the report can be checked against the run.
"""

from __future__ import annotations

import base64
import html
import io
import json
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from .. import layout
from ..errors import StoreError
from ..scoring import SCORES
from ..store import write_text
from .read import RunView, read_run, sample_pairs


# --------------------------------------------------------------------------- plots


@dataclass
class Plot:
    name: str
    title: str
    png: bytes
    data: dict  # what was drawn (bar heights read back from the figure, or the plotted series)


def plots(view: RunView) -> list[Plot]:
    """Every plot of the report; a plot with nothing to draw yet is left out (the HTML says so)."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    makers = (eval_plot, funnel_plot, score_histograms_plot, rates_plot, lengths_plot, losses_plot, principles_plot)
    return [p for p in (make(view) for make in makers) if p is not None]


def eval_plot(view: RunView) -> Optional[Plot]:
    """Held-out loss, win rate (with its 95% interval) and mean answer length of every evaluated model."""
    rows = view.evals
    if not rows:
        return None
    labels = [r["model"] for r in rows]
    xs = list(range(len(rows)))
    fig, axes = _figure(1, 3, width=12)
    series = {"models": labels, "heldout_loss": [r.get("heldout_loss") for r in rows],
              "win_rate": [r.get("win_rate") for r in rows], "win_rate_ci": [r.get("win_rate_ci") for r in rows],
              "lc_win_rate": [r.get("lc_win_rate") for r in rows],
              "answer_chars_mean": [r.get("answer_chars_mean") for r in rows]}
    loss = [(x, v) for x, v in zip(xs, series["heldout_loss"]) if v is not None]
    axes[0].plot([x for x, _ in loss], [v for _, v in loss], marker="o")
    axes[0].set_title("held-out loss (lower is better)")
    win = [(x, r["win_rate"], r.get("win_rate_ci") or [None, None]) for x, r in zip(xs, rows) if r.get("win_rate") is not None]
    if win:
        lo = [w - (ci[0] if ci[0] is not None else w) for _, w, ci in win]
        hi = [(ci[1] if ci[1] is not None else w) - w for _, w, ci in win]
        axes[1].errorbar([x for x, _, _ in win], [w for _, w, _ in win], yerr=[lo, hi], marker="o", capsize=4,
                         label="win rate, 95% CI")
        lc = [(x, r["lc_win_rate"]) for x, r in zip(xs, rows) if r.get("lc_win_rate") is not None]
        axes[1].plot([x for x, _ in lc], [v for _, v in lc], marker="s", linestyle="--", label="length-controlled")
        axes[1].axhline(0.5, color="#8c8c8c", linewidth=0.8)
        axes[1].legend(fontsize=8)
    axes[1].set_ylim(-0.02, 1.02)
    axes[1].set_title("win rate vs reference")
    chars = [(x, v) for x, v in zip(xs, series["answer_chars_mean"]) if v is not None]
    axes[2].bar([x for x, _ in chars], [v for _, v in chars], color="#4c72b0")
    axes[2].set_title("mean answer length (characters)")
    for ax in axes:
        ax.set_xticks(xs)
        ax.set_xticklabels(labels)
    return _finish(fig, "eval", "Did it get better?", series)


def funnel_plot(view: RunView) -> Optional[Plot]:
    steps = [("documents", "funnel/documents"), ("sections", "funnel/sections"), ("segments", "funnel/segments"),
             ("seed tasks", "funnel/seed_tasks"), ("task prompts", "funnel/task_prompts"),
             ("tasks written", "funnel/tasks_written"), ("tasks kept", "funnel/tasks"),
             ("with instances", "funnel/tasks_with_instances"), ("instances", "funnel/instances"),
             ("candidates", "funnel/candidates")]
    first = view.iterations[0].figures if view.iterations else {}
    labels, values = [], []
    for label, key in steps:
        value = first.get(key) if first else None
        if value is None and key == "funnel/segments" and view.funnel:
            value = view.funnel.get("kept")
        if value is not None:
            labels.append(label)
            values.append(value)
    for it in view.iterations:
        if it.figures.get("curated") is not None:
            labels.append(f"curated A({it.k})")
            values.append(it.figures["curated"])
    if not values:
        return None
    fig, ax = _figure(1, 1, width=7)
    ax = ax[0]
    bars = ax.bar(labels, values, color=["#4c72b0"] * (len(values) - sum(lab.startswith("curated") for lab in labels))
                  + ["#55a868"] * sum(lab.startswith("curated") for lab in labels))
    ax.bar_label(bars, fontsize=8)
    ax.set_title("Filter funnel: documents to curated pairs")
    ax.set_ylabel("count")
    ax.tick_params(axis="x", labelrotation=20)
    return _finish(fig, "funnel", "Funnel", {"labels": labels, "values": _heights(ax)})


def score_histograms_plot(view: RunView) -> Optional[Plot]:
    its = [it for it in view.iterations if it.scores]
    if not its:
        return None
    fig, axes = _figure(1, len(its), width=3.2 * len(its) + 1, sharey=True)
    data = {}
    labels = [str(s) for s in SCORES] + ["fail"]
    for ax, it in zip(axes, its):
        if it.figures.get("judge_kind", "rating") != "rating":  # a likelihood or a verifier: its values
            data[str(it.k)] = _value_histogram(ax, it)
            continue
        counts = [it.figures[f"score_count/{s}"] for s in SCORES] + [it.figures["score_count/none"]]
        threshold = it.figures.get("threshold")  # None: selected by rank (top_k / top_fraction)
        colors = ["#4c72b0" if threshold is None else "#55a868" if i + 1 >= threshold else "#c44e52"
                  for i in range(5)] + ["#8c8c8c"]
        ax.bar_label(ax.bar(labels, counts, color=colors), fontsize=8)
        ax.set_title(f"iteration {it.k}: {it.figures['scored']} scored")
        ax.set_xlabel("score" if threshold is None else f"score (green: >= threshold {threshold:g})")
        data[str(it.k)] = dict(zip(labels, _heights(ax)))
    axes[0].set_ylabel("pairs")
    return _finish(fig, "score_histograms", "Score histograms", data)


def _value_histogram(ax, it) -> dict:
    import numpy as np

    values = [v for v in it.values if v is not None]
    edges = np.histogram_bin_edges(values, bins=12) if values else np.arange(2)
    counts, _ = np.histogram(values, bins=edges)
    ax.stairs(counts, edges, fill=True, color="#4c72b0")
    fails = sum(v is None for v in it.values)
    ax.set_title(f"iteration {it.k}: {it.figures['scored']} scored" + (f", {fails} failed" if fails else ""))
    ax.set_xlabel(f"{it.figures.get('judge_kind')} value")
    return {"edges": [float(e) for e in edges], "counts": [int(c) for c in counts], "failed": fails}


def rates_plot(view: RunView) -> Optional[Plot]:
    its = [it for it in view.iterations if it.figures.get("scored") is not None]
    if not its:
        return None
    fig, ax = _figure(1, 1, width=6)
    ax = ax[0]
    ks = [it.k for it in its]
    series = {"acceptance_rate": [it.figures.get("acceptance_rate") for it in its],
              "parse_failure_rate": [it.figures.get("parse_failure_rate") for it in its],
              "judge choice mass": [it.figures.get("judge_health/choice_mass_mean") for it in its],
              "most common score share": [it.figures.get("judge_health/top_score_share") for it in its],
              "dev precision": [it.figures.get("dev/precision") for it in its],
              "dev recall": [it.figures.get("dev/recall") for it in its]}
    series = {n: v for n, v in series.items() if any(x is not None for x in v) or "rate" in n}
    for name, values in series.items():
        xs = [k for k, v in zip(ks, values) if v is not None]
        ax.plot(xs, [v for v in values if v is not None], marker="o", label=name.replace("_", " "))
    ax.set_xticks(ks)
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("iteration")
    ax.set_ylabel("fraction")
    ax.set_title("Acceptance, parse failures, judge health, dev precision/recall")
    ax.legend()
    return _finish(fig, "rates", "Rates", {"iterations": ks, **series})


def lengths_plot(view: RunView) -> Optional[Plot]:
    import numpy as np

    series: dict[str, dict[str, list]] = {"instruction_chars": {}, "output_chars": {}}
    if view.candidates:
        series["instruction_chars"]["candidates"] = [len(c["instruction"]) for c in view.candidates]
        series["output_chars"]["candidates"] = [len(c["output"]) for c in view.candidates]
    for it in view.iterations:
        for name in series:
            if it.lengths.get(name):
                series[name][f"A({it.k})"] = it.lengths[name]
    if not any(series.values()):
        return None
    fig, axes = _figure(1, 2, width=10)
    data: dict = {}
    for ax, (name, groups) in zip(axes, series.items()):
        values = [v for g in groups.values() for v in g]
        edges = np.histogram_bin_edges(values, bins=20) if values else np.arange(2)
        data[name] = {"edges": [float(e) for e in edges]}
        for label, group in groups.items():
            counts, _ = np.histogram(group, bins=edges)
            ax.stairs(counts, edges, label=f"{label} (median {statistics.median(group):g})", linewidth=1.5)
            data[name][label] = [int(c) for c in counts]
        ax.set_title(name.replace("_", " "))
        ax.set_xlabel("characters")
        ax.set_ylabel("pairs")
        ax.legend(fontsize=8)
    return _finish(fig, "lengths", "Length distributions", data)


def losses_plot(view: RunView) -> Optional[Plot]:
    curves = {f"model {m}": pts for m, pts in view.seed_losses.items() if pts}
    curves.update({f"model {it.k}": it.losses for it in view.iterations if it.losses})
    if not curves:
        return None
    fig, ax = _figure(1, 1, width=7)
    ax = ax[0]
    for label, pts in curves.items():
        ax.plot([p["step"] for p in pts], [p["loss"] for p in pts], marker=".", label=label)
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("step")
    ax.set_ylabel("training loss")
    ax.set_title("Training loss")
    ax.legend(fontsize=8)
    return _finish(fig, "losses", "Loss curves", {label: [[p["step"], p["loss"]] for p in pts] for label, pts in curves.items()})


def principles_plot(view: RunView) -> Optional[Plot]:
    """Rubric judge: per principle, the rejected pairs that fail it (signed log-odds < 0), per iteration."""
    its = [it for it in view.iterations if it.principles and "rejected_failing" in it.principles[0]]
    if not its:
        return None
    fig, axes = _figure(1, len(its), width=4.5 * len(its) + 1, sharey=True)
    data = {}
    for ax, it in zip(axes, its):
        names = [p["principle"] for p in it.principles]
        bars = ax.barh(names, [p["rejected_failing"] for p in it.principles], color="#c44e52")
        ax.bar_label(bars, fontsize=8)
        ax.invert_yaxis()
        ax.set_title(f"iteration {it.k}: rejected pairs failing each principle", fontsize=9)
        ax.set_xlabel("rejected pairs with signed log-odds < 0")
        data[str(it.k)] = dict(zip(names, [int(b.get_width()) for b in bars]))
    return _finish(fig, "principles", "Rubric principles", data)


def _figure(rows: int, cols: int, width: float, sharey: bool = False):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, 3.4), dpi=90, layout="constrained")
    axes = fig.subplots(rows, cols, sharey=sharey, squeeze=False)
    return fig, list(axes.flat)


def _heights(ax) -> list:
    from matplotlib.patches import Rectangle

    return [int(p.get_height()) if float(p.get_height()).is_integer() else float(p.get_height())
            for p in ax.patches if isinstance(p, Rectangle)]


def _finish(fig, name: str, title: str, data: dict) -> Plot:
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return Plot(name, title, buf.getvalue(), data)


# --------------------------------------------------------------------------- the HTML file


def write_report(run_dir: Path, output: Optional[Path] = None, n_pairs: int = 5, seed: int = 0) -> Path:
    """Write the report of ``run_dir`` (default ``RUN_DIR/report.html``) and return its path."""
    run_dir = Path(run_dir)
    if not (run_dir / layout.MANIFEST).exists() and not (run_dir / layout.CONFIG).exists():
        raise StoreError(f"{run_dir}: not a humpback run folder (no {layout.MANIFEST} or {layout.CONFIG})")
    output = Path(output) if output is not None else run_dir / layout.REPORT
    view = read_run(run_dir)
    write_text(output, render_html(view, plots(view), n_pairs=n_pairs, seed=seed))
    return output


def render_html(view: RunView, figures: list[Plot], n_pairs: int = 5, seed: int = 0) -> str:
    e = html.escape
    done = sum(1 for s in view.stages.values() if s.get("status") == "done")
    parts = [f"<h1>humpback run <code>{e(view.name)}</code></h1>",
             f"<p>Run folder <code>{e(str(view.run_dir.resolve()))}</code>; report written "
             f"{e(time.strftime('%Y-%m-%d %H:%M:%S'))}; {done} of {len(view.stages)} recorded stages done; "
             f"{len(view.iterations)} iteration(s) planned or present.</p>"]
    missing = view.missing + [m for it in view.iterations for m in it.missing]
    if missing:
        parts.append("<div class='missing'><b>Missing (run not finished?):</b> " + e("; ".join(missing)) + "</div>")
    warnings = [f"iteration {it.k} judge: {w}" for it in view.iterations for w in it.figures.get("judge_warnings") or []]
    if warnings:
        parts.append("<div class='warning'>" + "".join(f"<p><b>WARNING</b> {e(w)}</p>" for w in warnings) + "</div>")
    by_name = {p.name: p for p in figures}
    parts.append("<h2>Did it get better?</h2>" + _eval_table(view) + _img(by_name.get("eval")))
    parts.append("<h2>Per-iteration summary</h2>" + _summary_table(view))
    sections = [("funnel", "Filter funnel", _funnel_table(view)),
                ("score_histograms", "Score histograms (each iteration's judge: " + _judges(view) + ")", ""),
                ("rates", "Acceptance and parse-failure rates, judge health, dev-set precision and recall", ""),
                ("lengths", "Instruction and output lengths (candidate pool and each curated set)", ""),
                ("losses", "Training loss curves", "")]
    if (view.config.get("curate") or {}).get("judge_kind") == "rubric":
        sections.append(("principles", "Rubric principles: which reject the most pairs", _principles_tables(view)))
    for name, title, extra in sections:
        parts.append(f"<h2>{e(title)}</h2>")
        parts.append(_img(by_name.get(name)) or "<p class='missing'>Nothing to plot yet.</p>")
        parts.append(extra)
    for it in view.iterations:
        parts.append(f"<h2>Iteration {it.k}: sampled pairs</h2>")
        if not it.pairs:
            parts.append("<p class='missing'>No scored pairs yet.</p>")
        for accepted, label in ((True, "accepted"), (False, "rejected")) if it.pairs else ():
            sample = sample_pairs(it.pairs, n_pairs, seed, accepted=accepted)
            total = sum(1 for p in it.pairs if p["accepted"] == accepted)
            parts.append(f"<h3>{label}: {len(sample)} of {total}</h3>" + _pairs_table(sample))
        parts.append(_metrics_table(view.metrics, it.k))
    body = "\n".join(parts)
    return (f"<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
            f"<title>humpback report: {e(view.name)}</title><style>{_CSS}</style></head>\n"
            f"<body>\n{body}\n<script>{_JS}</script>\n</body></html>\n")


def _img(plot: Optional[Plot]) -> str:
    if plot is None:
        return ""
    e = html.escape
    b64 = base64.b64encode(plot.png).decode()
    return (f"<img class='plot' alt='{e(plot.title)}' data-plot='{e(plot.name)}' "
            f"data-values='{e(json.dumps(plot.data))}' src='data:image/png;base64,{b64}'>")


def _eval_table(view: RunView) -> str:
    """The "Did it get better?" table: every evaluated model, the figures of its eval stats.json."""
    from .scoreboard import cell, columns, notes_line, warnings

    rows = view.evals
    if not rows:
        return "<p class='missing'>No model evaluated yet (eval.enabled, or humpback eval RUN_DIR).</p>"
    e = html.escape
    cols = columns(rows)
    head = "<tr>" + "".join(f"<th>{e(t)}</th>" for _, t in cols) + "</tr>"
    body = "".join("<tr>" + "".join(f"<td data-key='{e(k)}'>{e(cell(r, k))}</td>" for k, _ in cols) + "</tr>"
                   for r in rows)
    notes = "".join(f"<p class='missing'>{e(w)}</p>" for w in warnings(rows))
    return f"<p>{e(notes_line(rows))}</p><table class='eval'>{head}{body}</table>{notes}"


def _summary_table(view: RunView) -> str:
    cols = [("candidates", "candidates"), ("scored", "scored"), ("parse_failures", "parse failures"),
            ("parse_failure_rate", "parse-failure rate"), ("selection", "selection rule"), ("curated", "curated"),
            ("acceptance_rate", "acceptance rate"), ("expected_score_mean", "mean expected score"),
            ("value_mean", "mean judge value"), ("judge_health/choice_mass_mean", "judge choice mass"),
            ("judge_health/top_score_share", "most common score share"), ("judge_health/warnings", "health warnings"),
            ("dev/precision", "dev precision"), ("dev/recall", "dev recall"), ("dev/f1", "dev F1"),
            ("instruction_chars_median", "median instruction chars"), ("output_chars_median", "median output chars"),
            ("train_examples", "train examples"), ("train_loss", "final loss")]
    rows = ["<tr><th>iteration</th>" + "".join(f"<th>{html.escape(t)}</th>" for _, t in cols) + "</tr>"]
    for it in view.iterations:
        rows.append(f"<tr><td>{it.k}</td>" + "".join(f"<td>{_fmt(it.figures.get(k))}</td>" for k, _ in cols) + "</tr>")
    return "<table>" + "".join(rows) + "</table>"


def _judges(view: RunView) -> str:
    judges = [f"{it.k}: {it.figures['judge']}" for it in view.iterations if it.figures.get("judge")]
    return "; ".join(judges) or "none yet"


def _principles_tables(view: RunView) -> str:
    cols = [("principle", "principle"), ("answer", "desired answer"), ("weight", "weight"),
            ("mean_log_odds", "mean signed log-odds"), ("fails", "pairs failing it"),
            ("rejected_failing", "rejected pairs failing it"), ("worst_of_rejected", "worst principle of rejected pairs"),
            ("failures", "no yes/no token")]
    out = []
    for it in view.iterations:
        if not it.principles:
            continue
        rows = ["<tr>" + "".join(f"<th>{html.escape(t)}</th>" for _, t in cols) + "</tr>"]
        rows += ["<tr>" + "".join(f"<td>{_fmt(p.get(k))}</td>" for k, _ in cols) + "</tr>" for p in it.principles]
        out.append(f"<h3>Iteration {it.k}</h3><table class='principles'>{''.join(rows)}</table>")
    return "".join(out)


def _self_instruct_table(view: RunView) -> str:
    """Self-Instruct: what each filter removed, for tasks and for instances."""
    tasks = view.stages.get("tasks", {}).get("stats") or {}
    augment = view.stages.get("augment", {}).get("stats") or {}
    if not tasks:
        return ""
    rows = [("tasks", k, v) for k, v in tasks.get("rejected", {}).items()]
    rows += [("tasks", k, tasks.get(k)) for k in ("unfinished_responses", "empty_responses", "stopped")]
    rows += [("classification", k, v) for k, v in (augment.get("classification") or {}).items()]
    rows += [("instances", k, v) for k, v in (augment.get("rejected") or {}).items()]
    rows += [("instances", k, augment.get(k)) for k in ("unparsed_tasks", "bare_output_tasks") if k in augment]
    body = "".join(f"<tr><td>{html.escape(a)}</td><td>{html.escape(b)}</td><td>{_fmt(v)}</td></tr>" for a, b, v in rows)
    return ("<details open><summary>Self-Instruct filters (removed by each)</summary><table><tr><th>step</th>"
            f"<th>filter</th><th>removed</th></tr>{body}</table></details>")


def _funnel_table(view: RunView) -> str:
    if view.stages.get("tasks"):
        return _self_instruct_table(view)
    if not view.funnel:
        return ""
    rows = "".join(f"<tr><td>{html.escape(str(k))}</td><td>{_fmt(v)}</td></tr>" for k, v in view.funnel.items())
    return f"<details><summary>Funnel details (removed by each filter)</summary><table>{rows}</table></details>"


def _pairs_table(pairs: list[dict]) -> str:
    e = html.escape
    rows = ["<tr><th>score</th><th>expected</th><th>value</th><th>instruction</th><th>output</th><th>judge</th></tr>"]
    for p in pairs:
        score = p["score"] if p["parse_status"] == "ok" else f"{p['parse_status']}"
        rows.append(f"<tr><td>{e(str(score))}</td><td>{_fmt(p['expected_score'])}</td><td>{_fmt(p.get('value'))}</td>"
                    f"<td class='text'>{e(p['instruction'])}</td><td class='text'>{_long(p['output'])}</td>"
                    f"<td class='text'>{_long(p['judge'] or '')}</td></tr>")
    return "<table class='pairs'>" + "".join(rows) + "</table>"


def _metrics_table(metrics: list[dict], k: int) -> str:
    rows = [m for m in metrics if m.get("iteration") == k and not str(m.get("name", "")).endswith("train/loss")]
    if not rows:
        return ""
    body = "".join(f"<tr><td>{html.escape(str(m['stage']))}</td><td>{html.escape(str(m['name']))}</td>"
                   f"<td>{_fmt(m['value'])}</td></tr>" for m in rows)
    return (f"<details><summary>Every figure logged for iteration {k} (metrics.jsonl, eval included)</summary>"
            f"<table><tr><th>stage</th><th>name</th><th>value</th></tr>{body}</table></details>")


def _long(text: str, limit: int = 400) -> str:
    e = html.escape
    if len(text) <= limit:
        return e(text)
    return f"<details><summary>{e(text[:limit])}...</summary>{e(text)}</details>"


def _fmt(value: Any) -> str:
    if value is None:
        return "<span class='missing'>-</span>"
    if isinstance(value, float):
        return f"{value:.3f}" if not value.is_integer() else f"{value:g}"
    return html.escape(str(value))


_CSS = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1em; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.5em; vertical-align: top; text-align: right; }
td.text { text-align: left; white-space: pre-wrap; max-width: 28em; }
.pairs td { font-size: 0.85em; }
img.plot { display: block; max-width: 100%; margin: 0.5em 0; }
.missing { color: #a33; }
.warning { background: #fff3cd; border: 1px solid #e0b84c; padding: 0.3em 0.8em; margin: 0.5em 0; }
code { background: #f4f4f4; padding: 0 0.2em; }
"""

# Marks the page once its plots have decoded (a headless browser test reads the mark).
_JS = """
window.addEventListener('load', function () {
  var imgs = Array.prototype.slice.call(document.querySelectorAll('img.plot'));
  var ok = imgs.filter(function (i) { return i.complete && i.naturalWidth > 0; }).length;
  document.body.setAttribute('data-plots-rendered', ok + '/' + imgs.length);
});
"""
