"""Pairwise judgements -> win rate, its bootstrap interval, a length-controlled view and the judge's
position consistency. Pure functions of numbers.

Every prompt is judged twice, once with the evaluated model's answer in position A
(``model_first``) and once in position B (``reference_first``). One judgement gives the model an
*outcome*: 1 (its answer won), 0 (lost), 0.5 (tie), a probability in between (logits judging: the
judge's P(model's position) over P("A") + P("B")), or None (the judgement could not be read). A
prompt's *preference* is the mean of its readable outcomes, so a judge that always prefers
position A scores every prompt 0.5: the swap cancels position bias. The win rate is the mean
preference over the prompts that have one.
"""

from __future__ import annotations

import math
from typing import Optional, Sequence

ORDERS = ("model_first", "reference_first")
CONFIDENCE = 0.95


def outcome(order: str, verdict: Optional[str] = None, p_a: Optional[float] = None,
            p_b: Optional[float] = None) -> Optional[float]:
    """The evaluated model's outcome of one judgement: from a verdict ("A", "B", "tie", None) or,
    when ``p_a``/``p_b`` are given, from the judge's probabilities of "A" and "B"."""
    if order not in ORDERS:
        raise ValueError(f"unknown order {order!r}; expected one of {ORDERS}")
    model_first = order == "model_first"
    if p_a is not None and p_b is not None:
        total = p_a + p_b
        if not total > 0:
            return 0.5
        return (p_a if model_first else p_b) / total
    if verdict is None:
        return None
    if verdict == "tie":
        return 0.5
    if verdict not in ("A", "B"):
        raise ValueError(f"unknown verdict {verdict!r}")
    return 1.0 if (verdict == "A") == model_first else 0.0


def preference(outcomes: Sequence[Optional[float]]) -> Optional[float]:
    """A prompt's preference: the mean of its readable outcomes (None when none is readable)."""
    known = [o for o in outcomes if o is not None]
    return sum(known) / len(known) if known else None


def winner(o: float) -> str:
    """Who an outcome says won: ``model`` above 0.5, ``reference`` below, ``tie`` at 0.5."""
    return "model" if o > 0.5 else "reference" if o < 0.5 else "tie"


def position_consistency(pairs: Sequence[Sequence[Optional[float]]]) -> Optional[float]:
    """Of the prompts whose two orders were both read, the fraction where both name the same winner.
    A judge that always picks position A scores 0; one that ignores position scores 1."""
    both = [(a, b) for a, b in pairs if a is not None and b is not None]
    if not both:
        return None
    return sum(winner(a) == winner(b) for a, b in both) / len(both)


def position_a_rate(orders: Sequence[str], outcomes: Sequence[Optional[float]]) -> Optional[float]:
    """Of the judgements that picked a winner, the fraction that picked position A (0.5: no bias)."""
    picks = []
    for order, o in zip(orders, outcomes, strict=True):
        if o is None or o == 0.5:
            continue
        model_won = o > 0.5
        picks.append(model_won == (order == "model_first"))
    return sum(picks) / len(picks) if picks else None


def win_rate(preferences: Sequence[Optional[float]]) -> Optional[float]:
    """The mean preference over the prompts that have one."""
    known = [p for p in preferences if p is not None]
    return sum(known) / len(known) if known else None


def bootstrap_interval(values: Sequence[float], n_resamples: int = 2000, seed: int = 0,
                       confidence: float = CONFIDENCE) -> tuple[Optional[float], Optional[float]]:
    """Percentile bootstrap interval of the mean of ``values``: ``n_resamples`` resamples of the
    prompts with replacement (numpy's PCG64 seeded with ``seed``), the (1-c)/2 and (1+c)/2 quantiles
    of their means (numpy's default linear interpolation)."""
    import numpy as np

    x = np.asarray([v for v in values if v is not None], dtype=float)
    if x.size == 0:
        return None, None
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, x.size, size=(n_resamples, x.size))].mean(axis=1)
    lo, hi = np.quantile(means, [(1 - confidence) / 2, (1 + confidence) / 2])
    return float(lo), float(hi)


# --------------------------------------------------------------------------- length control

SLOPE_RIDGE = 1.0  # L2 penalty on the length slope: a table that length separates perfectly still has a finite fit


def length_feature(model_chars: Sequence[float], reference_chars: Sequence[float]) -> list[float]:
    """tanh of the answer-length difference (model minus reference) over its standard deviation,
    as AlpacaEval 2's length-controlled win rate uses; all zeros when the differences do not vary."""
    diffs = [m - r for m, r in zip(model_chars, reference_chars, strict=True)]
    if len(diffs) < 2:
        return [0.0] * len(diffs)
    mean = sum(diffs) / len(diffs)
    sd = math.sqrt(sum((d - mean) ** 2 for d in diffs) / (len(diffs) - 1))
    return [math.tanh(d / sd) if sd > 0 else 0.0 for d in diffs]


def fit_length_model(y, x, ridge: float = SLOPE_RIDGE, iterations: int = 100, tol: float = 1e-12):
    """Logistic regression of preferences ``y`` (in [0, 1], soft labels) on the length feature ``x``:
    P(win) = sigmoid(a + b x), maximising the log-likelihood minus ``ridge * b**2 / 2`` by Newton's
    method. ``y`` and ``x`` are arrays of shape (n,) or (batch, n): one fit per row. Returns (a, b);
    a row whose preferences are all 0 or all 1 gets a = -inf or +inf and b = 0."""
    import numpy as np

    y = np.atleast_2d(np.asarray(y, dtype=float))
    x = np.atleast_2d(np.asarray(x, dtype=float))
    mean = y.mean(axis=1)
    a = np.zeros(y.shape[0])
    b = np.zeros(y.shape[0])
    live = (mean > 0) & (mean < 1)
    a[~live] = np.where(mean[~live] >= 1, np.inf, -np.inf)
    if live.any():
        ys, xs, al, bl = y[live], x[live], a[live], b[live]
        for _ in range(iterations):
            p = 1.0 / (1.0 + np.exp(-(al[:, None] + bl[:, None] * xs)))
            r = ys - p
            ga, gb = r.sum(axis=1), (r * xs).sum(axis=1) - ridge * bl
            w = p * (1 - p)
            haa, hab, hbb = w.sum(axis=1), (w * xs).sum(axis=1), (w * xs * xs).sum(axis=1) + ridge
            det = haa * hbb - hab * hab
            da, db = (hbb * ga - hab * gb) / det, (haa * gb - hab * ga) / det
            al, bl = al + da, bl + db
            if np.max(np.abs(da)) < tol and np.max(np.abs(db)) < tol:
                break
        a[live], b[live] = al, bl
    return a, b


def length_controlled_win_rate(preferences: Sequence[float], x: Sequence[float],
                               ridge: float = SLOPE_RIDGE) -> Optional[float]:
    """The win rate the length model predicts for answers as long as the reference's:
    sigmoid(a) of :func:`fit_length_model` (the length term set to zero)."""
    if not preferences:
        return None
    a, _ = fit_length_model(preferences, x, ridge)
    return float(1.0 / (1.0 + math.exp(-a[0]))) if math.isfinite(a[0]) else (1.0 if a[0] > 0 else 0.0)


def summarize(orders: Sequence[str], outcomes: Sequence[Optional[float]], prompt_ids: Sequence[str],
              model_chars: dict[str, float], reference_chars: dict[str, float], n_resamples: int = 2000,
              seed: int = 0) -> dict:
    """The pairwise figures of one model from its judgement rows (one per prompt and order):
    ``win_rate``, ``win_rate_ci``, ``lc_win_rate``, ``position_consistency``, ``position_a_rate``,
    and the counts behind them."""
    by_prompt: dict[str, dict[str, Optional[float]]] = {}
    for order, o, pid in zip(orders, outcomes, prompt_ids, strict=True):
        by_prompt.setdefault(pid, {})[order] = o
    ids = list(by_prompt)
    prefs = [preference(list(by_prompt[i].values())) for i in ids]
    judged = [(i, p) for i, p in zip(ids, prefs) if p is not None]
    x = length_feature([model_chars[i] for i, _ in judged], [reference_chars[i] for i, _ in judged])
    values = [p for _, p in judged]
    return {
        "win_rate": win_rate(values),
        "win_rate_ci": list(bootstrap_interval(values, n_resamples, seed)),
        "lc_win_rate": length_controlled_win_rate(values, x),
        "position_consistency": position_consistency(
            [(by_prompt[i].get("model_first"), by_prompt[i].get("reference_first")) for i in ids]),
        "position_a_rate": position_a_rate(orders, outcomes),
        "prompts_judged": len(values),
        "prompts_unjudged": len(ids) - len(values),
        "wins": sum(p > 0.5 for p in values),
        "losses": sum(p < 0.5 for p in values),
        "ties": sum(p == 0.5 for p in values),
    }
