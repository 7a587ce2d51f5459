"""The judges' rows, judge health and selection quality: pure functions of rows, checked exactly."""

from __future__ import annotations

import json
import sys

import pytest

from humpback.config import CurateConfig, load_config
from humpback.errors import ConfigError, DataError
from humpback.generation import ChoiceProbs, LogLik
from humpback.judges import SCORE_COLUMNS, CurationJudge, score_rows
from humpback.judges.health import (health_counts, is_positive, judge_health, merge_health_counts,
                                    selection_quality)
from humpback.judges.likelihood import ifd, likelihood_rows
from humpback.judges.rating import rows_both, rows_generate, rows_logits
from humpback.judges.verifier import load_verifier, verify_rows
from humpback.scoring import judge_agreement, select, select_by_cutoff, selection_cutoff, selection_rule

ROWS = [{"candidate_id": "a", "instruction": "Reverse the word AB.", "output": "The reverse of AB is BA."},
        {"candidate_id": "b", "instruction": "Reverse the word CD.", "output": "The reverse of CD is CD."}]


def _row(cid, kind, mode, **kw):
    base = dict.fromkeys(SCORE_COLUMNS)
    base.update(candidate_id=cid, judge_kind=kind, mode=mode, parse_status="ok", judge="j")
    base.update(kw)
    return base


# --------------------------------------------------------------------------- rating


def test_rating_rows_generate_logits_both_exactly():
    gen = rows_generate(ROWS, ["Fine.\nScore: 4", "no score"], "j")
    assert gen == [_row("a", "rating", "generate", score=4, value=4.0, raw="Fine.\nScore: 4"),
                   _row("b", "rating", "generate", value=None, raw="no score", parse_status="missing")]
    probs = [ChoiceProbs((0.0, 0.0, 0.0, 0.5, 0.5), 0.9), ChoiceProbs((1.0, 0.0, 0.0, 0.0, 0.0), 0.2)]
    lg = rows_logits(ROWS, probs, "j")
    assert lg == [
        _row("a", "rating", "logits", score=4, logits_score=4, expected_score=4.5, probs=[0.0, 0.0, 0.0, 0.5, 0.5],
             choice_mass=0.9, value=4.5, raw=json.dumps({"1": 0.0, "2": 0.0, "3": 0.0, "4": 0.5, "5": 0.5})),
        _row("b", "rating", "logits", score=1, logits_score=1, expected_score=1.0, probs=[1.0, 0.0, 0.0, 0.0, 0.0],
             choice_mass=0.2, value=1.0, raw=json.dumps({"1": 1.0, "2": 0.0, "3": 0.0, "4": 0.0, "5": 0.0}))]
    both = rows_both(ROWS, ["Score: 5", "Score: 9"], probs, "j")
    assert [(r["mode"], r["score"], r["logits_score"], r["value"], r["parse_status"]) for r in both] == \
        [("both", 5, 4, 4.5, "ok"), ("both", None, 1, 1.0, "out_of_range")]
    assert all(list(r) == list(SCORE_COLUMNS) for r in gen + lg + both)


# --------------------------------------------------------------------------- likelihood


def test_likelihood_rows_mean_and_ifd_exactly():
    given = [LogLik(-2.0, 4), LogLik(-6.0, 4)]
    rows = likelihood_rows(ROWS, given, None, "m")
    assert rows == [_row("a", "likelihood", "mean_logprob", judge="m", value=-0.5,
                         raw=json.dumps({"logprob": -2.0, "tokens": 4, "mean_logprob": -0.5})),
                    _row("b", "likelihood", "mean_logprob", judge="m", value=-1.5,
                         raw=json.dumps({"logprob": -6.0, "tokens": 4, "mean_logprob": -1.5}))]
    alone = [LogLik(-8.0, 4), LogLik(0.0, 4)]  # the second output costs nothing alone: IFD undefined
    rows = likelihood_rows(ROWS, given, alone, "m")
    assert (rows[0]["mode"], rows[0]["value"], rows[0]["parse_status"]) == ("ifd", -0.25, "ok")
    assert json.loads(rows[0]["raw"])["ifd"] == 0.25
    assert (rows[1]["value"], rows[1]["parse_status"]) == (None, "undefined")
    assert ifd(-0.5, -2.0) == 0.25 and ifd(-1.0, -0.5) == 2.0 and ifd(-1.0, 0.0) is None


# --------------------------------------------------------------------------- verifier


def _flaky(row):
    if "CD" in row["instruction"]:
        raise ValueError("cannot check CD")
    return row["output"].endswith("BA.")


def test_verifier_counts_errors_per_row_with_the_message():
    rows = verify_rows(ROWS, _flaky, "tests:flaky")
    assert rows == [_row("a", "verifier", "verifier", judge="tests:flaky", value=1.0, raw="True"),
                    _row("b", "verifier", "verifier", judge="tests:flaky", value=None,
                         raw="ValueError: cannot check CD", parse_status="error")]
    odd = verify_rows(ROWS, lambda r: "yes" if r["candidate_id"] == "a" else float("nan"), "v")
    assert [(r["value"], r["parse_status"], r["raw"]) for r in odd] == [
        (None, "bad_value", "returned 'yes', not a number"), (None, "bad_value", "returned nan, not a number")]
    import numpy as np

    assert verify_rows(ROWS[:1], lambda r: np.int64(3), "v")[0]["value"] == 3.0


def test_verifier_path_errors_are_config_errors(tmp_path, monkeypatch):
    for bad, message in [("nomodule:f", "cannot import 'nomodule'"), ("json:nothing_here", "has no function"),
                         ("not a path", "package.module:function")]:
        with pytest.raises(ConfigError, match=message):
            load_verifier(bad)
    (tmp_path / "my_checks.py").write_text("def ok(row):\n    return 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert load_verifier("my_checks:ok")({"instruction": "", "output": ""}) == 1


def test_score_rows_dispatches_on_judge_kind_and_a_verifier_run_survives_exceptions(tmp_path, monkeypatch):
    (tmp_path / "half_broken.py").write_text(
        "def check(row):\n    if row['candidate_id'] == 'b':\n        raise KeyError('boom')\n    return 0.5\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    cfg = CurateConfig(judge_kind="verifier", verifier="half_broken:check", select="threshold", threshold=0.5)
    rows = score_rows(ROWS, CurationJudge("half_broken:check", cfg))
    assert [(r["value"], r["parse_status"], r["raw"]) for r in rows] == [(0.5, "ok", "0.5"),
                                                                         (None, "error", "KeyError: 'boom'")]
    health = judge_health(health_counts(rows))
    assert health["parse_failure_rate"] == 0.5 and any("no usable score" in w for w in health["warnings"])


# --------------------------------------------------------------------------- health


def _health_of(rows):
    return judge_health(health_counts(rows))


@pytest.mark.parametrize("mass, warns", [(0.49, True), (0.5, False), (0.9, False)])
def test_choice_mass_threshold(mass, warns):
    rows = [_row(f"c{i}", "rating", "logits", score=1 + i % 5, choice_mass=mass) for i in range(10)]
    h = _health_of(rows)
    assert h["choice_mass_mean"] == pytest.approx(mass)
    assert any("score digits" in w for w in h["warnings"]) is warns


def test_a_rubric_judge_off_its_answers_is_named_as_such():
    rows = [_row(f"c{i}", "rubric", "mean", value=0.1 * i, choice_mass=0.01) for i in range(10)]
    parts = json.loads(json.dumps([health_counts(rows[:4]), health_counts(rows[4:])]))
    for h in (_health_of(rows), judge_health(merge_health_counts(parts))):
        assert h["warnings"] == ["the judge put 1.00% of its probability on the answers yes/no "
                                 "(mean choice mass < 0.5): "
                                 "it is not following the rubric's questions (wrong chat template? a model too small "
                                 "or not instruction-tuned?), so its scores are noise"]


@pytest.mark.parametrize("same, warns", [(96, True), (95, False)])
def test_top_score_share_threshold(same, warns):
    rows = [_row(f"c{i}", "rating", "generate", score=3 if i < same else 4) for i in range(100)]
    h = _health_of(rows)
    assert h["top_score_share"] == same / 100 and h["top_score"] == 3
    assert any("degenerate" in w for w in h["warnings"]) is warns
    assert h["choice_mass_mean"] is None  # generate mode has no choice mass


@pytest.mark.parametrize("failed, warns", [(21, True), (20, False)])
def test_parse_failure_threshold(failed, warns):
    rows = [_row(f"c{i}", "rating", "generate", score=None if i < failed else 1 + i % 5,
                 parse_status="missing" if i < failed else "ok") for i in range(100)]
    h = _health_of(rows)
    assert h["parse_failure_rate"] == failed / 100
    assert any("no usable score" in w for w in h["warnings"]) is warns


def test_health_of_values_and_merging_shards():
    rows = [_row(f"c{i}", "likelihood", "mean_logprob", value=-0.1 * (i % 4)) for i in range(8)]
    parts = [health_counts(rows[:3]), health_counts(rows[3:])]
    parts = json.loads(json.dumps(parts))  # shard stats go through JSON in the manifest
    merged = merge_health_counts(parts)
    assert merged["rows"] == 8 and merged["top_count"] == 2 and merged["scored"] == 8
    assert judge_health(merged) == judge_health(health_counts(rows))
    flat = [_row(f"c{i}", "likelihood", "mean_logprob", value=-0.7) for i in range(20)]
    assert "degenerate" in judge_health(health_counts(flat))["warnings"][0]
    assert judge_health(health_counts([]))["warnings"] == []


def test_the_tiny_docs_judge_is_flagged():
    """The demo's random judge: every pair the same argmax, 0.25% of the mass on the digits."""
    rows = [_row(f"c{i}", "rating", "logits", score=3, logits_score=3, choice_mass=0.0025) for i in range(96)]
    h = _health_of(rows)
    assert len(h["warnings"]) == 2 and h["warnings"][0].startswith("the judge put 0.25% of its probability")


# --------------------------------------------------------------------------- against labels


def test_selection_quality_arithmetic():
    positive = [True, True, True, False, False, False, False, False, False, False]
    selected = [True, False, False, True, False, False, False, False, False, False]
    q = selection_quality(positive, selected)
    assert q == {"pairs": 10, "positives": 3, "selected": 2, "true_positives": 1, "precision": 0.5,
                 "recall": pytest.approx(1 / 3), "f1": pytest.approx(2 * 0.5 * (1 / 3) / (0.5 + 1 / 3))}
    none = selection_quality([True, False], [False, False])
    assert (none["precision"], none["recall"], none["f1"]) == (None, 0.0, None)
    assert selection_quality([False], [True])["recall"] is None
    with pytest.raises(ValueError):
        selection_quality([True], [])


def test_labels_and_cutoffs():
    assert [is_positive(x, 4) for x in ("good", "BAD", True, 5, 4, 3, "4", 4.0, "maybe", 7)] == \
        [True, False, True, True, True, False, True, True, None, None]
    threshold = {"select": "threshold", "score_field": "value", "threshold": 0.5}
    top = {"select": "top_fraction", "score_field": "value", "top_fraction": 0.5}
    assert selection_cutoff(threshold, []) == 0.5
    assert selection_cutoff(top, [-0.2, -0.5, None]) == -0.5 and selection_cutoff(top, []) is None
    dev = [{"value": -0.4}, {"value": -0.6}, {"value": None}]
    assert select_by_cutoff(dev, "value", -0.5) == [True, False, False]
    assert select_by_cutoff(dev, "value", None) == [False, False, False]


def test_selection_on_value_and_agreement_across_judges():
    cfg = CurateConfig(judge_kind="likelihood", select="top_fraction", top_fraction=0.5)
    assert cfg.score_field() == "value" and selection_rule(cfg)["score_name"] == "mean log-likelihood"
    cands = [{"candidate_id": c, "segment_id": c, "instruction": "i", "output": "o"} for c in "abcd"]
    scores = [_row(c, "likelihood", "mean_logprob", value=v) for c, v in zip("abcd", [-1.0, -0.1, -0.5, None])]
    assert [k["candidate_id"] for k in select(cands, scores, cfg)] == ["b", "c"]
    other = [_row(c, "verifier", "verifier", value=v) for c, v in zip("abcd", [0.0, 1.0, 1.0, 1.0])]
    a = judge_agreement(scores, other)
    assert a["pairs"] == 3 and a["spearman"] == pytest.approx(0.866, abs=1e-3)


def test_judge_config_errors(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("base_model: m\nseed: {path: s.jsonl}\ncorpus: {path: c.jsonl}\n")
    for overrides, message in [
        (["curate.judge_kind=verifier"], "needs 'curate.verifier'"),
        (["curate.judge_kind=verifier", "curate.verifier=x:y", "curate.judge=m"], "uses none"),
        (["curate.verifier=not-a-path"], "package.module:function"),
        (["curate.judge_kind=likelihood", "curate.threshold=1"], "must be <= 0"),
        (["curate.judge_kind=likelihood", "curate.select=top_k", "curate.select_on=expected"], "rating-judge score"),
        (["curate.dev_positive_score=6"], "between 1 and 5"),
    ]:
        with pytest.raises(ConfigError, match=message):
            load_config(recipe, overrides)
    cfg = load_config(recipe, ["curate.judge_kind=likelihood", "curate.select=top_fraction"])
    assert cfg.curate.scoring_settings() == {"judge_kind": "likelihood", "likelihood": "mean_logprob",
                                             "system_prompt": "Answer in the style of an AI Assistant."}


def test_dev_set_file_errors(tmp_path):
    from humpback.data.devset import load_dev_set

    good = tmp_path / "dev.jsonl"
    good.write_text('{"instruction": "q", "output": "a", "label": "good"}\n'
                    '{"instruction": "q2", "output": "a2", "label": 2}\n')
    assert [(r["candidate_id"], r["positive"]) for r in load_dev_set(str(good), 4)] == [("dev-00000", True),
                                                                                         ("dev-00001", False)]
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"instruction": "q", "output": "a", "label": "good"}\n{"instruction": "q", "output": "a"}\n')
    with pytest.raises(DataError, match=r"bad.jsonl:2: curate.dev_set rows need a 'label'"):
        load_dev_set(str(bad))
    bad.write_text('{"instruction": "q", "output": "a", "label": "so-so"}\n')
    with pytest.raises(DataError, match="neither good/bad nor a gold score"):
        load_dev_set(str(bad))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__, "-q"]))
