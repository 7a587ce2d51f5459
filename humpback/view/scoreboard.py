""""Did it get better?": one row per evaluated model of a run (base, M0, M_1..M_N), read from their eval
``stats.json`` files, as the text table the end-of-run summary and ``humpback eval`` print. The HTML
report draws the same rows (:mod:`.report`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

from .. import layout

TITLE = "Did it get better?"


def read_evals(run_dir: Path) -> list[dict]:
    """The eval stats of every model that has them, in training order (base, m0, iter_1, ...)."""
    run_dir = Path(run_dir)
    labels = [layout.BASE, "m0"] + [layout.iteration(k).dir for k in layout.iterations_on_disk(run_dir)]
    rows = []
    for label in labels:
        path = run_dir / layout.evaluation(label).stats
        try:
            rows.append(json.loads(path.read_text()))
        except (OSError, json.JSONDecodeError):
            continue
    return rows


def columns(rows: list[dict]) -> list[tuple[str, str]]:
    """(key, heading) of the table's columns: those some model has a value for (a run without held-out
    pairs has no loss column, one without pairwise judging no win-rate columns)."""
    cols = [("model", "model"), ("heldout_loss", "held-out loss"), ("reference", "vs"),
            ("win_rate", "win rate [95% CI]"), ("lc_win_rate", "LC win rate"),
            ("position_consistency", "pos. consistency"), ("answer_chars_mean", "answer chars (x M0)"),
            ("exact_match", "exact match [95% CI]")]
    cols += [(f"lm_eval/{name}", name) for name in lm_eval_names(rows)]
    return [(key, heading) for key, heading in cols if key == "model" or any(cell(r, key) != "-" for r in rows)]


def lm_eval_names(rows: list[dict]) -> list[str]:
    return sorted({name for r in rows for name in (r.get("lm_eval") or {})})


def cell(row: dict, key: str) -> str:
    """A row's value for a column, as the tables print it."""
    if key == "model":
        return row["model"]
    if key == "reference":
        ref = row.get("reference")
        return "-" if ref is None else "ref. outputs" if ref == "outputs" else ref
    if key == "win_rate":
        return _with_ci(row.get("win_rate"), row.get("win_rate_ci"))
    if key == "exact_match":
        return _with_ci(row.get("exact_match"), row.get("exact_match_ci"))
    if key == "answer_chars_mean":
        chars = row.get("answer_chars_mean")
        if chars is None:
            return "-"
        ratio = f" (x{row['length_ratio']:.2f})" if row.get("length_ratio") is not None else ""
        return f"{chars:.0f}{ratio}" + (" DRIFT" if row.get("length_drift") else "")
    if key.startswith("lm_eval/"):
        return _num((row.get("lm_eval") or {}).get(key[len("lm_eval/"):]))
    return _num(row.get(key))


def format_eval_table(rows: list[dict]) -> str:
    """The text table, with a line on the judge and a line per warning; empty when nothing was evaluated."""
    if not rows:
        return ""
    cols = columns(rows)
    cells = [[heading for _, heading in cols]] + [[cell(r, key) for key, _ in cols] for r in rows]
    widths = [max(len(line[i]) for line in cells) for i in range(len(cols))]
    lines = ["", TITLE, notes_line(rows)]
    for n, line in enumerate(cells):
        lines.append("  ".join(v.ljust(w) if i == 0 else v.rjust(w) for i, (v, w) in enumerate(zip(line, widths))))
    lines += [f"  ! {w}" for w in warnings(rows)]
    return "\n".join(lines)


def notes_line(rows: list[dict]) -> str:
    judges = sorted({f"{r['judge']} ({r.get('judge_mode')})" for r in rows if r.get("judge")})
    n = max((r.get("answers") or 0) for r in rows)
    judged = f"judge {', '.join(judges)}, both orders" if judges else "no pairwise judging"
    pairs = max((r.get("heldout_pairs") or 0) for r in rows)
    loss = f"loss on {pairs} held-out pairs" if pairs else "no held-out seed pairs, no held-out loss"
    return f"{n} eval prompts; {judged}; {loss}"


def warnings(rows: list[dict]) -> list[str]:
    out = []
    for r in rows:
        if r.get("length_drift"):
            out.append(f"{r['model']}: answers {r['length_ratio']:.2f}x as long as M0's (length drift)")
    low = [r["model"] for r in rows if r.get("position_consistency") is not None and r["position_consistency"] < 0.5]
    if low:
        out.append(f"position consistency below 0.5 for {', '.join(low)}: the judge mostly follows the answer order")
    return out


def _with_ci(value: Optional[float], ci: Optional[list]) -> str:
    if value is None:
        return "-"
    lo, hi = (ci or [None, None])[:2]
    return f"{value:.3f} [{_num(lo)}, {_num(hi)}]" if lo is not None else f"{value:.3f}"


def _num(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)
