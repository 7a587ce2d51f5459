"""What the review page's judge box says about a pair, in words: pure functions of a score row.

One line for what selection read and where its cutoff is, one for the judge's own figures (a rating
judge's generated or argmax score and its probabilities, a likelihood judge's mean log-probability and
token count, an IFD and its two losses, a rubric or verifier score), and one per comparison judge
(``curate.compare_judges``: scored beside the selecting judge, not used by selection). A rubric judge's
principles and a generated judgement's reasoning are shown apart, as a table and as text.
"""

from __future__ import annotations

import json
from typing import Optional


def num(x, digits: int = 3) -> str:
    if x is None:
        return "-"
    if isinstance(x, int) or float(x).is_integer() and abs(x) >= 1:
        return str(int(x))
    return f"{x:.{digits}f}"


def selection_line(value, score_name: str, cutoff: Optional[float], kept: Optional[bool]) -> str:
    """``mean log-likelihood -2.574; selection cutoff -2.702: kept (at or above it)``."""
    if kept is None:
        return f"{score_name} {num(value)}; selection has not run yet"
    if value is None:
        return f"no {score_name} (never selected)"
    where = "" if cutoff is None else f"; selection cutoff {num(cutoff)}"
    return f"{score_name} {num(value)}{where}: {'kept' if kept else 'dropped'}"


def judge_figures(s: dict) -> str:
    """The judge's own figures for one score row, in words."""
    kind, mode = s.get("judge_kind") or "rating", s.get("mode")
    if s.get("parse_status") not in (None, "ok"):
        return f"{kind} judge: no score ({s['parse_status']})"
    if kind == "likelihood":
        detail = _detail(s.get("raw"))
        if mode == "ifd" and "ifd" in detail:
            return (f"IFD {num(detail['ifd'])}: loss of the segment after the instruction "
                    f"{num(-detail['mean_logprob'])} / alone {num(-detail['mean_logprob_alone'])} "
                    f"(below 1: the instruction helps predict the segment)")
        if "mean_logprob" in detail:
            return (f"mean log-probability per token of the segment after the instruction "
                    f"{num(detail['mean_logprob'])}, over {detail['tokens']} tokens (sum {num(detail['logprob'], 1)})")
        return f"likelihood value {num(s.get('value'))}"
    if kind in ("rating", "additive"):
        parts = ([f"argmax score {num(s.get('score'))}"] if mode == "logits" else
                 [f"generated score {num(s.get('score'))}"] + (
                     [f"argmax score {num(s.get('logits_score'))}"] if mode == "both" else []))
        if s.get("expected_score") is not None:
            parts.append(f"expected score {num(s['expected_score'], 2)}")
        if s.get("probs"):
            lo = 6 - len(s["probs"])  # 1..5 (rating), 0..5 (additive)
            parts.append(f"P({lo}..5) " + " ".join(f"{p:.2f}" for p in s["probs"]))
        return f"{kind} judge ({mode}): " + ", ".join(parts)
    return f"{kind} score {num(s.get('value'))}"


def compared_line(kind: str, s: Optional[dict]) -> str:
    figures = judge_figures(s) if s is not None else f"{kind} judge: this pair has no score"
    return f"also scored, not used by selection: {figures}"


def reasoning(s: dict) -> str:
    """A generated judgement's text; empty for judges whose raw text is numbers (logits, likelihood)."""
    if s.get("mode") == "logits" or (s.get("judge_kind") or "rating") in ("likelihood", "rubric"):
        return ""
    return s.get("raw") or ""


def _detail(raw) -> dict:
    try:
        detail = json.loads(raw or "{}")
    except ValueError:
        return {}
    return detail if isinstance(detail, dict) else {}
