"""The pairwise judge as pure functions of rows: which answer goes in which position, the judge's
user turn, its verdict read back, and the judgement rows the eval stage saves.

Each prompt is judged in both orders (``model_first``: the evaluated model's answer is Answer A;
``reference_first``: it is Answer B). In ``generate`` mode the judge writes its reasoning and a last
line ``Winner: A``, ``Winner: B`` or ``Winner: tie``; in ``logits`` mode the prompt ends at
``Winner:`` and P("A") and P("B") are read in one forward pass (no tie, never a parse failure).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Optional, Sequence

from .. import layout
from ..prompts import render_pairwise
from .winrate import ORDERS, outcome

CHOICES = ("A", "B")
VERDICT_PREFILL = "Winner:"

# "Winner: A", "**Winner:** B", "winner : [tie]", "Winner: Answer A": the word right after the label.
_VERDICT_RE = re.compile(r"winner\s*\**\s*:\s*\**\s*[\[(\"']?\s*(?:answer\s+)?([A-Za-z]+)", re.IGNORECASE)


@dataclass(frozen=True)
class Verdict:
    verdict: Optional[str]  # "A", "B", "tie", or None when it could not be read
    status: str  # ok | empty | missing | unknown


def parse_verdict(text: str) -> Verdict:
    """The verdict of a generated judgement; the *last* ``Winner:`` wins. No label, or a label followed
    by anything but A, B or tie ("Winner: both"), is a parse failure with its own status."""
    if not text or not text.strip():
        return Verdict(None, "empty")
    found = _VERDICT_RE.findall(text)
    if not found:
        return Verdict(None, "missing")
    word = found[-1].lower()
    if word in ("a", "b"):
        return Verdict(word.upper(), "ok")
    if word == "tie":
        return Verdict("tie", "ok")
    return Verdict(None, "unknown")


def positions(order: str, model_answer: str, reference_answer: str) -> tuple[str, str]:
    """(Answer A, Answer B) for one order."""
    if order not in ORDERS:
        raise ValueError(f"unknown order {order!r}")
    return (model_answer, reference_answer) if order == "model_first" else (reference_answer, model_answer)


def judge_tasks(pairs: Sequence[dict]) -> list[dict]:
    """Two judge tasks per pair (``prompt_id``, ``instruction``, ``model_answer``, ``reference_answer``):
    the model's answer first, then the reference's first."""
    tasks = []
    for p in pairs:
        for order in ORDERS:
            a, b = positions(order, p["model_answer"], p["reference_answer"])
            tasks.append({"prompt_id": p["prompt_id"], "order": order,
                          "user_turn": render_pairwise(p["instruction"], a, b)})
    return tasks


def judgement_rows_generate(tasks: Sequence[dict], outputs: Sequence[str], judge: str) -> list[dict]:
    rows = []
    for t, text in zip(tasks, outputs, strict=True):
        v = parse_verdict(text)
        rows.append({"prompt_id": t["prompt_id"], "order": t["order"], "mode": "generate", "verdict": v.verdict,
                     "p_a": None, "p_b": None, "outcome": outcome(t["order"], v.verdict), "raw": text,
                     "parse_status": v.status, "judge": judge})
    return rows


def judgement_rows_logits(tasks: Sequence[dict], choice_probs: Sequence, judge: str) -> list[dict]:
    """Rows from P("A"), P("B") (renormalised over the two; ``choice_mass`` kept in ``raw``)."""
    rows = []
    for t, cp in zip(tasks, choice_probs, strict=True):
        p_a, p_b = (float(p) for p in cp.probs)
        verdict = "A" if p_a > p_b else "B" if p_b > p_a else "tie"
        raw = json.dumps({"A": round(p_a, 6), "B": round(p_b, 6), "mass": round(float(cp.mass), 6)})
        rows.append({"prompt_id": t["prompt_id"], "order": t["order"], "mode": "logits", "verdict": verdict,
                     "p_a": p_a, "p_b": p_b, "outcome": outcome(t["order"], p_a=p_a, p_b=p_b), "raw": raw,
                     "parse_status": "ok", "judge": judge})
    return rows


def judgement_schema():
    import pyarrow as pa

    return pa.schema([("prompt_id", pa.string()), ("order", pa.string()), ("mode", pa.string()),
                      ("verdict", pa.string()), ("p_a", pa.float64()), ("p_b", pa.float64()),
                      ("outcome", pa.float64()), ("raw", pa.string()), ("parse_status", pa.string()),
                      ("judge", pa.string())])


@dataclass
class PairwiseJudge:
    """The judge of a run's evaluation, which compares a model's answer with a reference answer (not the
    curation judge, which scores rows one by one: :class:`humpback.judges.CurationJudge`)."""

    model: Any  # a lazy model with .tokenizer and .generator (run.LazyModel), loaded on first use
    name: str
    identity: dict


def reference_of(kind: str, label: str) -> Optional[str]:
    """What model ``label`` is judged against (``eval.reference``): ``outputs`` (the prompt set's), another
    model's label, or None (``none``, or a model that would be its own reference)."""
    if kind == "none":
        return None
    if kind == "outputs":
        return "outputs"
    ref = layout.evaluation(label).previous() if kind == "previous" else kind
    return None if ref == label else ref
