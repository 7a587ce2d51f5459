import pytest

from humpback.config import CurateConfig
from humpback.scoring import ParsedScore, histogram, parse_score, score_from_probs
from humpback.scoring import agreement, select, spearman


@pytest.mark.parametrize(
    "text, expected",
    [
        ("The answer is complete.\nScore: 5", ParsedScore(5, "ok")),
        ("Reasoning...\nScore: 4\n", ParsedScore(4, "ok")),
        ("Score: 2\nOn reflection it is better.\nScore: 4", ParsedScore(4, "ok")),  # the last one wins
        ("Score: 3\nThank you for asking!", ParsedScore(3, "ok")),  # trailing text
        ("**Score:** 5", ParsedScore(5, "ok")),
        ("score : 4/5", ParsedScore(4, "ok")),
        ("Score: [3]", ParsedScore(3, "ok")),
        ("Score: 5.0", ParsedScore(5, "ok")),
        ("Score: 10502", ParsedScore(None, "out_of_range")),
        ("Score: 0", ParsedScore(None, "out_of_range")),
        ("Score: 6", ParsedScore(None, "out_of_range")),
        ("Score: -1", ParsedScore(None, "out_of_range")),
        ("Score: 4.5", ParsedScore(None, "not_integer")),
        ("I would rate this a 5.", ParsedScore(None, "missing")),
        ("Score: five", ParsedScore(None, "missing")),
        ("", ParsedScore(None, "empty")),
        ("  \n ", ParsedScore(None, "empty")),
    ],
)
def test_parse_score_adversarial(text, expected):
    assert parse_score(text) == expected


def test_score_from_probs_argmax_and_expected():
    s = score_from_probs([0.1, 0.1, 0.2, 0.2, 0.4])
    assert s.score == 5 and s.expected == pytest.approx(0.1 + 0.2 + 0.6 + 0.8 + 2.0)
    # unnormalised input is renormalised; ties go to the lower score
    t = score_from_probs([1, 3, 3, 0, 0])
    assert t.score == 2 and t.expected == pytest.approx((1 + 6 + 9) / 7)


def test_histogram_counts_failures():
    assert histogram([5, 5, None, 1]) == {"1": 1, "2": 0, "3": 0, "4": 0, "5": 2, "none": 1}


def _cands(n):
    return [{"candidate_id": f"c{i}", "segment_id": f"c{i}", "instruction": f"q{i}",
             "output": f"o{i}"} for i in range(n)]


def _score(cid, score, logits=None, expected=None, status="ok"):
    return {"candidate_id": cid, "score": score, "logits_score": logits, "expected_score": expected,
            "parse_status": status}


def test_select_threshold_generate_mode_keeps_parse_failures_out():
    scores = [_score("c0", 5), _score("c1", 4), _score("c2", None, status="missing")]
    kept = select(_cands(3), scores, CurateConfig(mode="generate", threshold=5))
    assert [k["candidate_id"] for k in kept] == ["c0"]
    kept4 = select(_cands(3), scores, CurateConfig(mode="generate", threshold=4))
    assert [k["candidate_id"] for k in kept4] == ["c0", "c1"]


def test_select_on_expected_or_argmax():
    scores = [_score("c0", 5, 5, 3.2), _score("c1", 3, 3, 3.6)]
    kept = select(_cands(2), scores, CurateConfig(mode="logits", threshold=3.5, select_on="expected"))
    assert [k["candidate_id"] for k in kept] == ["c1"]
    kept = select(_cands(2), scores, CurateConfig(mode="logits", threshold=4))  # auto: argmax in logits mode
    assert [k["candidate_id"] for k in kept] == ["c0"]


def test_both_mode_selects_on_either_score_and_a_parse_failure_still_has_logits():
    scores = [_score("c0", None, 5, 4.6, status="missing"), _score("c1", 5, 2, 2.1), _score("c2", 4, 4, 4.0)]
    auto = select(_cands(3), scores, CurateConfig(mode="both", threshold=5))
    assert [k["candidate_id"] for k in auto] == ["c1"]  # auto: the generated score, as in the paper
    argmax = select(_cands(3), scores, CurateConfig(mode="both", threshold=4, select_on="argmax"))
    assert [k["candidate_id"] for k in argmax] == ["c0", "c2"]


def test_top_k_and_top_fraction_rank_with_stable_ties():
    scores = [_score(f"c{i}", None, None, e) for i, e in enumerate([2.0, 4.5, 3.0, 4.5, 1.0])]
    cfg = CurateConfig(mode="logits", select="top_k", top_k=2, select_on="expected")
    assert [k["candidate_id"] for k in select(_cands(5), scores, cfg)] == ["c1", "c3"]
    cfg = CurateConfig(mode="logits", select="top_fraction", top_fraction=0.6, select_on="expected")
    assert [k["candidate_id"] for k in select(_cands(5), scores, cfg)] == ["c1", "c2", "c3"]
    cfg = CurateConfig(mode="logits", select="top_k", top_k=1, select_on="expected")
    assert [k["candidate_id"] for k in select(_cands(5), list(reversed(scores)), cfg)] == ["c1"]


def test_select_on_must_fit_the_mode(tmp_path):
    from humpback.config import load_config
    from humpback.errors import ConfigError

    recipe = tmp_path / "r.yaml"
    recipe.write_text("base_model: m\nseed: {path: s}\ncorpus: {path: c}\n")
    with pytest.raises(ConfigError, match="'curate.select_on: expected' needs curate.mode logits or both"):
        load_config(recipe, ["curate.select_on=expected"])
    with pytest.raises(ConfigError, match="'curate.select_on: generated' needs curate.mode generate or both"):
        load_config(recipe, ["curate.mode=logits", "curate.select_on=generated"])


def test_spearman_and_agreement():
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    # ties get average ranks: x ranks 1.5 1.5 3, y ranks 1 2 3 -> r = 0.8660...
    assert spearman([1, 1, 2], [1, 2, 3]) == pytest.approx(0.8660254)
    assert spearman([1, 1], [1, 2]) is None and spearman([1], [1]) is None
    a = agreement([{"score": 5, "logits_score": 5, "expected_score": 4.8},
                   {"score": 2, "logits_score": 3, "expected_score": 2.9},
                   {"score": None, "logits_score": 1, "expected_score": 1.2}])
    assert a["pairs"] == 2 and a["exact_agreement"] == 0.5
    assert a["spearman_generated_vs_expected"] == pytest.approx(1.0)
    assert a["confusion_generated_by_argmax"][4][4] == 1 and a["confusion_generated_by_argmax"][1][2] == 1
