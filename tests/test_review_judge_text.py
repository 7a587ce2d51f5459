"""The review page's judge box in words (humpback.review.judge_text): exact lines for each kind of judge,
from score rows as the judges write them."""

import json

from humpback.review.judge_text import compared_line, judge_figures, reasoning, selection_line


def _row(kind, mode, **kw):
    row = {"candidate_id": "c1", "judge_kind": kind, "mode": mode, "score": None, "logits_score": None,
           "expected_score": None, "probs": None, "value": None, "raw": "", "parse_status": "ok"}
    return {**row, **kw}


def test_a_likelihood_judge_says_what_its_number_is():
    raw = json.dumps({"logprob": -340.429779, "tokens": 126, "mean_logprob": -2.701824})
    row = _row("likelihood", "mean_logprob", value=-2.701824, raw=raw)
    assert judge_figures(row) == ("mean log-probability per token of the segment after the instruction -2.702, "
                                  "over 126 tokens (sum -340.4)")
    assert reasoning(row) == ""  # its raw text is these numbers again
    ifd = _row("likelihood", "ifd", value=-0.8, raw=json.dumps(
        {"logprob": -300.0, "tokens": 100, "mean_logprob": -3.0, "mean_logprob_alone": -3.75, "ifd": 0.8}))
    assert judge_figures(ifd) == ("IFD 0.800: loss of the segment after the instruction 3 / alone 3.750 "
                                  "(below 1: the instruction helps predict the segment)")
    assert (judge_figures(_row("likelihood", "ifd", parse_status="undefined"))
            == "likelihood judge: no score (undefined)")


def test_rating_rubric_and_verifier_rows_in_words():
    logits = _row("rating", "logits", score=5, logits_score=5, expected_score=3.0512, value=3.0512,
                  probs=[0.2605, 0.1442, 0.1531, 0.1677, 0.2744], raw='{"1": 0.26}')
    assert judge_figures(logits) == ("rating judge (logits): argmax score 5, expected score 3.05, "
                                     "P(1..5) 0.26 0.14 0.15 0.17 0.27")
    assert reasoning(logits) == ""
    generated = _row("rating", "generate", score=4, value=4.0, raw="The answer is relevant.\nScore: 4")
    assert judge_figures(generated) == "rating judge (generate): generated score 4"
    assert reasoning(generated) == "The answer is relevant.\nScore: 4"
    assert judge_figures(_row("rating", "generate", parse_status="no_score")) == "rating judge: no score (no_score)"
    additive = _row("additive", "logits", score=3, expected_score=2.5, probs=[0.1, 0.1, 0.2, 0.3, 0.2, 0.1])
    assert judge_figures(additive).endswith("P(0..5) 0.10 0.10 0.20 0.30 0.20 0.10")
    rubric = _row("rubric", "mean", value=0.412, raw="relevant: +0.412")
    assert judge_figures(rubric) == "rubric score 0.412" and reasoning(rubric) == ""
    assert judge_figures(_row("verifier", "function", value=1.0)) == "verifier score 1"


def test_the_selection_line_and_a_comparison_judge():
    assert selection_line(-2.574, "mean log-likelihood", -2.7018, True) == \
        "mean log-likelihood -2.574; selection cutoff -2.702: kept"
    assert selection_line(-2.76, "mean log-likelihood", -2.7018, False) == \
        "mean log-likelihood -2.760; selection cutoff -2.702: dropped"
    assert selection_line(None, "expected score", 3.5, False) == "no expected score (never selected)"
    assert selection_line(4, "score", None, None) == "score 4; selection has not run yet"
    assert compared_line("rating", None) == "also scored, not used by selection: rating judge: this pair has no score"
    assert compared_line("rating", _row("rating", "generate", score=2, value=2.0)) == \
        "also scored, not used by selection: rating judge (generate): generated score 2"
