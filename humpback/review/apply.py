"""Review decisions applied to a curated set A(K): what ``curate.review``, ``replay`` and ``export`` train on
and publish. Pure functions of rows, and one reader of the run folder.

- a rejected pair is dropped, whoever selected it;
- an edited pair keeps its output and takes the reviewer's instruction;
- an accepted (or edited) pair the judge did not select is added when ``force_accepted``.

Stale decisions (the pair was generated again since it was read) are counted and not applied. The
decisions file's sha256 goes with the statistics, so a curated set, a replay and a card say which
decisions they used.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Optional

from .. import layout
from ..errors import HumpbackError
from ..store import atomic_path
from .decisions import counts, decisions_sha256, disagreements, effective, read_decisions
from .quality import current_hashes, fresh, review_quality


def apply_decisions(curated: list[dict], candidates: list[dict], scores: list[dict], decisions: list[dict],
                    force_accepted: bool = False) -> tuple[list[dict], dict]:
    """(A(K) as the reviewers left it, what changed). Rows keep the curated schema; forced-in pairs come
    after the selected ones, in candidate order, with their scores."""
    decided, stale = fresh(effective(decisions), current_hashes(candidates))
    out, dropped, edited = [], 0, 0
    for row in curated:
        d = decided.get(row["candidate_id"])
        if d is not None and d["verdict"] == "reject":
            dropped += 1
            continue
        if d is not None and d["verdict"] == "edit":
            row = {**row, "instruction": d["instruction"]}
            edited += 1
        out.append(row)
    forced = 0
    if force_accepted:
        chosen = {r["candidate_id"] for r in curated}
        by_id = {s["candidate_id"]: s for s in scores}
        for c in candidates:
            d = decided.get(c["candidate_id"])
            if d is None or d["verdict"] == "reject" or c["candidate_id"] in chosen:
                continue
            s = by_id.get(c["candidate_id"], {})
            out.append({"candidate_id": c["candidate_id"], "segment_id": c["segment_id"],
                        "instruction": d["instruction"] if d["verdict"] == "edit" else c["instruction"],
                        "output": c["output"], "score": s.get("score"), "expected_score": s.get("expected_score"),
                        "value": s.get("value")})
            forced += 1
            edited += d["verdict"] == "edit"
    stats = {**counts(decided), "stale": stale, "disagreements": disagreements(decisions),
             "selected": len(curated), "rejected_dropped": dropped, "edited_applied": edited, "forced_in": forced,
             "force_accepted": force_accepted, "kept": len(out)}
    return out, stats


def review_key(run_dir: Path, force_accepted: bool) -> dict:
    """What a curated set that honours the review depends on: the decisions' content and the forcing."""
    return {"decisions_sha256": decisions_sha256(run_dir), "force_accepted": force_accepted}


def reviewed(run_dir: Path, curated: list[dict], candidates: list[dict], scores: list[dict],
             force_accepted: bool = False) -> tuple[list[dict], dict]:
    """:func:`apply_decisions` with the run's decisions; the statistics name the decisions file's hash and
    hold the judge's selection (``curated``) against the reviewers (:func:`review_quality`)."""
    decisions = read_decisions(run_dir)
    rows, stats = apply_decisions(curated, candidates, scores, decisions, force_accepted)
    decided, _ = fresh(effective(decisions), current_hashes(candidates))
    quality = review_quality(decided, {r["candidate_id"] for r in curated})
    return rows, {**stats, **review_key(run_dir, force_accepted), "quality": quality}


def describe_applied(stats: dict) -> str:
    """One line: ``review: 50 decisions (sha256 1a2b3c4d5e6f7a8b): 7 rejected pairs dropped, 3 edited
    instructions used, 0 accepted pairs forced in``."""
    sha = stats.get("decisions_sha256")
    if not sha:
        return "review: no decisions in the run folder (nothing changed)"
    forced = f"{stats['forced_in']} accepted pairs forced in" if stats["force_accepted"] else \
        "accepted pairs not forced in"
    stale = f"; {stats['stale']} stale decisions ignored" if stats["stale"] else ""
    return (f"review: {stats['reviewed']} reviewed pairs (decisions sha256 {sha[:16]}): {stats['rejected_dropped']} "
            f"rejected pairs dropped, {stats['edited_applied']} edited instructions used, {forced}{stale}")


# --------------------------------------------------------------------------- replay


def review_overrides(source: Path, review: bool, force_accepted: bool) -> list[str]:
    """The recipe overrides a replay of ``source`` runs under: ``curate.review`` on when the run has
    decisions (a corrupted decisions file stops it here), unless ``review`` is off."""
    use = review and (Path(source) / layout.REVIEW_DECISIONS).exists()
    if use:
        read_decisions(source)
    if force_accepted and not use:
        raise HumpbackError("--force-accepted contradicts --no-review" if not review else
                            f"--force-accepted: {source} has no review decisions ({layout.REVIEW_DECISIONS})")
    return [f"curate.review={str(use).lower()}", f"curate.review_force_accepted={str(use and force_accepted).lower()}"]


def copy_decisions(source: Path, output: Path) -> None:
    """The source run's decisions file, byte for byte, into the replay's folder (atomically)."""
    with atomic_path(Path(output) / layout.REVIEW_DECISIONS) as tmp:
        shutil.copyfile(Path(source) / layout.REVIEW_DECISIONS, tmp)


def replay_note(source: Path, review: bool, used: Optional[dict]) -> str:
    """What a replay says about the review: the decisions it used, or why it used none."""
    if used is not None:
        return describe_applied(used)
    if (Path(source) / layout.REVIEW_DECISIONS).exists():
        return f"review: the run's decisions were not used (--no-review); {source / layout.REVIEW_DECISIONS}"
    return "review: the run has no review decisions (humpback review RUN_DIR records them)"
