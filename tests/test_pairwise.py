"""The pairwise judge's prompt, word for word, its verdict parser and the judgement rows."""

import json

import pytest

from humpback.chat import messages_for, render_prompt
from humpback.evaluation.pairwise import (VERDICT_PREFILL, judge_tasks, judgement_rows_generate, judgement_rows_logits,
                                          parse_verdict)
from humpback.generation.base import ChoiceProbs
from humpback.prompts import EVAL_SYSTEM_PROMPT, render_pairwise, template

PAIRWISE = (
    "Below is an instruction from a user and two candidate answers, Answer A and Answer B. Decide which answer is "
    "the better response of a helpful AI Assistant to the instruction: the one that does what the user asked more "
    "accurately, completely and clearly. Judge the content only: neither the order in which the answers appear nor "
    "their length is a reason to prefer one. If they are equally good, or equally bad, the verdict is a tie.\n"
    "\n"
    'Please first give a brief reasoning, then write "Winner: A", "Winner: B" or "Winner: tie" in the last line.\n'
    "\n"
    "Instruction:\n"
    "What is {x}?\n"
    "\n"
    "Answer A:\n"
    "It is {y}.\n"
    "\n"
    "Answer B:\n"
    "No idea."
)


def test_pairwise_prompt_word_for_word():
    assert render_pairwise("What is {x}?", "It is {y}.", "No idea.") == PAIRWISE
    assert template("pairwise").endswith("Answer A:\n{answer_a}\n\nAnswer B:\n{answer_b}")


def test_both_system_tags_at_inference():
    assert EVAL_SYSTEM_PROMPT == "Answer in the style of an AI Assistant. Answer with knowledge from web search."


def test_logits_prompt_ends_at_the_verdict_label(tiny_model_dir):
    from humpback.chat import load_chat_tokenizer

    tok = load_chat_tokenizer(str(tiny_model_dir))  # no template of its own: the fallback
    text = render_prompt(tok, messages_for("Which?", system="Judge."), prefill=VERDICT_PREFILL)
    assert text == "<|system|>\nJudge.\n<|user|>\nWhich?\n<|assistant|>\nWinner:"


@pytest.mark.parametrize("text, verdict, status", [
    ("A is complete, B is vague.\nWinner: A", "A", "ok"),
    ("Winner: B", "B", "ok"),
    ("Both are fine.\nWinner: tie", "tie", "ok"),
    ("**Winner:** b", "B", "ok"),
    ("Winner: [A]", "A", "ok"),
    ("Winner: Answer B", "B", "ok"),
    ("Winner: A at first sight... on reflection Winner: B", "B", "ok"),  # the last label wins
    ("Winner: both", None, "unknown"),
    ("I prefer the first one.", None, "missing"),
    ("   ", None, "empty"),
])
def test_parse_verdict(text, verdict, status):
    v = parse_verdict(text)
    assert (v.verdict, v.status) == (verdict, status)


def test_judge_tasks_put_each_answer_first_once():
    tasks = judge_tasks([{"prompt_id": "p1", "instruction": "Q?", "model_answer": "mine",
                          "reference_answer": "theirs"}])
    assert [t["order"] for t in tasks] == ["model_first", "reference_first"]
    assert tasks[0]["user_turn"] == render_pairwise("Q?", "mine", "theirs")
    assert tasks[1]["user_turn"] == render_pairwise("Q?", "theirs", "mine")


def test_judgement_rows_keep_the_raw_text_and_probabilities():
    tasks = judge_tasks([{"prompt_id": "p1", "instruction": "Q?", "model_answer": "m", "reference_answer": "r"}])
    rows = judgement_rows_generate(tasks, ["Winner: A", "no verdict"], "judge-x")
    assert rows == [
        {"prompt_id": "p1", "order": "model_first", "mode": "generate", "verdict": "A", "p_a": None, "p_b": None,
         "outcome": 1.0, "raw": "Winner: A", "parse_status": "ok", "judge": "judge-x"},
        {"prompt_id": "p1", "order": "reference_first", "mode": "generate", "verdict": None, "p_a": None, "p_b": None,
         "outcome": None, "raw": "no verdict", "parse_status": "missing", "judge": "judge-x"},
    ]
    rows = judgement_rows_logits(tasks, [ChoiceProbs((0.8, 0.2), 0.5), ChoiceProbs((0.6, 0.4), 0.25)], "judge-x")
    assert [r["verdict"] for r in rows] == ["A", "A"]
    assert [r["outcome"] for r in rows] == [pytest.approx(0.8), pytest.approx(0.4)]
    assert json.loads(rows[0]["raw"]) == {"A": 0.8, "B": 0.2, "mass": 0.5}
    assert all(r["parse_status"] == "ok" and r["mode"] == "logits" for r in rows)
