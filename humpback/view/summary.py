"""The end-of-run summary ``humpback run`` prints: the "Did it get better?" table of every evaluated model
(:mod:`.scoreboard`), then one row per iteration from the iterations' figures."""

from __future__ import annotations

from pathlib import Path

from .. import layout


def format_summary(summaries: list[dict], run_dir: Path) -> str:
    """The eval table ("Did it get better?"), one row per iteration (its ``iter_K/stats.json``), then the
    run folder and the report. The
    selection rule is a column when it differs between iterations, else one line under the table, so
    that the table fits an 80-column terminal."""
    rules = {s.get("selection") or "-" for s in summaries}
    per_row = len(rules) > 1
    head = (f"{'iter':>4} {'segments':>8} {'cands':>6} {'parse_fail':>10} {'curated':>7} {'loss':>7}  "
            f"{'scores 1/2/3/4/5':<18}" + (" selection" if per_row else ""))
    from .scoreboard import format_eval_table, read_evals

    lines = [format_eval_table(read_evals(Path(run_dir))), "", "Per-iteration summary", head.rstrip()]
    for s in summaries:
        h = s.get("score_histogram") or {}
        hist = "/".join(str(h.get(str(i), 0)) for i in range(1, 6))
        loss = f"{s['train_loss']:.3f}" if s.get("train_loss") is not None else "-"
        row = (f"{s['iteration']:>4} {_n(s.get('segments')):>8} {_n(s.get('candidates')):>6} "
               f"{_n(s.get('parse_failures')):>10} {_n(s.get('curated')):>7} {loss:>7}  {hist:<18}")
        lines.append((row + (f" {s.get('selection') or '-'}" if per_row else "")).rstrip())
    if summaries and not per_row:
        lines.append(f"selection: {rules.pop()}")
    lines.append(f"\nRun folder: {run_dir}")
    if (Path(run_dir) / layout.REPORT).exists():
        lines.append(f"Report: {Path(run_dir) / layout.REPORT}")
    return "\n".join(lines)


def _n(value) -> str:
    return "-" if value is None else str(value)
