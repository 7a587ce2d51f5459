"""Reviewed pairs as a labelled dev set for the judge: how each iteration's selection agrees with the
reviewer. Pure functions of rows, and one reader of the run folder.

A reviewed pair is a positive when the reviewer kept it (``accept`` or ``edit``: an edited pair is kept
with the reviewer's instruction) and a negative when the reviewer rejected it. The judge's selection is
iteration K's own rule applied to iteration K's saved scores (as ``select`` applied it, before any review
decision), so the figures say how the judge did, also in a run whose curated sets already honour the
decisions. Against those labels: precision, recall and F1 (as ``curate.dev_set`` reports them) and the
agreement, the share of reviewed pairs where the judge's keep-or-drop matches the reviewer's, with its
95% Wilson interval. Stale decisions (the pair was generated again since) are left out and counted.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

from .. import layout
from ..evaluation.exact import wilson_interval
from ..judges.health import selection_quality
from ..scoring import select
from .decisions import KEEPS, effective, pair_sha256, read_decisions


class _Rule:
    """What :func:`humpback.scoring.select` reads of a ``CurateConfig``, from a recorded selection rule."""

    def __init__(self, rule: dict):
        self.select = rule["select"]
        self.threshold = rule.get("threshold")
        self.top_fraction = rule.get("top_fraction")
        self.top_k = rule.get("top_k")
        self._field = rule["score_field"]

    def score_field(self) -> str:
        return self._field


def judge_selection(candidates: list[dict], scores: list[dict], rule: dict) -> set[str]:
    """The ids the judge's rule keeps from its saved scores (iteration K's A(K) before any review)."""
    return {r["candidate_id"] for r in select(candidates, scores, _Rule(rule))}


def current_hashes(candidates: list[dict]) -> dict[str, str]:
    return {c["candidate_id"]: pair_sha256(c["instruction"], c["output"]) for c in candidates}


def fresh(decided: dict[str, dict], hashes: dict[str, str]) -> tuple[dict[str, dict], int]:
    """(the decisions about pairs as they are now, how many are stale: the pair is gone or was rewritten)."""
    kept = {cid: d for cid, d in decided.items() if hashes.get(cid) == d["pair_sha256"]}
    return kept, len(decided) - len(kept)


def review_quality(decided: dict[str, dict], selected: set[str]) -> dict:
    """The judge's selection against the reviewer's verdicts over the reviewed pairs ``decided``."""
    ids = sorted(decided)
    positive = [KEEPS[decided[i]["verdict"]] for i in ids]
    chosen = [i in selected for i in ids]
    agreeing = sum(p == s for p, s in zip(positive, chosen))
    lo, hi = wilson_interval(agreeing, len(ids))
    return {**selection_quality(positive, chosen), "agreeing": agreeing,
            "agreement": agreeing / len(ids) if ids else None, "agreement_ci": [lo, hi]}


def iteration_quality(run_dir: Path, decisions: Optional[list[dict]] = None) -> list[dict]:
    """Per iteration whose selection is recorded: ``{"iteration", "judge", "rule", **review_quality,
    "stale"}`` over the run's reviewed pairs. Empty without decisions or candidates."""
    from ..view.read import table

    run_dir = Path(run_dir)
    decisions = read_decisions(run_dir) if decisions is None else decisions
    candidates = table(run_dir, layout.CANDIDATES)
    if not decisions or candidates is None:
        return []
    decided, stale = fresh(effective(decisions), current_hashes(candidates))
    manifest = run_dir / layout.MANIFEST
    stages = json.loads(manifest.read_text()).get("stages", {}) if manifest.exists() else {}
    out = []
    for k in layout.iterations_on_disk(run_dir):
        it = layout.iteration(k)
        rule = (stages.get(it.stage("select"), {}).get("stats") or {}).get("rule")
        scores = table(run_dir, it.scores)
        if rule is None or scores is None:
            continue
        judge = (stages.get(it.stage("score"), {}).get("stats") or {}).get("judge") or \
            ", ".join(sorted({s["judge"] for s in scores if s.get("judge")}))
        out.append({"iteration": k, "judge": judge, "rule": rule, "stale": stale,
                    **review_quality(decided, judge_selection(candidates, scores, rule))})
    return out
