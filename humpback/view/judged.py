"""What a judge said about a pair, in the columns that judge has: the report's sampled-pairs tables.

Every judge writes the same score row (:data:`humpback.judges.SCORE_COLUMNS`), but each fills only some
of it: a rating judge has a score (and in logits mode an expected score and P("1".."5")), a likelihood
judge a mean log-probability (and for IFD the ratio and its two parts), a rubric judge one signed
log-odds per principle, a verifier a result. :func:`judge_columns` picks a judge's columns and
:func:`judge_cells` fills them for one pair, from the row's own fields (a likelihood row's details are
read from its JSON, never shown as JSON). A row that failed shows why, in the first column.
"""

from __future__ import annotations

import json
from typing import Any, Optional, Sequence

RATING_KINDS = ("rating", "additive")


def judge_columns(kind: str, modes: Sequence[str], principles: Sequence[dict] = ()) -> list[tuple[str, str]]:
    """(key, heading) of the judge's columns for a table of pairs scored by a ``kind`` judge in ``modes``
    (the score rows' ``mode``); ``principles``: a rubric's principles (``principle``, ``answer``), in order."""
    modes = set(modes)
    if kind in RATING_KINDS:
        cols = [("score", "score")]
        if modes & {"logits", "both"}:
            cols += [("expected_score", "expected score"), ("probs", "P(score)")]
        if modes & {"generate", "both"}:
            cols.append(("text", "judge's answer"))
        return cols
    if kind == "likelihood":
        if "ifd" in modes:
            return [("ifd", "IFD (lower: the instruction explains the output)"),
                    ("mean_logprob", "mean log-prob per token"), ("mean_logprob_alone", "... without the instruction"),
                    ("tokens", "output tokens")]
        return [("mean_logprob", "mean log-prob per token"), ("tokens", "output tokens")]
    if kind == "rubric":
        return [("value", "rubric score")] + [
            (f"principle/{j}", f"{p['principle']} (good: {p.get('answer', 'yes')})") for j, p in enumerate(principles)]
    if kind == "verifier":
        return [("verdict", "verifier")]
    return [("value", "judge value")]


def judge_cells(pair: dict, kind: str, principles: Sequence[dict] = ()) -> dict[str, tuple[str, str]]:
    """key -> (text, css class: "" or "ok"/"bad"/"missing") for the columns :func:`judge_columns` names."""
    status = pair.get("parse_status") or "ok"
    failed = status != "ok"
    cells: dict[str, tuple[str, str]] = {}
    if kind in RATING_KINDS:
        cells["score"] = ((f"failed ({status})", "bad") if failed or pair.get("score") is None
                          else (str(pair["score"]), ""))
        cells["expected_score"] = _num(pair.get("expected_score"), 2)
        probs = pair.get("probs")
        cells["probs"] = (" ".join(f"{i}:{p:.2f}" for i, p in enumerate(probs, 1)), "") if probs else ("-", "missing")
        cells["text"] = (pair.get("judge") or "", "text")
    elif kind == "likelihood":
        detail = _details(pair.get("judge"))
        cells["mean_logprob"] = _num(detail.get("mean_logprob", pair.get("value")), 3)
        cells["mean_logprob_alone"] = _num(detail.get("mean_logprob_alone"), 3)
        cells["ifd"] = _num(detail.get("ifd"), 3)
        cells["tokens"] = _num(detail.get("tokens"), 0)
        if failed:
            first = "ifd" if pair.get("mode") == "ifd" else "mean_logprob"
            cells[first] = (f"failed ({status})", "bad")
    elif kind == "rubric":
        cells["value"] = (f"failed ({status})", "bad") if failed else _num(pair.get("value"), 3)
        signed = pair.get("principles") or []
        for j, p in enumerate(principles):
            cells[f"principle/{j}"] = principle_cell(signed[j] if j < len(signed) else None, p.get("answer", "yes"))
    elif kind == "verifier":
        if failed:
            cells["verdict"] = (f"error ({status}): {pair.get('judge') or ''}", "bad text")
        else:
            value = pair.get("value")
            cells["verdict"] = ("pass", "ok") if value == 1 else ("fail", "bad") if value == 0 else _num(value, 3)
    else:
        cells["value"] = (f"failed ({status})", "bad") if failed else _num(pair.get("value"), 3)
    return cells


def principle_cell(signed: Optional[float], answer: str) -> tuple[str, str]:
    """What the judge answered to one principle: ``yes (+1.20)``, green where that is the good answer.
    ``signed`` is the log-odds of the good answer (> 0: the pair has the quality)."""
    if signed is None:
        return "no yes/no token", "missing"
    good = answer == "yes"
    said_yes = (signed > 0) == good
    return f"{'yes' if said_yes else 'no'} ({signed:+.2f})", "ok" if signed > 0 else "bad"


def _details(raw: Any) -> dict:
    """A likelihood row's ``raw``: its JSON details (log-prob, tokens, ...), or nothing."""
    try:
        detail = json.loads(raw) if raw else {}
    except (TypeError, ValueError):
        return {}
    return detail if isinstance(detail, dict) else {}


def _num(value: Any, digits: int) -> tuple[str, str]:
    if value is None:
        return "-", "missing"
    if digits == 0:
        return str(int(value)), ""
    return f"{value:.{digits}f}", ""
