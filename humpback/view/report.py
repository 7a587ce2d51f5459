"""``humpback report``: one self-contained HTML file that shows a run, iteration by iteration.

Figures come from :mod:`humpback.view.read` (the run folder only). The plots (:mod:`humpback.view.plots`)
are embedded as base64 PNG; the numbers each plot was drawn from sit beside it (``data-values``, bar
heights read back from the figure), so the report can be checked against the run.
"""

from __future__ import annotations

import base64
import html
import json
import time
from pathlib import Path
from typing import Any, Optional

from .. import layout
from ..errors import StoreError
from ..store import write_text
from ..review.summary import report_section as review_section
from .plots import Plot, plots
from .read import IterationView, RunView, read_run, sample_pairs


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
    warnings = [f"iteration {it.k} judge: {w}"
                for it in view.iterations for w in it.figures.get("judge_warnings") or []]
    if warnings:
        parts.append("<div class='warning'>" + "".join(f"<p><b>WARNING</b> {e(w)}</p>" for w in warnings) + "</div>")
    by_name = {p.name: p for p in figures}
    parts.append("<h2>Did it get better?</h2>" + _eval_table(view) + _img(by_name.get("eval")))
    parts.append("<h2>Per-iteration summary</h2>" + _summary_table(view))
    if by_name.get("judges") or any(j["role"] == "compared" for it in view.iterations for j in it.judges):
        parts.append("<h2>Judges: how well each separates the dev set's good pairs from its bad ones</h2>"
                     + _judges_table(view) + _img(by_name.get("judges")))
    parts.append(review_section(view.run_dir))  # humpback review's decisions: empty when nobody reviewed
    sections = [("funnel", "Filter funnel", _funnel_table(view)),
                ("score_histograms", "Score histograms (each iteration's judge: " + _judges(view) + ")", ""),
                ("rates", _rates_title(by_name.get("rates")), ""),
                ("lengths", "Instruction and output lengths (candidate pool and each curated set)", ""),
                ("losses", "Training loss curves", "")]
    if any(it.dpo_curve for it in view.iterations):
        sections.append(("dpo", "DPO: loss, reward margin and reward accuracy per step (train.objective dpo)", ""))
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
            parts.append(f"<h3>{label}: {len(sample)} of {total}</h3>" + _pairs_table(sample, it))
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
            f"data-values='{e(json.dumps(plot.data))}' data-marks='{e(json.dumps(plot.marks))}' "
            f"src='data:image/png;base64,{b64}'>")


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
    return f"<p>{e(notes_line(rows))}</p>" + _wide(f"<table class='eval'>{head}{body}</table>") + notes


def _summary_table(view: RunView) -> str:
    """One row per figure, one column per iteration (it fits the page however many figures a run has);
    a figure no iteration has (DPO figures of an SFT run, a rating judge's expected score in a run
    judged by likelihood) is left out."""
    cols = [("candidates", "candidates"), ("scored", "scored"), ("parse_failures", "parse failures"),
            ("parse_failure_rate", "parse-failure rate"), ("selection", "selection rule"), ("curated", "curated"),
            ("acceptance_rate", "acceptance rate"), ("expected_score_mean", "mean expected score"),
            ("value_mean", "mean judge value"), ("judge_health/choice_mass_mean", "judge choice mass"),
            ("judge_health/top_score_share", "most common score share"), ("judge_health/warnings", "health warnings"),
            ("dev/precision", "dev precision"), ("dev/recall", "dev recall"), ("dev/f1", "dev F1"),
            ("instruction_chars_median", "median instruction chars"), ("output_chars_median", "median output chars"),
            ("train_examples", "train examples"), ("train_loss", "final loss"),
            ("preferences/pairs", "preference pairs"), ("preferences/tie", "tied prompts"),
            ("dpo/loss", "DPO loss"), ("dpo/reward_accuracy", "DPO reward accuracy"),
            ("dpo/reward_margin", "DPO reward margin")]
    its = view.iterations
    cols = [(k, t) for k, t in cols if any(it.figures.get(k) is not None for it in its)]
    if not its or not cols:
        return "<p class='missing'>No iteration has figures yet.</p>"
    head = "<tr><th>figure</th>" + "".join(f"<th>iteration {it.k}</th>" for it in its) + "</tr>"
    rows = [f"<tr><th class='name'>{html.escape(t)}</th>" + "".join(f"<td data-key='{html.escape(k)}'>"
                                                                    f"{_fmt(it.figures.get(k))}</td>" for it in its)
            + "</tr>" for k, t in cols]
    return _wide(f"<table class='summary'>{head}{''.join(rows)}</table>")


def _judges_table(view: RunView) -> str:
    """Each iteration's judges: health, dev-set AUC with its interval (with a dev set), agreement with the
    selecting judge (for a compared judge)."""
    from .run_summary import health_cell

    records = [(it.k, j) for it in view.iterations for j in it.judges]
    cols = [("iteration", "iteration"), ("judge", "judge"), ("role", "role"), ("health", "health")]
    if any((j.get("dev_auc") or {}).get("auc") is not None for _, j in records):
        cols += [("auc", "dev AUC [95% CI]"), ("pairs", "dev pairs")]
    if any(j.get("versus") for _, j in records):
        cols += [("spearman", "Spearman vs selecting judge"), ("same", "keeps the same")]
    rows = ["<tr>" + "".join(f"<th>{html.escape(t)}</th>" for _, t in cols) + "</tr>"]
    for k, j in records:
        auc, vs = j.get("dev_auc") or {}, j.get("versus") or {}
        cells = {"iteration": k, "judge": j["judge_kind"], "role": j["role"], "health": health_cell(j.get("health")),
                 "auc": None if auc.get("auc") is None else
                 f"{auc['auc']:.3f} [{auc.get('low', 0):.3f}, {auc.get('high', 0):.3f}]",
                 "pairs": auc.get("pairs"), "spearman": vs.get("spearman"),
                 "same": f"{vs['kept_by_both']} of {vs['keep']}" if vs else None}
        rows.append("<tr>" + "".join(f"<td>{_fmt(cells[key])}</td>" for key, _ in cols) + "</tr>")
    return _wide("<table class='judges'>" + "".join(rows) + "</table>")


def _rates_title(plot: Optional[Plot]) -> str:
    """The rates section's title: what its plot draws."""
    names = [n.replace("_", " ") for n in (plot.data if plot else {}) if n != "iterations"]
    return "Rates per iteration: " + ", ".join(names) if names else "Acceptance and parse-failure rates"


def _wide(table: str) -> str:
    """A table in a box of its own that scrolls sideways when the table is wider than the page."""
    return f"<div class='wide'>{table}</div>"


def _judges(view: RunView) -> str:
    judges = [f"{it.k}: {it.figures['judge']}" for it in view.iterations if it.figures.get("judge")]
    return "; ".join(judges) or "none yet"


def _principles_tables(view: RunView) -> str:
    cols = [("principle", "principle"), ("answer", "desired answer"), ("weight", "weight"),
            ("mean_log_odds", "mean signed log-odds"), ("fails", "pairs failing it"),
            ("rejected_failing", "rejected pairs failing it"),
            ("worst_of_rejected", "worst principle of rejected pairs"),
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
    body = "".join(f"<tr><td>{html.escape(a)}</td><td>{html.escape(b)}</td><td>{_fmt(v)}</td></tr>"
                   for a, b, v in rows)
    return ("<details open><summary>Self-Instruct filters (removed by each)</summary><table><tr><th>step</th>"
            f"<th>filter</th><th>removed</th></tr>{body}</table></details>")


def _funnel_table(view: RunView) -> str:
    if view.stages.get("tasks"):
        return _self_instruct_table(view)
    if not view.funnel:
        return ""
    rows = "".join(f"<tr><td>{html.escape(str(k))}</td><td>{_fmt(v)}</td></tr>" for k, v in view.funnel.items())
    return ("<details><summary>Funnel details (removed by each filter)</summary>"
            f"{_wide(f'<table>{rows}</table>')}</details>")


def _pairs_table(pairs: list[dict], it: IterationView) -> str:
    """Sampled pairs with the columns their judge has (:mod:`.judged`), then instruction and output."""
    from .judged import judge_cells, judge_columns

    e = html.escape
    kind = it.figures.get("judge_kind") or next((p["judge_kind"] for p in it.pairs if p.get("judge_kind")), "rating")
    cols = judge_columns(kind, sorted({p["mode"] for p in it.pairs if p.get("mode")}), it.principles)
    text_cols = [k for k, _ in cols if k == "text"]  # a rating judge's written judgement: after the pair
    cols = [c for c in cols if c[0] not in text_cols]
    head = "".join(f"<th class='judged'>{e(t)}</th>" for _, t in cols) + "<th>instruction</th><th>output</th>"
    head += "".join("<th>judge's answer</th>" for _ in text_cols)
    rows = [f"<tr>{head}</tr>"]
    for p in pairs:
        cells = judge_cells(p, kind, it.principles)
        judged = "".join(f"<td class='{c}'>{e(v)}</td>" for v, c in (cells[k] for k, _ in cols))
        rows.append(f"<tr>{judged}<td class='text'>{e(p['instruction'])}</td>"
                    f"<td class='text'>{_long(p['output'])}</td>"
                    + "".join(f"<td class='text'>{_long(cells[k][0])}</td>" for k in text_cols) + "</tr>")
    return _wide(f"<table class='pairs' data-judge='{e(kind)}'>" + "".join(rows) + "</table>")


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
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px; padding: 0 1em; color: #222; }
h1, h2, h3, p, summary { overflow-wrap: anywhere; }
.wide { max-width: 100%; overflow-x: auto; margin: 0.5em 0 1em; }
table { border-collapse: collapse; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.5em; vertical-align: top; text-align: right; }
th.name { text-align: left; font-weight: normal; }
td.text { text-align: left; white-space: pre-wrap; overflow-wrap: anywhere; min-width: 12em; }
table.pairs { width: 100%; }
.pairs td { font-size: 0.85em; }
.pairs th, table.summary th:first-child { text-align: left; }
.pairs td:not(.text) { white-space: nowrap; width: 1%; }
.pairs th.judged { min-width: 6em; }
td.ok { color: #1a7f37; }
td.bad { color: #b42318; }
img.plot { display: block; max-width: 100%; height: auto; margin: 0.5em 0; }
.missing { color: #a33; }
.warning { background: #fff3cd; border: 1px solid #e0b84c; padding: 0.3em 0.8em; margin: 0.5em 0; }
code { background: #f4f4f4; padding: 0 0.2em; overflow-wrap: anywhere; }
"""

# Marks the page once its plots have decoded (a headless browser test reads the mark).
_JS = """
window.addEventListener('load', function () {
  var imgs = Array.prototype.slice.call(document.querySelectorAll('img.plot'));
  var ok = imgs.filter(function (i) { return i.complete && i.naturalWidth > 0; }).length;
  document.body.setAttribute('data-plots-rendered', ok + '/' + imgs.length);
});
"""
