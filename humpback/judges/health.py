"""Is the judge judging? Three figures of any scoring, with the thresholds past which they warn, and
the quality of a selection against labels (a dev set's precision, recall and F1).

- ``choice_mass_mean`` (the rating judge's logits and both modes, the rubric judge): the mean probability
  the judge put on the answers it is read from, the score digits "1".."5" after "Score:" (rating) or yes
  and no (rubric). Below 0.5 the judge is not following the prompt (a wrong chat template, a model too
  small or not instruction-tuned): its renormalised scores are noise.
- ``top_score_share``: the share of the most common score (the rating judge's 1..5; any other judge's
  value). Above 0.95 the judge is degenerate: it gives (nearly) every pair the same score, so the
  selection is decided by tie-breaking, not by the judge.
- ``parse_failure_rate``: rows with no usable score (unparseable judgements, verifier errors). Above
  0.2 a fifth of the pool is scored by nobody.

All are pure functions of score rows or of their counts, tested exactly.
"""

from __future__ import annotations

from collections import Counter
from typing import Iterable, Optional

MIN_CHOICE_MASS = 0.5
MAX_TOP_SCORE_SHARE = 0.95
MAX_PARSE_FAILURE_RATE = 0.2


def health_counts(rows: Iterable[dict]) -> dict:
    """The counts judge health is computed from, mergeable across shards (:func:`merge_health_counts`)."""
    n = failures = mass_n = 0
    mass_sum = 0.0
    values: Counter = Counter()
    kinds: set = set()
    for r in rows:
        n += 1
        kinds.add(r.get("judge_kind", "rating"))
        if r["parse_status"] != "ok":
            failures += 1
        if r.get("choice_mass") is not None:
            mass_sum += r["choice_mass"]
            mass_n += 1
        key = _score_key(r)
        if key is not None:
            values[key] += 1
    return {"rows": n, "judge_kinds": sorted(kinds), "failures": failures, "choice_mass_sum": mass_sum,
            "choice_mass_n": mass_n,
            "top_count": max(values.values()) if values else 0, "top_value": _top(values),
            "scored": sum(values.values()), "values": dict(values) if len(values) <= 64 else None}


def _score_key(r: dict):
    """What 'the same score' means: the rating judge's 1..5, any other judge's value to 6 decimals."""
    if r.get("judge_kind", "rating") == "rating":
        return r.get("score") if r["parse_status"] == "ok" else None
    return None if r.get("value") is None else round(float(r["value"]), 6)


def _top(values: Counter):
    if not values:
        return None
    return max(values.items(), key=lambda kv: (kv[1], str(kv[0])))[0]


def judge_health(counts: dict) -> dict:
    """The three figures and the warnings they raise, from :func:`health_counts`."""
    n = counts["rows"]
    mass = counts["choice_mass_sum"] / counts["choice_mass_n"] if counts["choice_mass_n"] else None
    share = counts["top_count"] / counts["scored"] if counts["scored"] else None
    failure_rate = counts["failures"] / n if n else None
    warnings = []
    if mass is not None and mass < MIN_CHOICE_MASS:
        kinds = counts.get("judge_kinds")
        what, prompt = (("the answers yes/no", "rubric's questions") if kinds == ["rubric"] else
                        ("the points 0-5", "additive prompt") if kinds == ["additive"] else
                        ("the score digits 1-5", "rating prompt"))
        warnings.append(f"the judge put {mass:.2%} of its probability on {what} (mean choice mass "
                        f"< {MIN_CHOICE_MASS}): it is not following the {prompt} (wrong chat template? a "
                        f"model too small or not instruction-tuned?), so its scores are noise")
    if share is not None and share > MAX_TOP_SCORE_SHARE:
        warnings.append(f"{share:.1%} of the pairs got the same score ({_fmt(counts['top_value'])}; > "
                        f"{MAX_TOP_SCORE_SHARE:.0%}): the judge is degenerate, the selection is decided by "
                        f"tie-breaking, not by the judge")
    if failure_rate is not None and failure_rate > MAX_PARSE_FAILURE_RATE:
        warnings.append(f"{failure_rate:.1%} of the pairs have no usable score (parse failures or errors; > "
                        f"{MAX_PARSE_FAILURE_RATE:.0%})")
    return {"choice_mass_mean": mass, "top_score_share": share, "top_score": counts["top_value"],
            "parse_failure_rate": failure_rate, "warnings": warnings}


def merge_health_counts(parts: list[dict]) -> dict:
    """The counts of several shards together (exact: each shard keeps its value counts while it has
    at most 64 distinct values; past that, the top count is the largest shard's, a lower bound)."""
    merged: Counter = Counter()
    exact = all(p["values"] is not None for p in parts)
    for p in parts:
        if exact:
            merged.update({_key_back(k): v for k, v in p["values"].items()})
    out = {"rows": sum(p["rows"] for p in parts), "failures": sum(p["failures"] for p in parts),
           "judge_kinds": sorted({k for p in parts for k in p.get("judge_kinds", ["rating"])}),
           "choice_mass_sum": sum(p["choice_mass_sum"] for p in parts),
           "choice_mass_n": sum(p["choice_mass_n"] for p in parts), "scored": sum(p["scored"] for p in parts)}
    if exact:
        out.update(top_count=max(merged.values()) if merged else 0, top_value=_top(merged),
                   values=dict(merged) if len(merged) <= 64 else None)
    else:
        best = max(parts, key=lambda p: p["top_count"]) if parts else {"top_count": 0, "top_value": None}
        out.update(top_count=best["top_count"], top_value=best["top_value"], values=None)
    return out


def _key_back(k):
    """A value-count key after a JSON round trip (the manifest stores shard stats as JSON)."""
    if isinstance(k, str):
        try:
            return int(k) if k.lstrip("-").isdigit() else float(k)
        except ValueError:
            return k
    return k


def _fmt(value) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


# --------------------------------------------------------------------------- against labels


def selection_quality(positive: list[bool], selected: list[bool]) -> dict:
    """Precision, recall and F1 of a selection against labels, with the counts they come from.
    Precision is None when nothing was selected, recall when there is no positive."""
    if len(positive) != len(selected):
        raise ValueError(f"{len(positive)} labels but {len(selected)} selections")
    tp = sum(p and s for p, s in zip(positive, selected))
    n_sel, n_pos = sum(selected), sum(positive)
    precision = tp / n_sel if n_sel else None
    recall = tp / n_pos if n_pos else None
    f1 = (2 * precision * recall / (precision + recall)
          if precision is not None and recall is not None and precision + recall > 0 else None)
    return {"pairs": len(positive), "positives": n_pos, "selected": n_sel, "true_positives": tp,
            "precision": precision, "recall": recall, "f1": f1}


def is_positive(label, positive_score: int) -> Optional[bool]:
    """A dev-set label as good (True) / bad (False): ``good``/``bad``, ``true``/``false``, or a gold score
    1..5 that is a positive when at least ``positive_score``. None for anything else."""
    if isinstance(label, bool):
        return label
    if isinstance(label, str):
        text = label.strip().lower()
        if text in ("good", "true", "yes", "positive"):
            return True
        if text in ("bad", "false", "no", "negative"):
            return False
        if text.isdigit():
            label = int(text)
        else:
            return None
    if isinstance(label, int) and 1 <= label <= 5:
        return label >= positive_score
    if isinstance(label, float) and label.is_integer() and 1 <= label <= 5:
        return int(label) >= positive_score
    return None


def ranking_field(judge_kind: str, mode: str = "logits") -> str:
    """The score column that ranks pairs best for a judge (the finest one it has): the rating judge's
    expected score from P("1".."5") when it read logits, its generated score otherwise; every other
    judge's value."""
    if judge_kind == "rating":
        return "score" if mode == "generate" else "expected_score"
    return "value"


def auc(scores: list[Optional[float]], positive: list[bool]) -> Optional[float]:
    """The probability that a random positive outscores a random negative (ties count a half): the area
    under the ROC curve, from average ranks (Mann-Whitney U / n_pos n_neg). A pair the judge left
    unscored (None) ranks below every scored one, as it can never be selected. None without both
    positives and negatives."""
    import numpy as np

    if len(scores) != len(positive):
        raise ValueError(f"{len(scores)} scores but {len(positive)} labels")
    pos = np.asarray(positive, dtype=bool)
    n_pos, n_neg = int(pos.sum()), int((~pos).sum())
    if not n_pos or not n_neg:
        return None
    x = np.asarray([-np.inf if s is None else float(s) for s in scores])
    order = np.argsort(x, kind="mergesort")
    ranks = np.empty(len(x))
    sorted_x = x[order]
    i = 0
    while i < len(x):  # average ranks (1-based) over ties
        j = i
        while j + 1 < len(x) and sorted_x[j + 1] == sorted_x[i]:
            j += 1
        ranks[order[i:j + 1]] = (i + j) / 2 + 1
        i = j + 1
    return float((ranks[pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def auc_interval(scores: list[Optional[float]], positive: list[bool], n_resamples: int = 2000, seed: int = 0,
                 confidence: float = 0.95) -> tuple[Optional[float], Optional[float]]:
    """Percentile bootstrap interval of :func:`auc`, resampling positives and negatives apart (each
    resample keeps both classes' sizes), numpy's PCG64 seeded with ``seed``."""
    import numpy as np

    pos = [s for s, p in zip(scores, positive) if p]
    neg = [s for s, p in zip(scores, positive) if not p]
    if not pos or not neg:
        return None, None
    rng = np.random.default_rng(seed)
    labels = [True] * len(pos) + [False] * len(neg)
    values = []
    for _ in range(n_resamples):
        sample = ([pos[i] for i in rng.integers(0, len(pos), len(pos))]
                  + [neg[i] for i in rng.integers(0, len(neg), len(neg))])
        values.append(auc(sample, labels))
    lo, hi = np.quantile(values, [(1 - confidence) / 2, (1 + confidence) / 2])
    return float(lo), float(hi)


def dev_auc(rows: list[dict], field: str, n_resamples: int = 2000, seed: int = 0) -> dict:
    """A judge's AUC on labelled dev rows (their ``positive``) by the score column ``field``, with its
    bootstrap interval and the counts it rests on."""
    scores = [r.get(field) for r in rows]
    positive = [bool(r["positive"]) for r in rows]
    lo, hi = auc_interval(scores, positive, n_resamples, seed)
    return {"field": field, "auc": auc(scores, positive), "low": lo, "high": hi, "pairs": len(rows),
            "positives": sum(positive), "unscored": sum(s is None for s in scores)}
