"""Which pairs a reviewer reads, in which order: a sample of iteration K's scored candidates.

- ``threshold`` (the default): stratified by the judge's selection. The pairs the judge kept and those it
  dropped are two strata, each ordered by how close the pair's score is to the selection cutoff (ties in
  a seeded random order), and the strata alternate: the pairs nearest the threshold, on either side, are
  read first. Pairs without a usable score come last.
- ``random``: a seeded random order.

``part=(i, n)`` keeps the pairs whose id hashes to part i of n, so that n reviewers started with the same
options and parts 0..n-1 read disjoint samples. Each item carries what the page shows: the segment (the
pair's output), the generated instruction, the judge's scores, its reasoning (a generated judgement),
probabilities (logits mode) or per-principle answers (rubric judge), and whether selection kept it.
"""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from .. import layout
from ..errors import HumpbackError
from ..scoring import SCORE_NAMES, VALUE_NAMES, selection_cutoff, short_rule
from .decisions import pair_sha256
from .judge_text import compared_line, judge_figures, reasoning, selection_line

ORDERS = ("threshold", "random")


@dataclass
class ReviewSample:
    run_dir: Path
    iteration: int
    items: list  # dicts, in reading order
    rule: Optional[dict]  # the iteration's selection rule; None while selection has not run
    cutoff: Optional[float]
    score_field: Optional[str]
    pool: int  # scored candidates the sample was drawn from (after ``part``)
    order: str
    seed: int
    part: tuple = (0, 1)
    judge: str = ""
    extra: dict = field(default_factory=dict)

    def describe(self) -> str:
        rule = short_rule(self.rule) if self.rule else "not selected yet"
        part = f", part {self.part[0] + 1} of {self.part[1]}" if self.part[1] > 1 else ""
        return (f"iteration {self.iteration}: {len(self.items)} of {self.pool} scored pairs{part}, "
                f"{'nearest the threshold first' if self.order == 'threshold' else 'random order'} "
                f"(seed {self.seed}); "
                f"selection: {rule}")


def parse_part(text: str) -> tuple[int, int]:
    """``"2/3"`` -> (1, 3): the second of three disjoint parts (numbered from 1 on the command line)."""
    try:
        i, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise HumpbackError(f"--part {text!r}: expected I/N, e.g. 1/2 (the first of two disjoint samples)") from None
    if not 1 <= i <= n:
        raise HumpbackError(f"--part {text!r}: I must be between 1 and N")
    return i - 1, n


def in_part(candidate_id: str, part: tuple[int, int]) -> bool:
    i, n = part
    return n == 1 or int(hashlib.sha256(candidate_id.encode()).hexdigest()[:12], 16) % n == i


def load_sample(run_dir: Path, iteration: Optional[int] = None, n: int = 50, order: str = "threshold",
                seed: int = 0, part: tuple[int, int] = (0, 1)) -> ReviewSample:
    """The sample to review, read from the run folder; a folder without candidates or scores, or an
    iteration that has none, is a one-line error."""
    from ..view.read import table

    run_dir = Path(run_dir)
    if order not in ORDERS:
        raise HumpbackError(f"unknown order {order!r}; choose one of {', '.join(ORDERS)}")
    if n < 1:
        raise HumpbackError(f"--sample must be at least 1, got {n}")
    if not (run_dir / layout.MANIFEST).exists():
        raise HumpbackError(f"{run_dir}: not a humpback run folder (no {layout.MANIFEST})")
    candidates = table(run_dir, layout.CANDIDATES)
    if not candidates:
        raise HumpbackError(f"{run_dir}: no candidates to review ({layout.CANDIDATES} is missing or empty: "
                            f"the run has not generated its pairs yet)")
    scored = [k for k in layout.iterations_on_disk(run_dir) if table(run_dir, layout.iteration(k).scores)]
    if not scored:
        raise HumpbackError(f"{run_dir}: no iteration has scored its candidates yet; nothing to review")
    k = scored[-1] if iteration is None else iteration
    if k not in scored:
        raise HumpbackError(f"{run_dir}: iteration {k} has no scores (iterations with scores: "
                            f"{', '.join(map(str, scored))})")
    it = layout.iteration(k)
    stages = json.loads((run_dir / layout.MANIFEST).read_text()).get("stages", {})
    score_stats = stages.get(it.stage("score"), {}).get("stats") or {}
    select_entry = stages.get(it.stage("select"), {})
    rule = (select_entry.get("stats") or {}).get("rule") if select_entry.get("status") == "done" else None
    curated = table(run_dir, it.curated) if rule else None
    scores = {s["candidate_id"]: s for s in table(run_dir, it.scores)}
    field_name = rule["score_field"] if rule else None
    cutoff = selection_cutoff(rule, [c.get(field_name) for c in curated or []]) if rule else None
    kept = {c["candidate_id"] for c in curated} if curated is not None else None
    principles = [p["principle"] for p in (score_stats.get("rubric") or {}).get("principles", [])]
    compared = {kind: {s["candidate_id"]: s for s in table(run_dir, it.compare_scores(kind)) or []}
                for kind, stats in sorted((stages.get(it.stage("compare"), {}).get("stats") or {}).items())
                if isinstance(stats, dict) and "scored" in stats}  # one entry per comparison judge
    pool = [c for c in candidates if c["candidate_id"] in scores and in_part(c["candidate_id"], part)]
    ordered = _order(pool, scores, kept, field_name, cutoff, order, seed)
    items = [_item(c, scores[c["candidate_id"]], kept, field_name, principles) for c in ordered[:n]]
    for i, item in enumerate(items):
        item["index"] = i
        item["judge_lines"] = [
            selection_line(item["selected_value"] if field_name else item["value"], score_name(rule), cutoff,
                           item["kept"]), judge_figures(scores[item["id"]])] + [
            compared_line(kind, rows.get(item["id"])) for kind, rows in compared.items()]
    judge = score_stats.get("judge") or ", ".join(sorted({s["judge"] for s in scores.values() if s.get("judge")}))
    return ReviewSample(run_dir, k, items, rule, cutoff, field_name, len(pool), order, seed, part, judge)


def _order(pool: list[dict], scores: dict, kept: Optional[set], field_name: Optional[str],
           cutoff: Optional[float], order: str, seed: int) -> list[dict]:
    rng = random.Random(seed)
    shuffled = list(pool)
    rng.shuffle(shuffled)
    if order == "random" or field_name is None or cutoff is None:
        return shuffled
    value = lambda c: scores[c["candidate_id"]].get(field_name)  # noqa: E731
    valued = [c for c in shuffled if value(c) is not None]
    near = lambda c: abs(value(c) - cutoff)  # noqa: E731 - stable sort: ties stay in the seeded order
    kept_side = sorted((c for c in valued if c["candidate_id"] in kept), key=near)
    dropped_side = sorted((c for c in valued if c["candidate_id"] not in kept), key=near)
    out = []
    for i in range(max(len(kept_side), len(dropped_side))):
        out += [side[i] for side in (kept_side, dropped_side) if i < len(side)]
    return out + [c for c in shuffled if value(c) is None]


def _item(c: dict, s: dict, kept: Optional[set], field_name: Optional[str], principles: list[str]) -> dict:
    item = {"id": c["candidate_id"], "segment_id": c.get("segment_id"), "instruction": c["instruction"],
            "output": c["output"], "pair_sha256": pair_sha256(c["instruction"], c["output"]),
            "kept": None if kept is None else c["candidate_id"] in kept,
            "judge_kind": s.get("judge_kind") or "rating", "parse_status": s.get("parse_status"),
            "mode": s.get("mode"), "score": s.get("score"), "logits_score": s.get("logits_score"),
            "expected_score": s.get("expected_score"), "value": s.get("value"),
            "selected_on": field_name, "selected_value": s.get(field_name) if field_name else None,
            # a generated judgement's text; a logits, likelihood or rubric row's raw text is its numbers again
            "reasoning": reasoning(s), "probs": s.get("probs")}
    if s.get("principles") is not None:
        item["principles"] = [{"principle": name, "log_odds": v} for name, v in zip(principles, s["principles"])]
    return item


def score_name(rule: Optional[dict]) -> str:
    """What the selection reads, in words (``expected score``, ``rubric score``)."""
    if not rule:
        return "score"
    return rule.get("score_name") or SCORE_NAMES.get(rule["score_field"],
                                                     VALUE_NAMES.get(rule["score_field"], "score"))
