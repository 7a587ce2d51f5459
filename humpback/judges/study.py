"""Labelled variants of real pairs, to measure whether a judge judges: each real (instruction, answer)
pair, the same instruction with another task's answer, and the answer degraded three ways (cut short,
its sentences shuffled, an off-topic paragraph appended). A judge that works ranks the real pairs above
each kind of negative (its AUC, :func:`humpback.judges.health.auc`); ``scripts/judge_study.py`` runs every
judge over them. Pure functions, deterministic for a seed.
"""

from __future__ import annotations

import random
import re

CONDITIONS = ("real", "mismatched", "truncated", "shuffled", "off_topic")
DEGRADED = ("truncated", "shuffled", "off_topic")
TRUNCATE_FRACTION = 0.4
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=\S)")


def truncated(text: str, fraction: float = TRUNCATE_FRACTION) -> str:
    """The first ``fraction`` of ``text``, cut back to the last whole word (at least one word)."""
    cut = text[: max(1, int(len(text) * fraction))]
    if len(cut) < len(text) and not text[len(cut)].isspace() and " " in cut.strip():
        cut = cut[: cut.rstrip().rfind(" ")]
    return cut.rstrip()


def sentences(text: str) -> list[str]:
    """``text`` split after ``.``, ``!`` or ``?`` followed by white space (line breaks count as such)."""
    return [s for s in _SENTENCE_END.split(text.strip()) if s]


def shuffled(text: str, rng: random.Random) -> str:
    """The sentences of ``text`` in another order (words, when it has a single sentence), joined by spaces;
    never the original order when there are two or more parts."""
    parts = sentences(text)
    if len(parts) < 2:
        parts = text.split()
    if len(parts) < 2:
        return text
    order = list(range(len(parts)))
    while order == sorted(order):
        rng.shuffle(order)
    return " ".join(parts[i] for i in order)


def with_off_topic(text: str, paragraph: str) -> str:
    """``text`` with an unrelated paragraph appended after a blank line."""
    return f"{text.rstrip()}\n\n{paragraph.strip()}"


def study_rows(pairs: list[dict], paragraphs: list[str], seed: int = 0) -> list[dict]:
    """Rows ``{candidate_id, pair, condition, instruction, output, positive}``: for each pair (``id``,
    ``instruction``, ``output``, optional ``category``) its real row and one row of each negative kind.
    The mismatched answer is that of the pair half the list away (the nearest after it of another
    category, where categories are given); the off-topic paragraph is drawn from ``paragraphs``."""
    if len(pairs) < 2:
        raise ValueError("the study needs at least two pairs (a mismatched answer comes from another one)")
    if not paragraphs:
        raise ValueError("the study needs off-topic paragraphs to append")
    rng = random.Random(seed)
    n = len(pairs)
    rows = []
    for j, p in enumerate(pairs):
        step = max(1, n // 2)
        while step < n and pairs[(j + step) % n].get("category") is not None \
                and pairs[(j + step) % n].get("category") == p.get("category"):
            step += 1
        other = pairs[(j + step) % n]
        variants = {"real": p["output"], "mismatched": other["output"], "truncated": truncated(p["output"]),
                    "shuffled": shuffled(p["output"], rng),
                    "off_topic": with_off_topic(p["output"], rng.choice(paragraphs))}
        for condition in CONDITIONS:
            rows.append({"candidate_id": f"{p['id']}:{condition}", "pair": p["id"], "condition": condition,
                         "instruction": p["instruction"], "output": variants[condition],
                         "positive": condition == "real"})
    return rows
