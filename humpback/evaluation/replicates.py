"""Statistics over replicate runs (the same experiment with different seeds). Pure functions of numbers.

- :func:`mean_interval`: the mean of per-seed figures with a Student t interval (``n - 1`` degrees of
  freedom): how far another seed's figure may fall, which is what "it holds across seeds" needs.
- :func:`paired_difference`: the mean difference of two models' per-prompt outcomes on the same prompts,
  pooled over seeds, with a percentile bootstrap interval that resamples prompts *within* each seed
  (stratified by seed) and keeps the pairs together: each resample draws, for every seed, as many of
  that seed's (prompt, outcome A, outcome B) triples as it has, with replacement, and takes the mean
  over seeds of the per-seed mean differences. Pairing removes the prompt-to-prompt variation the two
  models share; stratifying keeps every seed's weight fixed. It does not resample seeds: with three
  seeds a cluster bootstrap has ten distinct resamples, too few for a percentile interval, so the
  interval is conditional on the worlds built; :func:`mean_interval` of the per-seed differences is
  the across-seed view of the same figure.
"""

from __future__ import annotations

import math
from typing import Optional, Sequence

from .winrate import CONFIDENCE


def t_quantile(confidence: float, df: int) -> float:
    """The two-sided Student t quantile: P(|T| <= q) = ``confidence`` for ``df`` degrees of freedom."""
    from scipy import stats

    if df < 1:
        raise ValueError(f"degrees of freedom must be >= 1, got {df}")
    return float(stats.t.ppf((1 + confidence) / 2, df))


def mean_interval(values: Sequence[float], confidence: float = CONFIDENCE) -> dict:
    """``mean``, ``ci`` (Student t, ``n - 1`` df; [None, None] for fewer than two values), ``sd`` and ``n``."""
    x = [float(v) for v in values]
    if not x:
        return {"mean": None, "ci": [None, None], "sd": None, "n": 0}
    mean = sum(x) / len(x)
    if len(x) < 2:
        return {"mean": mean, "ci": [None, None], "sd": None, "n": 1}
    sd = math.sqrt(sum((v - mean) ** 2 for v in x) / (len(x) - 1))
    half = t_quantile(confidence, len(x) - 1) * sd / math.sqrt(len(x))
    return {"mean": mean, "ci": [mean - half, mean + half], "sd": sd, "n": len(x)}


def paired_difference(a: Sequence[float], b: Sequence[float], strata: Optional[Sequence] = None,
                      n_resamples: int = 2000, seed: int = 0, confidence: float = CONFIDENCE) -> dict:
    """Model A's outcomes minus model B's, paired by position (the same prompt of the same seed), with
    ``strata`` naming each pair's seed (None: one stratum). Returns ``difference`` (the mean over strata
    of the per-stratum mean difference), ``ci`` (the stratified paired percentile bootstrap, numpy's
    PCG64 seeded with ``seed``, its default linear quantiles), ``per_stratum`` ({stratum: mean
    difference}, in first-seen order) and ``n`` (pairs)."""
    import numpy as np

    if len(a) != len(b):
        raise ValueError(f"paired outcomes need equal lengths, got {len(a)} and {len(b)}")
    strata = [0] * len(a) if strata is None else list(strata)
    if len(strata) != len(a):
        raise ValueError(f"strata needs one entry per pair, got {len(strata)} for {len(a)} pairs")
    if not a:
        return {"difference": None, "ci": [None, None], "per_stratum": {}, "n": 0}
    d = np.asarray(a, dtype=float) - np.asarray(b, dtype=float)
    groups: dict = {}
    for i, s in enumerate(strata):
        groups.setdefault(s, []).append(i)
    rng = np.random.default_rng(seed)
    means = np.zeros(n_resamples)
    per_stratum = {}
    for s, idx in groups.items():
        x = d[idx]
        per_stratum[s] = float(x.mean())
        means += x[rng.integers(0, x.size, size=(n_resamples, x.size))].mean(axis=1)
    means /= len(groups)
    lo, hi = np.quantile(means, [(1 - confidence) / 2, (1 + confidence) / 2])
    return {"difference": sum(per_stratum.values()) / len(groups), "ci": [float(lo), float(hi)],
            "per_stratum": per_stratum, "n": int(d.size)}
