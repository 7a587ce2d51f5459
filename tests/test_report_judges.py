"""The report's sampled pairs show the columns their judge has (humpback/view/judged.py): score rows made by
each judge's own row builders, the cells checked exactly; no cell says None and none holds the judge's
raw JSON."""

from __future__ import annotations

import math
from html.parser import HTMLParser
from pathlib import Path

from humpback.generation import ChoiceProbs, LogLik
from humpback.generation.base import AnswerLogprobs
from humpback.judges.likelihood import likelihood_rows
from humpback.judges.rating import rows_generate, rows_logits
from humpback.judges.rubric import parse_rubric, principle_stats
from humpback.judges.rubric import rows_from_answers as rubric_rows
from humpback.judges.verifier import verify_rows
from humpback.view.judged import judge_cells, judge_columns
from humpback.view.read import TRACKER_PAIR_KEYS, IterationView, read_iteration, tracker_payload
from humpback.view.report import _pairs_table

ROWS = [{"candidate_id": "a", "instruction": "Reverse the word AB.", "output": "The reverse of AB is BA."},
        {"candidate_id": "b", "instruction": "Reverse the word CD.", "output": "The reverse of CD is CD."}]


def _pairs(score_rows: list[dict]) -> list[dict]:
    """Score rows joined with their candidates as :func:`humpback.view.read.read_iteration` joins them."""
    by_id = {r["candidate_id"]: r for r in ROWS}
    return [{"candidate_id": s["candidate_id"], "accepted": True, "score": s["score"],
             "expected_score": s["expected_score"], "value": s["value"], "parse_status": s["parse_status"],
             "instruction": by_id[s["candidate_id"]]["instruction"], "output": by_id[s["candidate_id"]]["output"],
             "judge": s["raw"], "judge_kind": s["judge_kind"], "mode": s["mode"], "probs": s["probs"],
             "principles": s.get("principles")} for s in score_rows]


def _table(kind: str, pairs: list[dict], principles=()) -> list[list[str]]:
    """The rendered pairs table's cells, row by row (header first)."""
    it = IterationView(1, figures={"judge_kind": kind}, pairs=pairs, principles=list(principles))

    class Cells(HTMLParser):
        rows: list = []

        def handle_starttag(self, tag, attrs):
            if tag == "tr":
                self.rows.append([])
            elif tag in ("td", "th"):
                self.rows[-1].append("")

        def handle_data(self, data):
            if self.rows and self.rows[-1]:
                self.rows[-1][-1] += data

    parser = Cells()
    parser.rows = []
    parser.feed(_pairs_table(pairs, it))
    return parser.rows


def test_likelihood_pairs_show_mean_log_prob_and_tokens_never_json():
    pairs = _pairs(likelihood_rows(ROWS, [LogLik(-2.0, 4), LogLik(-6.0, 4)], None, "m"))
    assert judge_columns("likelihood", ["mean_logprob"]) == [("mean_logprob", "mean log-prob per token"),
                                                            ("tokens", "output tokens")]
    rows = _table("likelihood", pairs)
    assert rows == [["mean log-prob per token", "output tokens", "instruction", "output"],
                    ["-0.500", "4", ROWS[0]["instruction"], ROWS[0]["output"]],
                    ["-1.500", "4", ROWS[1]["instruction"], ROWS[1]["output"]]]
    ifd = _pairs(likelihood_rows(ROWS, [LogLik(-2.0, 4), LogLik(-6.0, 4)], [LogLik(-4.0, 4), LogLik(0.0, 4)], "m"))
    rows = _table("likelihood", ifd)
    assert rows[0][:4] == ["IFD (lower: the instruction explains the output)", "mean log-prob per token",
                           "... without the instruction", "output tokens"]
    assert rows[1][:4] == ["0.500", "-0.500", "-1.000", "4"]
    assert rows[2][:4] == ["failed (undefined)", "-1.500", "0.000", "4"]  # the output alone cost nothing


def test_rating_pairs_show_score_expected_score_and_probabilities_or_the_judges_text():
    logits = _pairs(rows_logits(ROWS, [ChoiceProbs((0.0, 0.0, 0.0, 0.5, 0.5), 0.9), ChoiceProbs(None, 0.01)], "j"))
    rows = _table("rating", logits)
    assert rows == [["score", "expected score", "P(score)", "instruction", "output"],
                    ["4", "4.50", "1:0.00 2:0.00 3:0.00 4:0.50 5:0.50", ROWS[0]["instruction"], ROWS[0]["output"]],
                    ["failed (no_choice_in_top_logprobs)", "-", "-", ROWS[1]["instruction"], ROWS[1]["output"]]]
    generated = _pairs(rows_generate(ROWS, ["Clear and right.\nScore: 5", "no score here"], "j"))
    rows = _table("rating", generated)
    assert rows == [["score", "instruction", "output", "judge's answer"],
                    ["5", ROWS[0]["instruction"], ROWS[0]["output"], "Clear and right.\nScore: 5"],
                    ["failed (missing)", ROWS[1]["instruction"], ROWS[1]["output"], "no score here"]]


def test_rubric_pairs_show_each_principles_answer():
    rubric = parse_rubric("Be strict.\n==[Principle: Correct; Weight: 1; Answer: yes]==\nIs {response} right?\n"
                          "==[Principle: Rambles; Weight: 1; Answer: no]==\nDoes {response} ramble?")
    answers = [[AnswerLogprobs((math.log(0.8), math.log(0.2))), AnswerLogprobs((math.log(0.1), math.log(0.9)))],
               [AnswerLogprobs((math.log(0.25), math.log(0.75))), AnswerLogprobs((None, None))]]
    scores = rubric_rows(ROWS, rubric, answers, "j", "mean", 1.0)
    principles = principle_stats([{"principle": p.name, "weight": p.weight, "answer": p.answer}
                                  for p in rubric.principles], scores)
    rows = _table("rubric", _pairs(scores), principles)
    log4, log9, log3 = math.log(4), math.log(9), math.log(3)
    assert rows == [["rubric score", "Correct (good: yes)", "Rambles (good: no)", "instruction", "output"],
                    [f"{(log4 + log9) / 2:.3f}", f"yes ({log4:+.2f})", f"no ({log9:+.2f})",
                     ROWS[0]["instruction"], ROWS[0]["output"]],
                    [f"{-log3:.3f}", f"no ({-log3:+.2f})", "no yes/no token", ROWS[1]["instruction"],
                     ROWS[1]["output"]]]
    cells = judge_cells(_pairs(scores)[1], "rubric", principles)
    assert cells["principle/0"] == (f"no ({-log3:+.2f})", "bad")
    assert cells["principle/1"] == ("no yes/no token", "missing")


def test_verifier_pairs_show_pass_fail_or_the_error():
    def check(row):  # a verifier as a recipe names one: the reversal is right, or it is not
        if not row["output"].startswith("The reverse of"):
            raise ValueError("cannot read")
        word = row["instruction"].split()[-1].rstrip(".")
        return row["output"].endswith(f" {word[::-1]}.")

    pairs = _pairs(verify_rows(ROWS, check, "v"))
    assert [judge_cells(p, "verifier")["verdict"] for p in pairs] == [("pass", "ok"), ("fail", "bad")]
    assert _table("verifier", pairs) == [["verifier", "instruction", "output"],
                                         ["pass", ROWS[0]["instruction"], ROWS[0]["output"]],
                                         ["fail", ROWS[1]["instruction"], ROWS[1]["output"]]]
    failed = _pairs(verify_rows([{**ROWS[1], "output": "CD backwards"}], check, "v"))
    assert judge_cells(failed[0], "verifier")["verdict"] == ("error (error): ValueError: cannot read", "bad text")


def test_trackers_get_the_pairs_columns_they_always_had(tiny_cli_run):
    it = read_iteration(tiny_cli_run[0], 1)
    assert {"judge_kind", "mode", "probs", "principles"} <= set(it.pairs[0])
    pairs = tracker_payload(it, 4)[2]
    assert pairs and all(tuple(p) == TRACKER_PAIR_KEYS for p in pairs)


def test_score_histograms_of_a_replay_that_ran_no_score_stage():
    """A replay imports the run's scores without running the score stage: the histograms come from the
    rows (a rating judge's scores; another judge's values, its kind read from the rows)."""
    from humpback.view.plots import score_histograms_plot
    from humpback.view.read import IterationView, RunView

    rating = IterationView(1, scores=[5, 4, 4, None, 1], pairs=[{"judge_kind": "rating"}])
    likelihood = IterationView(2, values=[-1.0, -2.5, None], scores=[None, None, None],
                               pairs=[{"judge_kind": "likelihood"}])
    view = RunView(Path("."), "replay", {}, None, None, {}, [], {}, [rating, likelihood], [])
    plot = score_histograms_plot(view)
    assert plot.data["1"] == {"1": 1.0, "2": 0.0, "3": 0.0, "4": 2.0, "5": 1.0, "fail": 1.0}
    assert plot.data["2"]["failed"] == 1 and sum(plot.data["2"]["counts"]) == 2
