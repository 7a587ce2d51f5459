"""Judge outputs -> scores -> the curated set, as pure functions of rows.

``parse_score`` reads a generated judgement ("... Score: 4"); ``score_from_probs`` turns the
probabilities of the tokens "1".."5" after "Score:" into an argmax and an expected score.
A judgement that cannot be read is not dropped: it gets a parse status and keeps its raw text.
``select`` picks A(K) by the recipe's rule, which ``selection_rule`` records and ``describe_rule``
states in words; ``agreement`` compares two scores of the same pairs.
"""

from __future__ import annotations

import re
import statistics
from dataclasses import dataclass
from typing import TYPE_CHECKING, Optional, Sequence

if TYPE_CHECKING:
    from .config import CurateConfig

SCORES = (1, 2, 3, 4, 5)
CHOICES = tuple(str(s) for s in SCORES)

# "Score: 4", "**Score:** 4", "score : 4/5", "Score: [4]" — the number right after the label.
_SCORE_RE = re.compile(r"score\s*\**\s*:\s*\**\s*[\[(]?\s*(-?\d+(?:\.\d+)?)", re.IGNORECASE)


@dataclass(frozen=True)
class ParsedScore:
    score: Optional[int]
    status: str  # ok | empty | missing | out_of_range | not_integer


def parse_score(text: str, scores: Sequence[int] = SCORES) -> ParsedScore:
    """The rating from a judge's output; the *last* 'Score:' wins (the paper puts it on the last line).

    Text after the score ("Score: 4/5", "Score: 5. Great answer") is allowed. A missing label, a
    number outside ``scores`` (1..5; the additive judge's 0..5) or a fraction is a parse failure with its
    own status, never a silent drop.
    """
    if not text or not text.strip():
        return ParsedScore(None, "empty")
    matches = _SCORE_RE.findall(text)
    if not matches:
        return ParsedScore(None, "missing")
    number = matches[-1]
    if "." in number:
        value = float(number)
        if not value.is_integer():
            return ParsedScore(None, "not_integer")
        number = str(int(value))
    value = int(number)
    if value not in scores:
        return ParsedScore(None, "out_of_range")
    return ParsedScore(value, "ok")


@dataclass(frozen=True)
class ProbScore:
    score: int  # argmax
    expected: float  # sum_i p_i * i


def score_from_probs(probs: Sequence[float], scores: Sequence[int] = SCORES) -> ProbScore:
    """Argmax and expected score from P("1".."5") (renormalised over the choices; ``scores``: the score
    each probability belongs to, the additive judge's 0..5)."""
    if len(probs) != len(scores):
        raise ValueError(f"expected {len(scores)} probabilities, got {len(probs)}")
    total = float(sum(probs))
    if not total > 0:
        raise ValueError("probabilities sum to zero")
    p = [float(x) / total for x in probs]
    best = max(range(len(p)), key=lambda i: (p[i], -i))  # ties go to the lower score
    return ProbScore(scores[best], sum(s * q for s, q in zip(scores, p)))


def histogram(scores: Sequence[Optional[int]]) -> dict[str, int]:
    """Counts of each score 1..5 plus 'none' for parse failures, always all keys."""
    out = {str(s): 0 for s in SCORES}
    out["none"] = 0
    for s in scores:
        out[str(s) if s is not None else "none"] += 1
    return out


def select(candidates: list[dict], scores: list[dict], cfg: "CurateConfig") -> list[dict]:
    """A(K): by threshold on the chosen score, or the best top_fraction / top_k of the pool.

    Pairs without that score (a generated judgement that failed to parse) are never selected. Ranking
    ties are broken by candidate id, so a selection is the same whatever order the shards came in."""
    by_id = {s["candidate_id"]: s for s in scores}
    field = cfg.score_field()
    scored = [(c, by_id[c["candidate_id"]]) for c in candidates]
    scored = [(c, s) for c, s in scored if s[field] is not None]
    if cfg.select == "threshold":
        kept = [(c, s) for c, s in scored if s[field] >= cfg.threshold]
    else:
        n = cfg.top_k if cfg.select == "top_k" else round(cfg.top_fraction * len(candidates))
        ranked = sorted(scored, key=lambda cs: (-cs[1][field], cs[0]["candidate_id"]))
        chosen = {c["candidate_id"] for c, _ in ranked[:n]}
        kept = [(c, s) for c, s in scored if c["candidate_id"] in chosen]
    return [{"candidate_id": c["candidate_id"], "segment_id": c["segment_id"], "instruction": c["instruction"],
             "output": c["output"], "score": s["score"], "expected_score": s["expected_score"],
             "value": s.get("value")} for c, s in kept]


def selection_cutoff(rule: dict, kept_scores: list) -> Optional[float]:
    """The lowest score a pair needs to be selected by ``rule``: the threshold, or for a top fraction /
    top k the lowest score among the pairs the pool kept (``kept_scores``); None when nothing was kept."""
    if rule["select"] == "threshold":
        return float(rule["threshold"])
    kept = [s for s in kept_scores if s is not None]
    return float(min(kept)) if kept else None


def select_by_cutoff(scores: list[dict], field: str, cutoff: Optional[float]) -> list[bool]:
    """Whether each score row would be selected at ``cutoff`` (a row without that score never is)."""
    return [cutoff is not None and s[field] is not None and s[field] >= cutoff for s in scores]


def spearman(x: list[float], y: list[float]) -> float | None:
    """Spearman rank correlation (average ranks for ties); None when it is undefined."""
    if len(x) < 2:
        return None
    rx, ry = _ranks(x), _ranks(y)
    mx, my = sum(rx) / len(rx), sum(ry) / len(ry)
    cov = sum((a - mx) * (b - my) for a, b in zip(rx, ry))
    vx, vy = sum((a - mx) ** 2 for a in rx), sum((b - my) ** 2 for b in ry)
    return cov / (vx * vy) ** 0.5 if vx > 0 and vy > 0 else None


def _ranks(values: list[float]) -> list[float]:
    order = sorted(range(len(values)), key=values.__getitem__)
    ranks = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for t in range(i, j + 1):
            ranks[order[t]] = (i + j) / 2 + 1
        i = j + 1
    return ranks


def agreement(rows: list[dict]) -> dict:
    """How the generated score and the logits scores agree over the pairs whose judgement parsed."""
    both = [r for r in rows if r["score"] is not None and r["logits_score"] is not None]
    confusion = [[0] * 5 for _ in range(5)]
    for r in both:
        confusion[r["score"] - 1][r["logits_score"] - 1] += 1
    return {"pairs": len(both),
            "spearman_generated_vs_expected": spearman([r["score"] for r in both],
                                                       [r["expected_score"] for r in both]),
            "exact_agreement": sum(r["score"] == r["logits_score"] for r in both) / len(both) if both else None,
            "confusion_generated_by_argmax": confusion}


def judge_agreement(a: list[dict], b: list[dict]) -> dict:
    """How two judges' score rows of the same candidates agree, whatever the judges: Spearman of their
    ``value`` over the pairs both scored, and (when both are rating judges) exact agreement of ``score``."""
    by_id = {r["candidate_id"]: r for r in b}
    both = [(r, by_id[r["candidate_id"]]) for r in a if r["candidate_id"] in by_id]
    valued = [(x["value"], y["value"]) for x, y in both if x.get("value") is not None and y.get("value") is not None]
    scored = [(x["score"], y["score"]) for x, y in both if x.get("score") is not None and y.get("score") is not None]
    return {"pairs": len(valued), "spearman": spearman([x for x, _ in valued], [y for _, y in valued]),
            "scored_pairs": len(scored),
            "exact_score_agreement": sum(x == y for x, y in scored) / len(scored) if scored else None}


# What each score column is called in words (``CurateConfig.score_field`` names the column); the
# ``value`` column is named by its judge (VALUE_NAMES).
SCORE_NAMES = {"score": "generated score", "logits_score": "argmax score", "expected_score": "expected score"}
VALUE_NAMES = {"rating": "rating value", "rubric": "rubric score", "likelihood/mean_logprob": "mean log-likelihood",
               "likelihood/ifd": "negative IFD", "verifier": "verifier score"}


def selection_rule(cfg: "CurateConfig") -> dict:
    """The rule ``select`` applies, as plain data: what the records (stats, card, report) state."""
    rule = {"select": cfg.select, "score_field": cfg.score_field()}
    if rule["score_field"] == "value":
        kind = cfg.judge_kind + (f"/{cfg.likelihood}" if cfg.judge_kind == "likelihood" else "")
        rule["score_name"] = VALUE_NAMES[kind]
    rule.update({"threshold": {"threshold": cfg.threshold}, "top_fraction": {"top_fraction": cfg.top_fraction},
                 "top_k": {"top_k": cfg.top_k}}[cfg.select])
    return rule


# Each rule in words, at length and in a few words.
_RULE_WORDS = {
    "threshold": ("pairs whose {score} is at least {threshold:g} were kept", "threshold {threshold:g}"),
    "top_fraction": ("the best {top_fraction:.0%} of the pool by {score} were kept",
                     "top {top_fraction:.0%} by {score}"),
    "top_k": ("the best {top_k} pairs of the pool by {score} were kept", "top {top_k} by {score}"),
}


def describe_rule(rule: dict, short: bool = False) -> str:
    """``selection_rule`` in words: "pairs whose expected score is at least 4.5 were kept", "the best 50%
    of the pool by expected score were kept"; ``short``: "threshold 5", "top 50% by expected score"."""
    if rule.get("select") not in _RULE_WORDS:
        raise ValueError(f"unknown selection rule {rule!r}")
    score = rule.get("score_name") or SCORE_NAMES.get(rule.get("score_field"), str(rule.get("score_field")))
    return _RULE_WORDS[rule["select"]][short].format(score=score, **rule)


def short_rule(rule: dict) -> str:
    """``describe_rule`` in a few words."""
    return describe_rule(rule, short=True)


def length_stats(curated: list[dict]) -> dict:
    """The median instruction and output length (characters) of the curated pairs (None for none)."""
    out = {}
    for name, col in (("instruction_chars_median", "instruction"), ("output_chars_median", "output")):
        out[name] = statistics.median(len(c[col]) for c in curated) if curated else None
    return out
