"""The end-of-run summary ``humpback run`` prints: the "Did it get better?" table of every evaluated model
(:mod:`.scoreboard`), then one row per iteration from the iterations' figures."""

from __future__ import annotations

from pathlib import Path

from .. import layout


def format_summary(summaries: list[dict], run_dir: Path) -> str:
    """The eval table, one row per iteration (its ``iter_K/stats.json``), then the run folder and the report."""
    from .scoreboard import format_eval_table, read_evals

    head = (f"{'iter':>4} {'segments':>8} {'cands':>6} {'parse_fail':>10} {'curated':>7} {'loss':>7}  "
            f"{'scores 1/2/3/4/5':<18} selection")
    lines = [format_eval_table(read_evals(Path(run_dir))), "", "Per-iteration summary", head]
    for s in summaries:
        h = s.get("score_histogram") or {}
        hist = "/".join(str(h.get(str(i), 0)) for i in range(1, 6))
        loss = f"{s['train_loss']:.3f}" if s.get("train_loss") is not None else "-"
        lines.append(f"{s['iteration']:>4} {_n(s.get('segments')):>8} {_n(s.get('candidates')):>6} "
                     f"{_n(s.get('parse_failures')):>10} {_n(s.get('curated')):>7} {loss:>7}  {hist:<18} "
                     f"{s.get('selection') or '-'}")
    lines.append(f"\nRun folder: {run_dir}")
    if (Path(run_dir) / layout.REPORT).exists():
        lines.append(f"Report: {Path(run_dir) / layout.REPORT}")
    return "\n".join(lines)


def _n(value) -> str:
    return "-" if value is None else str(value)
