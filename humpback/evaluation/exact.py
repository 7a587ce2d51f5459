"""Exact match of answers against reference answers, with a 95% Wilson score interval. Pure.

An eval prompt may carry a ``reference`` answer (a controlled world's checkable answer). An answer
matches when, after removing leading and trailing whitespace and collapsing every run of
whitespace to one space, it equals the reference treated the same way. Nothing else is forgiven
(case, punctuation, a trailing explanation), so the number means what it says.
"""

from __future__ import annotations

import math
from typing import Optional, Sequence

Z95 = 1.959963984540054  # the standard normal's 97.5% quantile


def normalize_answer(text: str) -> str:
    return " ".join(text.split())


def exact_match(answer: str, reference: str) -> bool:
    return normalize_answer(answer) == normalize_answer(reference)


def wilson_interval(successes: int, n: int, z: float = Z95) -> tuple[Optional[float], Optional[float]]:
    """The Wilson score interval of a proportion (good at 0 and 1, unlike the normal one)."""
    if n <= 0:
        return None, None
    if not 0 <= successes <= n:
        raise ValueError(f"successes must be between 0 and n={n}, got {successes}")
    p = successes / n
    denom = 1 + z * z / n
    center = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    lo = 0.0 if successes == 0 else max(0.0, center - half)  # exactly 0 and 1 at the ends, not 1e-17 off
    hi = 1.0 if successes == n else min(1.0, center + half)
    return lo, hi


def exact_match_stats(matches: Sequence[Optional[bool]]) -> dict:
    """``exact_match`` (the rate), ``exact_match_ci`` and the count, over the prompts that carry a
    reference (``None`` entries are prompts without one)."""
    known = [m for m in matches if m is not None]
    k = sum(known)
    lo, hi = wilson_interval(k, len(known))
    return {"exact_match": k / len(known) if known else None, "exact_match_ci": [lo, hi],
            "exact_match_n": len(known)}


def exact_match_change(before: dict, after: dict, n_resamples: int = 2000, seed: int = 0) -> dict:
    """How exact match changed between two models answering the same prompts (``before``/``after``: prompt
    id -> matched, for the prompts that carry a reference): the difference of the rates over the prompts
    both answered, its 95% percentile bootstrap interval (the prompts resampled together, so the pairing is
    kept), and how many prompts each model alone got right."""
    from .winrate import bootstrap_interval

    ids = sorted(set(before) & set(after))
    diffs = [float(after[i]) - float(before[i]) for i in ids]
    lo, hi = bootstrap_interval(diffs, n_resamples, seed)
    return {"prompts": len(ids), "before": sum(before[i] for i in ids) / len(ids) if ids else None,
            "after": sum(after[i] for i in ids) / len(ids) if ids else None,
            "difference": sum(diffs) / len(ids) if ids else None, "difference_ci": [lo, hi],
            "gained": sum(d > 0 for d in diffs), "lost": sum(d < 0 for d in diffs)}
