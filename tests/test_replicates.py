"""Statistics over seeds (humpback.evaluation.replicates), exactly on small hand-made inputs."""

import math

import pytest

from humpback.evaluation.replicates import mean_interval, paired_difference, t_quantile
from humpback.evaluation.winrate import bootstrap_interval


def test_t_quantiles_are_the_tables():
    assert t_quantile(0.95, 2) == pytest.approx(4.302652729749464, abs=1e-12)
    assert t_quantile(0.95, 1) == pytest.approx(12.706204736174698, abs=1e-9)
    assert t_quantile(0.90, 4) == pytest.approx(2.131846786326649, abs=1e-12)
    with pytest.raises(ValueError, match="degrees of freedom"):
        t_quantile(0.95, 0)


def test_mean_interval_of_three_seeds():
    got = mean_interval([0.3, 0.5, 0.7])
    half = 4.302652729749464 * 0.2 / math.sqrt(3)
    assert got["mean"] == pytest.approx(0.5) and got["sd"] == pytest.approx(0.2) and got["n"] == 3
    assert got["ci"] == pytest.approx([0.5 - half, 0.5 + half])
    assert mean_interval([0.8, 0.8])["ci"] == pytest.approx([0.8, 0.8])  # no spread, no width
    assert mean_interval([0.4]) == {"mean": 0.4, "ci": [None, None], "sd": None, "n": 1}
    assert mean_interval([]) == {"mean": None, "ci": [None, None], "sd": None, "n": 0}


def test_paired_difference_in_one_stratum_is_the_bootstrap_of_the_differences():
    a, b = [1, 1, 0, 1, 0, 1], [0, 1, 0, 0, 1, 0]
    got = paired_difference(a, b, n_resamples=500, seed=3)
    assert got["difference"] == pytest.approx(2 / 6) and got["n"] == 6
    assert got["per_stratum"] == {0: pytest.approx(2 / 6)}
    assert got["ci"] == list(bootstrap_interval([x - y for x, y in zip(a, b)], n_resamples=500, seed=3))


def test_paired_difference_weighs_seeds_equally_and_resamples_within_them():
    # Seed "s1" always gains 1, seed "s2" never changes: every resample's mean is exactly 0.5.
    got = paired_difference([1, 1, 1, 0, 0], [0, 0, 0, 0, 0], strata=["s1", "s1", "s1", "s2", "s2"])
    assert got["difference"] == 0.5 and got["ci"] == [0.5, 0.5] and got["per_stratum"] == {"s1": 1.0, "s2": 0.0}
    # Seed 1's differences are {0, 1}, seed 2's always 1: resample means are 0.5, 0.75 or 1 with
    # probabilities 1/4, 1/2, 1/4, so the 2.5% and 97.5% quantiles are the two ends.
    got = paired_difference([0, 1, 1, 1], [0, 0, 0, 0], strata=[1, 1, 2, 2])
    assert got["difference"] == 0.75 and got["ci"] == [0.5, 1.0]


def test_paired_difference_rejects_unpaired_input():
    with pytest.raises(ValueError, match="equal lengths"):
        paired_difference([1, 0], [1])
    with pytest.raises(ValueError, match="one entry per pair"):
        paired_difference([1, 0], [1, 1], strata=[0])
    assert paired_difference([], []) == {"difference": None, "ci": [None, None], "per_stratum": {}, "n": 0}
