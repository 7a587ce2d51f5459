"""The weave rubric judge (issue 15): the published layout, the yes/no log-odds checked by hand on the
tiny model, the weighted mean and the soft minimum, top-logprob reading."""

import json
import math

import pytest

from humpback.errors import DataError
from humpback.generation.base import AnswerLogprobs
from humpback.generation.logprobs import answer_logprobs_from_top
from humpback.judges.rubric import (ANSWERS, answer_log_odds, combine, histogram_bin, load_rubric, parse_rubric,
                                    principle_stats, rows_from_answers)

LAYOUT = """==[PREAMBLE]==
Answer yes or no and only yes or no.

You judge answers to questions about {things}.

==[Principle: Answers The Question; Weight: 2.0; Answer: Yes]==
{preamble}

=== Begin Prompt ===
{prompt}
=== End Prompt ===

=== Begin Response ===
{response}
=== End Response ===

Does the response answer the question?

==[Principle: Rambles; Weight: 0.5; Answer: No]==
{preamble}{parent_q}
Does this response ramble?

=== Begin Response ===
{response}
=== End Response ===
"""


def test_parse_the_published_layout():
    rubric = parse_rubric(LAYOUT, "hermes.txt")
    assert rubric.preamble == "Answer yes or no and only yes or no.\n\nYou judge answers to questions about {things}."
    assert [(p.name, p.weight, p.answer, p.sign) for p in rubric.principles] == \
        [("Answers The Question", 2.0, "yes", 1), ("Rambles", 0.5, "no", -1)]
    assert rubric.principles[1].body == "{preamble}{parent_q}\nDoes this response ramble?\n\n" \
                                        "=== Begin Response ===\n{response}\n=== End Response ==="
    question = rubric.question(rubric.principles[0], "What is {x}?", "It is 2.")
    assert question == ("Answer yes or no and only yes or no.\n\nYou judge answers to questions about {things}.\n\n"
                        "=== Begin Prompt ===\nWhat is {x}?\n=== End Prompt ===\n\n"
                        "=== Begin Response ===\nIt is 2.\n=== End Response ===\n\n"
                        "Does the response answer the question?")
    assert rubric.question(rubric.principles[1], "q", "r").startswith(
        "Answer yes or no and only yes or no.\n\nYou judge answers to questions about {things}.\nDoes this")
    # A preamble may also simply come before the first principle.
    bare = parse_rubric("Be strict.\n==[Principle: Short; Weight: 1; Answer: yes]==\nIs {response} short?")
    assert bare.preamble == "Be strict." and bare.principles[0].answer == "yes"
    assert bare.text_hash != rubric.text_hash


@pytest.mark.parametrize("header, message", [
    ("==[Principle: X; Weight 1.0; Answer: Yes]==", "without a ':'"),
    ("==[Principle: X; Weight: heavy; Answer: Yes]==", "not a number"),
    ("==[Principle: X; Weight: 1.0; Answer: Maybe]==", "must be Yes or No"),
    ("==[Principle: X; Answer: Yes]==", "has no weight"),
])
def test_bad_headers_are_named(header, message):
    with pytest.raises(DataError, match=message):
        parse_rubric(f"{header}\nIs it good?", "r.txt")
    with pytest.raises(DataError, match="no '==\\[Principle"):
        parse_rubric("just text", "r.txt")


def test_the_paper_rubric_ships_with_the_package(tmp_path):
    rubric = load_rubric(None)
    assert len(rubric.principles) == 9
    assert {p.answer for p in rubric.principles} == {"yes", "no"}
    assert all("{prompt}" in p.body and "{response}" in p.body for p in rubric.principles)
    assert "perspective" in " ".join(p.body for p in rubric.principles)
    (tmp_path / "r.txt").write_text(LAYOUT)
    assert load_rubric(str(tmp_path / "r.txt")).principles[1].name == "Rambles"


def test_a_rubric_from_a_dataset_folder(tmp_path):
    folder = tmp_path / "rubric-dataset"
    folder.mkdir()
    head, rest = LAYOUT.split("==[Principle: Rambles", 1)
    with open(folder / "train.jsonl", "w") as f:
        f.write(json.dumps({"text": head}) + "\n" + json.dumps({"text": "==[Principle: Rambles" + rest}) + "\n")
    rubric = load_rubric(str(folder))
    assert [p.name for p in rubric.principles] == ["Answers The Question", "Rambles"]


def test_soft_minimum_and_weighted_mean():
    scores, weights = [1.0, -2.0, 3.0], [1.0, 1.0, 2.0]
    assert combine(scores, weights, "mean") == pytest.approx((1 - 2 + 6) / 4)
    t = 0.5
    by_hand = -t * math.log(0.25 * math.exp(-1 / t) + 0.25 * math.exp(2 / t) + 0.5 * math.exp(-3 / t))
    assert combine(scores, weights, "softmin", t) == pytest.approx(by_hand)
    assert combine(scores, weights, "softmin", 0.01) == pytest.approx(-2.0 - 0.01 * math.log(0.25), abs=1e-9)
    assert combine(scores, weights, "softmin", 1e4) == pytest.approx(1.25, abs=1e-3)
    assert combine(scores, weights, "softmin", 1.0) < combine(scores, weights, "mean")
    assert combine([None, 2.0], [5.0, 1.0], "mean") == 2.0  # a principle without a score is left out
    assert combine([None, None], [1.0, 1.0]) is None


def test_log_odds_from_top_logprobs():
    top = [(" Yes", math.log(0.5)), ("yes", math.log(0.1)), ("Ġno", math.log(0.2)), (" maybe", math.log(0.05))]
    a = answer_logprobs_from_top(top, ANSWERS)
    assert a.logprobs[0] == pytest.approx(math.log(0.6)) and a.logprobs[1] == pytest.approx(math.log(0.2))
    assert answer_log_odds(*a.logprobs, a.floor) == pytest.approx(math.log(3))
    only_yes = answer_logprobs_from_top([("YES", math.log(0.9)), ("x", math.log(0.02))], ANSWERS)
    assert only_yes.logprobs[1] is None and only_yes.floor == pytest.approx(math.log(0.02))
    assert answer_log_odds(*only_yes.logprobs, only_yes.floor) == pytest.approx(math.log(0.9 / 0.02))
    neither = answer_logprobs_from_top([("x", -0.1)], ANSWERS)
    assert answer_log_odds(*neither.logprobs, neither.floor) is None


def test_rows_from_answers_sign_weight_and_count_failures():
    rubric = parse_rubric(LAYOUT)
    cands = [{"candidate_id": "a"}, {"candidate_id": "b"}]
    answers = [[AnswerLogprobs((math.log(0.8), math.log(0.2))), AnswerLogprobs((math.log(0.3), math.log(0.6)))],
               [AnswerLogprobs((None, None), math.log(0.01)), AnswerLogprobs((None, None), math.log(0.01))]]
    a, b = rows_from_answers(cands, rubric, answers, "judge", "mean", 1.0)
    s1, s2 = math.log(4), -math.log(0.5)  # Answer: No flips the sign: "does not ramble" is good
    assert a["principles"] == pytest.approx([s1, s2])
    assert a["value"] == pytest.approx((2 * s1 + 0.5 * s2) / 2.5) and a["parse_status"] == "ok"
    assert a["score"] == histogram_bin(a["value"]) and a["choice_mass"] == pytest.approx((1.0 + 0.9) / 2)
    assert b["value"] is None and b["parse_status"] == "no_answer_token" and b["principle_failures"] == 2
    stats = principle_stats([{"principle": p.name, "weight": p.weight, "answer": p.answer} for p in rubric.principles],
                            [a, b], kept=set())
    assert stats[0]["fails"] == 0 and stats[0]["failures"] == 1
    assert [s["worst_of_rejected"] for s in stats] == [0, 1]  # pair a is weakest on not rambling
    assert [histogram_bin(x) for x in (-10, -1, 0, 1, 10)] == [1, 2, 3, 4, 5]


def test_log_odds_by_hand_on_the_tiny_model(tiny_model_dir):
    """hf's answer_logprobs is the log-sum-exp of the log-softmax over yes/Yes/YES (and no/No/NO), with
    and without a leading space, at the answer position, as computed here from the model's own logits."""
    import torch
    from transformers import AutoModelForCausalLM

    from humpback.generation.hf import HFGenerator

    from humpback.judges.rubric import questions

    gen = HFGenerator(str(tiny_model_dir), batch_size=4)
    pairs = [{"instruction": "What does `len` do?", "output": "It returns the number of items of a container."},
             {"instruction": "Explain the `pass` statement.", "output": "It does nothing."}]
    # Two unrelated prompts, and the rubric's questions about two pairs (batched by shared prefix).
    prompts = ["Is the sky blue? Answer:", "<|user|>\nDoes the answer help?\n<|assistant|>\n"]
    prompts += questions(gen.tokenizer, pairs, load_rubric(None), "Answer in the style of an AI Assistant.")
    got = gen.answer_logprobs(prompts, ANSWERS)
    tok = gen.tokenizer
    yes = tok.convert_tokens_to_ids(["yes", "Ġyes", "Yes", "ĠYes", "YES", "ĠYES"])
    no = tok.convert_tokens_to_ids(["no", "Ġno", "No", "ĠNo", "NO", "ĠNO"])
    assert tok.unk_token_id not in yes + no
    model = AutoModelForCausalLM.from_pretrained(str(tiny_model_dir)).eval()
    for prompt, answer in zip(prompts, got):
        ids = tok(prompt, return_tensors="pt")["input_ids"]
        with torch.no_grad():
            logp = torch.log_softmax(model(ids).logits[0, -1].float(), dim=-1)
        p_yes = sum(math.exp(logp[i].item()) for i in yes)
        p_no = sum(math.exp(logp[i].item()) for i in no)
        assert answer.logprobs[0] == pytest.approx(math.log(p_yes), abs=1e-4)
        assert answer.logprobs[1] == pytest.approx(math.log(p_no), abs=1e-4)
        assert answer_log_odds(*answer.logprobs) == pytest.approx(math.log(p_yes / p_no), abs=1e-4)
    gen.close()
