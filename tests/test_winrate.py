"""The evaluation arithmetic, checked by hand: outcomes, win rate, position consistency, the bootstrap
interval, the length-controlled win rate, exact match with its Wilson interval, the held-out split."""

import itertools
import math

import pytest

from humpback.errors import ConfigError
from humpback.evaluation.answers import length_drift
from humpback.evaluation.exact import exact_match, exact_match_stats, wilson_interval
from humpback.evaluation.prompt_set import heldout_count, heldout_prompts, split_heldout
from humpback.evaluation.winrate import (bootstrap_interval, fit_length_model, length_controlled_win_rate,
                                         length_feature, outcome, position_a_rate, position_consistency, preference,
                                         summarize, win_rate)

# A small table of verdicts, one per prompt and order, with what each means for the evaluated model:
#   p1: A then B -> the model wins in both orders      -> preference 1,   consistent
#   p2: A then A -> position A wins both times          -> preference 0.5, inconsistent
#   p3: tie, tie                                        -> preference 0.5, consistent
#   p4: B then unreadable -> only the first order counts -> preference 0
#   p5: unreadable twice                                -> no preference (left out)
TABLE = [("p1", "A", "B"), ("p2", "A", "A"), ("p3", "tie", "tie"), ("p4", "B", None), ("p5", None, None)]


def _rows(table):
    orders, outcomes, ids = [], [], []
    for pid, first, second in table:
        for order, verdict in (("model_first", first), ("reference_first", second)):
            orders.append(order)
            outcomes.append(outcome(order, verdict))
            ids.append(pid)
    return orders, outcomes, ids


def test_outcomes_of_single_judgements():
    assert [outcome("model_first", v) for v in ("A", "B", "tie", None)] == [1.0, 0.0, 0.5, None]
    assert [outcome("reference_first", v) for v in ("A", "B", "tie", None)] == [0.0, 1.0, 0.5, None]
    # logits judging: P(model's position) over P("A") + P("B")
    assert outcome("model_first", p_a=0.3, p_b=0.1) == pytest.approx(0.75)
    assert outcome("reference_first", p_a=0.3, p_b=0.1) == pytest.approx(0.25)
    assert outcome("model_first", p_a=0.0, p_b=0.0) == 0.5
    with pytest.raises(ValueError):
        outcome("sideways", "A")


def test_win_rate_and_position_consistency_by_hand():
    orders, outcomes, ids = _rows(TABLE)
    prefs = [preference(outcomes[i:i + 2]) for i in range(0, len(outcomes), 2)]
    assert prefs == [1.0, 0.5, 0.5, 0.0, None]
    assert win_rate(prefs) == (1 + 0.5 + 0.5 + 0) / 4
    pairs = [(outcomes[i], outcomes[i + 1]) for i in range(0, len(outcomes), 2)]
    assert position_consistency(pairs) == 2 / 3  # p1 and p3 of the three read in both orders
    # decided judgements: p1 picks A then B, p2 picks A twice, p4 picks B: 3 of 5 picked position A
    assert position_a_rate(orders, outcomes) == 3 / 5
    s = summarize(orders, outcomes, ids, {p: 10 for p, *_ in TABLE}, {p: 10 for p, *_ in TABLE}, seed=1)
    assert (s["win_rate"], s["position_consistency"], s["prompts_judged"], s["prompts_unjudged"]) == (0.5, 2 / 3, 4, 1)
    assert (s["wins"], s["losses"], s["ties"]) == (1, 1, 2)
    assert s["lc_win_rate"] == pytest.approx(0.5, abs=1e-12)  # equal lengths: no length correction


def test_the_order_swap_cancels_a_judge_that_always_prefers_position_a():
    table = [(f"p{i}", "A", "A") for i in range(7)]
    orders, outcomes, ids = _rows(table)
    chars = {f"p{i}": 10 * i for i in range(7)}
    s = summarize(orders, outcomes, ids, chars, {p: 35 for p in chars}, seed=0)
    assert s["win_rate"] == 0.5 and s["win_rate_ci"] == [0.5, 0.5]
    assert s["position_consistency"] == 0.0 and s["position_a_rate"] == 1.0
    # the same with probabilities: a judge that puts 0.9 on "A" whatever it reads
    soft = [outcome(o, p_a=0.9, p_b=0.1) for o in orders]
    assert [preference(soft[i:i + 2]) for i in range(0, 14, 2)] == [pytest.approx(0.5)] * 7
    # ... whereas one order alone would have said the model wins every time
    assert win_rate([o for o, order in zip(outcomes, orders) if order == "model_first"]) == 1.0


def test_bootstrap_interval_matches_the_exact_bootstrap_distribution():
    values = [1, 1, 1, 0, 0]
    # The exact bootstrap distribution of the mean of 5 draws: P(mean = 0) = (2/5)^5 = 0.01024 < 0.025
    # < P(mean <= 0.2) = 0.01024 + 5 * (3/5) * (2/5)^4 = 0.08704, and P(mean = 1) = (3/5)^5 = 0.078 > 0.025:
    # the 95% percentile interval is [0.2, 1.0].
    exact = sorted(sum(values[i] for i in t) / 5 for t in itertools.product(range(5), repeat=5))
    assert sum(m == 0 for m in exact) / len(exact) == pytest.approx(0.01024)
    assert sum(m <= 0.2 for m in exact) / len(exact) == pytest.approx(0.08704)
    assert sum(m == 1 for m in exact) / len(exact) == pytest.approx(0.07776)
    assert bootstrap_interval(values, n_resamples=2000, seed=0) == (pytest.approx(0.2), pytest.approx(1.0))
    assert bootstrap_interval(values, 2000, seed=0) == bootstrap_interval(values, 2000, seed=0)  # seeded
    assert bootstrap_interval([0.5] * 6) == (0.5, 0.5)
    assert bootstrap_interval([]) == (None, None)


def test_length_controlled_win_rate():
    # equal lengths: the fit is the plain win rate (sigmoid(a) = mean preference, b = 0)
    assert length_feature([5, 5, 5], [5, 5, 5]) == [0.0, 0.0, 0.0]
    assert length_controlled_win_rate([1, 1, 0, 0.5], [0, 0, 0, 0]) == pytest.approx(0.625, abs=1e-12)
    # the feature: tanh(difference / its sample standard deviation)
    diffs = [100, 50, 80, -60]
    mean = sum(diffs) / 4
    sd = math.sqrt(sum((d - mean) ** 2 for d in diffs) / 3)
    x = length_feature([d + 200 for d in diffs], [200] * 4)
    assert x == pytest.approx([math.tanh(d / sd) for d in diffs])
    # longer answers win here: controlling for length lowers the win rate
    y = [1, 1, 1, 0]
    lc = length_controlled_win_rate(y, x)
    assert 0.5 < lc < win_rate(y) == 0.75
    # the fit is the penalised optimum: both score equations hold
    a, b = fit_length_model(y, x, ridge=1.0)
    p = [1 / (1 + math.exp(-(a[0] + b[0] * xi))) for xi in x]
    assert sum(yi - pi for yi, pi in zip(y, p)) == pytest.approx(0, abs=1e-9)
    assert sum((yi - pi) * xi for yi, pi, xi in zip(y, p, x)) - 1.0 * b[0] == pytest.approx(0, abs=1e-9)
    # all wins (or all losses) are what they are
    assert length_controlled_win_rate([1, 1, 1], x[:3]) == 1.0
    assert length_controlled_win_rate([0, 0], x[:2]) == 0.0
    assert length_controlled_win_rate([], []) is None


def test_exact_match_and_wilson_interval_by_hand():
    assert exact_match("  The reverse of abc is cba.\n", "The reverse of  abc is cba.")
    assert not exact_match("the reverse of abc is cba.", "The reverse of abc is cba.")
    # Wilson, 8 of 10: center (0.8 + z^2/20) / (1 + z^2/10) = 0.7168, half-width 0.2266 (z = 1.96)
    lo, hi = wilson_interval(8, 10)
    assert (lo, hi) == (pytest.approx(0.4902, abs=1e-4), pytest.approx(0.9433, abs=1e-4))
    assert wilson_interval(0, 10) == (0.0, pytest.approx(0.2775, abs=1e-4))
    assert wilson_interval(10, 10) == (pytest.approx(0.7225, abs=1e-4), 1.0)
    assert wilson_interval(0, 0) == (None, None)
    s = exact_match_stats([True, False, None, True, True])
    assert s["exact_match"] == 0.75 and s["exact_match_n"] == 4
    assert s["exact_match_ci"] == list(wilson_interval(3, 4))
    assert exact_match_stats([None, None]) == {"exact_match": None, "exact_match_ci": [None, None], "exact_match_n": 0}


def test_length_drift_against_m0():
    assert length_drift(300.0, 100.0, 1.5) == (3.0, True)
    assert length_drift(120.0, 100.0, 1.5) == (1.2, False)
    assert length_drift(50.0, 100.0, 1.5) == (0.5, True)
    assert length_drift(None, 100.0, 1.5) == (None, None)


def test_heldout_split():
    pairs = [{"id": str(i), "instruction": f"q{i % 7}", "output": f"a{i}"} for i in range(20)]
    assert heldout_count(0.25, 7) == 2 and heldout_count(3, 7) == 3 and heldout_count(0, 7) == 0
    assert heldout_count(0.01, 7) == 1  # a positive fraction holds out at least one
    train, held = split_heldout(pairs, 2)
    assert len({p["instruction"] for p in held}) == 2
    # pairs sharing a held-out instruction go together; nothing is lost or duplicated
    assert not {p["instruction"] for p in held} & {p["instruction"] for p in train}
    assert sorted(p["id"] for p in train + held) == sorted(p["id"] for p in pairs)
    # the choice depends on the instructions alone, not on their order in the file
    assert {p["id"] for p in split_heldout(pairs[::-1], 2)[1]} == {p["id"] for p in held}
    prompts = heldout_prompts(held)
    assert len(prompts) == 2 and all(p["dataset"] == "heldout" and p["reference"] is None for p in prompts)
    assert prompts[0]["output"] == next(p["output"] for p in held if p["instruction"] == prompts[0]["instruction"])
    with pytest.raises(ConfigError,
                       match=r"seed.jsonl: 'seed.heldout' \(7\) holds out 7 instructions, but the seed has"):
        split_heldout(pairs, 7, where="seed.jsonl")
