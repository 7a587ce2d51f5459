"""The end-of-run summary ``humpback run`` prints: the "Did it get better?" table of every evaluated model
(:mod:`.scoreboard`), then one row per iteration from the iterations' figures."""

from __future__ import annotations

from pathlib import Path

from .. import layout


def format_summary(summaries: list[dict], run_dir: Path) -> str:
    """The eval table ("Did it get better?"), one row per iteration (its ``iter_K/stats.json``), the
    judge-health warnings, then the run folder and the report. The selection rule is a column when it
    differs between iterations, else one line under the table, so that the table fits an 80-column
    terminal; the judge column says ``ok`` or ``WARN``, and each warning gets a line of its own."""
    rules = {s.get("selection") or "-" for s in summaries}
    per_row = len(rules) > 1
    dev = any(s.get("dev") for s in summaries)
    head = (f"{'iter':>4} {'segments':>8} {'cands':>6} {'fails':>5} {'curated':>7} {'loss':>7}  {'scores 1/2/3/4/5':<18} "
            f"{'judge':<5}" + (f" {'dev P/R':<9}" if dev else "") + (" selection" if per_row else ""))
    from .scoreboard import format_eval_table, read_evals

    lines = [format_eval_table(read_evals(Path(run_dir))), "", "Per-iteration summary", head.rstrip()]
    for s in summaries:
        h = s.get("score_histogram") or {}
        hist = "/".join(str(h.get(str(i), 0)) for i in range(1, 6))
        if s.get("judge_kind", "rating") != "rating":  # no 1-5 scores: the judge's mean value instead
            hist = f"mean {s['value_mean']:.3f}" if s.get("value_mean") is not None else "-"
        loss = f"{s['train_loss']:.3f}" if s.get("train_loss") is not None else "-"
        row = (f"{s['iteration']:>4} {_n(s.get('segments')):>8} {_n(s.get('candidates')):>6} "
               f"{_n(s.get('parse_failures')):>5} {_n(s.get('curated')):>7} {loss:>7}  {hist:<18} "
               f"{health_cell(s.get('judge_health')):<5}")
        if dev:
            row += f" {dev_cell(s.get('dev')):<9}"
        lines.append((row + (f" {s.get('selection') or '-'}" if per_row else "")).rstrip())
    if summaries and not per_row:
        lines.append(f"selection: {rules.pop()}")
    warnings = warning_lines(summaries)
    if warnings:
        lines += [""] + warnings
    lines.append(f"\nRun folder: {run_dir}")
    if (Path(run_dir) / layout.REPORT).exists():
        lines.append(f"Report: {Path(run_dir) / layout.REPORT}")
    return "\n".join(lines)


def health_cell(health: dict | None) -> str:
    """``ok``, or ``WARN`` when a judge-health figure is past its threshold (:mod:`humpback.judges.health`)."""
    if not health:
        return "-"
    return "WARN" if health.get("warnings") else "ok"


def dev_cell(dev: dict | None) -> str:
    if not dev:
        return "-"
    p, r = dev.get("precision"), dev.get("recall")
    return f"{_f(p)}/{_f(r)}"


def warning_lines(summaries: list[dict]) -> list[str]:
    """One ``WARNING`` line per judge-health warning of each iteration."""
    return [f"WARNING: iteration {s['iteration']} judge: {w}"
            for s in summaries for w in (s.get("judge_health") or {}).get("warnings") or []]


def _f(x) -> str:
    return "-" if x is None else f"{x:.2f}"


def _n(value) -> str:
    return "-" if value is None else str(value)
