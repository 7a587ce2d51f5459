"""``humpback inspect RUN_DIR --iteration K``: scored pairs in the terminal, for a quick read.

Each pair shows its verdict, what its judge said (a rating judge: score, and expected score in logits
mode, then its text; a likelihood judge: its log-probability figures; a rubric judge: its score, then each
principle's log-odds; a verifier: pass or fail), the instruction and the first lines of the output,
wrapped to the terminal's width.
"""

from __future__ import annotations

import shutil
import textwrap
from pathlib import Path
from typing import Optional

from ..errors import HumpbackError
from .judged import RATING_KINDS, judge_cells, judge_columns
from .read import read_iteration, sample_pairs


def format_pairs(run_dir: Path, k: int, n: int = 5, min_score: Optional[float] = None, seed: int = 0,
                 accepted: Optional[bool] = None, width: Optional[int] = None, output_lines: int = 6) -> str:
    """The text ``humpback inspect`` prints: a header line, then up to ``n`` sampled pairs."""
    it = read_iteration(Path(run_dir), k)
    if not it.pairs:
        missing = "; ".join(it.missing) or "no pairs"
        raise HumpbackError(f"{run_dir}: iteration {k} has no scored pairs yet ({missing})")
    width = width or min(shutil.get_terminal_size((100, 24)).columns, 120)
    pairs = sample_pairs(it.pairs, n, seed, accepted=accepted, min_score=min_score)
    f = it.figures
    kept = sum(p["accepted"] for p in it.pairs)
    which = {None: "", True: " accepted", False: " rejected"}[accepted]
    floor = f" with score >= {min_score:g}" if min_score is not None else ""
    lines = [f"iteration {k}: {len(it.pairs)} scored, {kept} accepted ({f.get('selection') or 'not selected yet'}), "
             f"{f.get('parse_failures', 0)} parse failures; showing {len(pairs)}{which}{floor} (seed {seed})"]
    if f.get("selection_rule"):
        lines.append(f"selection: {f['selection_rule']}")
    for i, p in enumerate(pairs, 1):
        verdict = "ACCEPTED" if p["accepted"] else "rejected"
        kind = p.get("judge_kind") or f.get("judge_kind") or "rating"
        if kind in RATING_KINDS:
            score = str(p["score"]) if p["parse_status"] == "ok" else f"parse failure ({p['parse_status']})"
            expected = f" (expected {p['expected_score']:.2f})" if p["expected_score"] is not None else ""
            said = f"score {score}{expected}"
        else:  # the figures this judge has (humpback.view.judged), not its raw JSON
            cells = judge_cells(p, kind)
            said = ", ".join(f"{heading} {cells[key][0]}"
                             for key, heading in judge_columns(kind, [p.get("mode") or ""])
                             if not key.startswith("principle/"))
        title = f"-- {i}/{len(pairs)}  {verdict}  {said}  [{p['candidate_id']}] "
        lines += ["", title + "-" * max(0, width - len(title))]
        lines += _field("instruction", p["instruction"], width, max_lines=4)
        lines += _field("output", p["output"], width, max_lines=output_lines)
        if kind in RATING_KINDS or kind == "rubric":  # the judge's text; a rubric's: each principle's log-odds
            lines += _field("judge", p["judge"] or "", width, max_lines=4)
    return "\n".join(lines)


def _field(label: str, text: str, width: int, max_lines: int) -> list[str]:
    indent = " " * 13
    out: list[str] = []
    for raw in text.strip().splitlines() or [""]:
        out += textwrap.wrap(raw, width - len(indent), replace_whitespace=False, drop_whitespace=True) or [""]
    more = len(out) - max_lines
    out = out[:max_lines] + ([f"... ({more} more lines)"] if more > 0 else [])
    return [(f"{label + ':':<13}" if j == 0 else indent) + line for j, line in enumerate(out)]

