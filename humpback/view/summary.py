"""The per-iteration summary ``humpback run`` prints at the end, from the iterations' figures."""

from __future__ import annotations

from pathlib import Path

from .. import layout


def format_summary(summaries: list[dict], run_dir: Path) -> str:
    """One row per iteration (its ``iter_K/stats.json``), the judge-health warnings, then the run folder
    and the report."""
    dev = any(s.get("dev") for s in summaries)
    head = (f"{'iter':>4} {'segments':>8} {'cands':>6} {'parse_fail':>10} {'curated':>7} {'loss':>7}  "
            f"{'scores 1/2/3/4/5':<18} {'judge health':<22}" + (f" {'dev P/R':<11}" if dev else "") + " selection")
    lines = ["", "Per-iteration summary", head]
    for s in summaries:
        h = s.get("score_histogram") or {}
        hist = "/".join(str(h.get(str(i), 0)) for i in range(1, 6))
        if s.get("judge_kind", "rating") != "rating":  # no 1-5 scores: the judge's mean value instead
            hist = f"mean {s['value_mean']:.3f}" if s.get("value_mean") is not None else "-"
        loss = f"{s['train_loss']:.3f}" if s.get("train_loss") is not None else "-"
        row = (f"{s['iteration']:>4} {_n(s.get('segments')):>8} {_n(s.get('candidates')):>6} "
               f"{_n(s.get('parse_failures')):>10} {_n(s.get('curated')):>7} {loss:>7}  {hist:<18} "
               f"{health_cell(s.get('judge_health')):<22}")
        if dev:
            row += f" {dev_cell(s.get('dev')):<11}"
        lines.append(row + f" {s.get('selection') or '-'}")
    warnings = warning_lines(summaries)
    if warnings:
        lines += [""] + warnings
    lines.append(f"\nRun folder: {run_dir}")
    if (Path(run_dir) / layout.REPORT).exists():
        lines.append(f"Report: {Path(run_dir) / layout.REPORT}")
    return "\n".join(lines)


def health_cell(health: dict | None) -> str:
    """``ok mass 0.97 top 0.41`` or ``WARN mass 0.00 top 1.00``: the judge-health figures in brief."""
    if not health:
        return "-"
    parts = ["WARN" if health.get("warnings") else "ok"]
    if health.get("choice_mass_mean") is not None:
        parts.append(f"mass {health['choice_mass_mean']:.2f}")
    if health.get("top_score_share") is not None:
        parts.append(f"top {health['top_score_share']:.2f}")
    if health.get("parse_failure_rate"):
        parts.append(f"fail {health['parse_failure_rate']:.2f}")
    return " ".join(parts)


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
