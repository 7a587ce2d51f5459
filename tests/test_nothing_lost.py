"""Nothing lost silently: an over-long judge prompt loses the end of its candidate output (counted), not
its rubric; an instruction that ran out of tokens is a counted reject; a server's top logprobs without
a score digit are a counted failure; and a left cut in the backends is logged."""

from __future__ import annotations

import pytest

from humpback.chat import load_chat_tokenizer
from humpback.config import AugmentConfig, CurateConfig
from humpback.generation import ChoiceProbs, Completion
from humpback.generation.base import encode_prompts
from humpback.generation.budget import fit_pair, prompt_tokens
from humpback.data.instructions import clean_instruction, merge_shard_stats
from humpback.judges.rating import judge_prompts, rows_both, rows_logits
from humpback.judges.stats import merge_score_stats, shard_score_stats

RUBRIC_END = 'then write "Score: <rating>" in the last line.'
INSTRUCTION = "How does the with statement work?"
OUTPUT = " ".join(f"The with statement calls __enter__ and then __exit__ (step {i})." for i in range(60))


@pytest.fixture(scope="module")
def tok(tiny_model_dir):
    return load_chat_tokenizer(str(tiny_model_dir))


def test_a_prompt_that_fits_is_left_alone(tok):
    [prompt] = judge_prompts(tok, [{"instruction": INSTRUCTION, "output": "Short."}], CurateConfig(), max_tokens=2048)
    assert prompt == judge_prompts(tok, [{"instruction": INSTRUCTION, "output": "Short."}], CurateConfig())[0]


@pytest.mark.parametrize("prefill", ["", "Score:"])
def test_an_over_long_judge_prompt_loses_the_end_of_its_output(tok, prefill):
    cfg = CurateConfig()
    candidates = [{"instruction": INSTRUCTION, "output": OUTPUT}, {"instruction": INSTRUCTION, "output": "Short."}]
    full = judge_prompts(tok, candidates, cfg, prefill)
    # Room for the rubric (long in the tiny tokenizer's small vocabulary) and about 150 output tokens.
    limit = prompt_tokens(tok, judge_prompts(tok, [{"instruction": INSTRUCTION, "output": ""}], cfg, prefill)[0]) + 150
    assert prompt_tokens(tok, full[0]) > limit + 300
    cut: list[int] = []
    prompts = judge_prompts(tok, candidates, cfg, prefill, max_tokens=limit, cut=cut)
    budget = limit - (1 if prefill else 0)  # logits scoring appends up to one token after "Score:"
    assert prompt_tokens(tok, prompts[0]) <= budget
    assert prompt_tokens(tok, prompts[0]) >= budget - 3  # as much of the output as fits
    assert prompts[1] == full[1] and cut[1] == 0
    assert cut[0] > 0
    # The rubric and its closing line stay, the instruction stays whole, the output keeps its start,
    # and the chat template's assistant header (and the prefill) still end the prompt.
    head, tail = full[0].split(OUTPUT)
    assert prompts[0].startswith(head) and RUBRIC_END in prompts[0] and INSTRUCTION in prompts[0]
    assert prompts[0].endswith(tail) and prompts[0].endswith("<|assistant|>\n" + prefill)
    kept = prompts[0][len(head): len(prompts[0]) - len(tail)]
    assert OUTPUT.startswith(kept) and len(OUTPUT) > len(kept) > 100
    assert len(tok(OUTPUT, add_special_tokens=False)["input_ids"]) - cut[0] == \
        len(tok(kept, add_special_tokens=False)["input_ids"])
    # What the backend then encodes is the fitted prompt whole: no left cut.
    assert (len(encode_prompts(tok, prompts[:1], limit, reserve=1 if prefill else 0)[0])
            == prompt_tokens(tok, prompts[0]))


def test_the_instruction_is_cut_only_when_the_output_cannot_make_room(tok):
    def render(instruction: str, output: str) -> str:
        return f"Rate this.\n{instruction}\n{output}\nScore:"

    fitted = fit_pair(tok, render, OUTPUT, "A short answer.", 60)
    assert fitted.output == "" and OUTPUT.startswith(fitted.instruction) and fitted.instruction
    assert prompt_tokens(tok, fitted.prompt) <= 60 and fitted.prompt.startswith("Rate this.\n")
    assert fitted.prompt.endswith("\n\nScore:")
    short = fit_pair(tok, render, "Q?", "A.", 60)
    assert (short.prompt, short.cut_tokens) == (render("Q?", "A."), 0)


def test_cut_judge_inputs_are_counted_in_the_score_stats():
    rows = rows_logits([{"candidate_id": "a"}, {"candidate_id": "b"}],
                             [ChoiceProbs((0.1, 0.1, 0.1, 0.2, 0.5), 0.9), ChoiceProbs((0.2,) * 5, 0.5)], "judge")
    for row, n in zip(rows, [37, 0]):
        row["judge_input_cut_tokens"] = n
    stats = merge_score_stats([shard_score_stats(rows), shard_score_stats(rows)])
    assert stats["judge_inputs_cut"] == 2 and stats["logits_failures"] == 0


def test_no_score_digit_among_the_top_logprobs_is_a_counted_failure():
    candidates = [{"candidate_id": "a"}, {"candidate_id": "b"}]
    probs = [ChoiceProbs((0.0, 0.0, 0.0, 0.2, 0.8), 0.7), ChoiceProbs(None, 0.0)]
    rows = rows_logits(candidates, probs, "judge")
    assert rows[1] == {"candidate_id": "b", "judge_kind": "rating", "mode": "logits", "score": None,
                       "logits_score": None, "expected_score": None, "probs": None, "choice_mass": 0.0, "value": None,
                       "raw": "{}", "parse_status": "no_choice_in_top_logprobs", "judge": "judge",
                       "judge_input_cut_tokens": None}
    assert rows[0]["parse_status"] == "ok" and rows[0]["logits_score"] == 5
    stats = merge_score_stats([shard_score_stats(rows)])
    assert stats["parse_failures"] == 1 and stats["parse_failure_kinds"] == {"no_choice_in_top_logprobs": 1}
    assert stats["logits_failures"] == 1 and stats["histogram"]["none"] == 1
    # In both mode the generated score still parses, and the logits failure is counted on its own.
    both = rows_both(candidates, ["Score: 4", "Score: 2"], probs, "judge")
    assert [(r["score"], r["logits_score"], r["parse_status"]) for r in both] == [(4, 5, "ok"), (2, None, "ok")]
    assert merge_score_stats([shard_score_stats(both)])["logits_failures"] == 1


def test_an_instruction_that_ran_out_of_tokens_is_rejected_as_truncated():
    cfg = AugmentConfig()
    raw = Completion("How does the with statement handle exceptions raised inside", "length")
    assert clean_instruction(raw, "The with statement ...", cfg, truncated=raw.finish_reason == "length") == \
        ("How does the with statement handle exceptions raised inside", "truncated")
    assert clean_instruction("How does it work?", "x", cfg, truncated=False) == ("How does it work?", "ok")
    assert clean_instruction("", "x", cfg, truncated=True) == ("", "empty")  # the first reason wins
    shards = [{"segments": 2, "candidates": 1, "rejected": {"empty": 0, "echo": 0, "degenerate": 0, "truncated": 1},
               "generic_instructions": 0, "truncated": 1, "instruction_chars": [10]},
              {"segments": 1, "candidates": 1, "rejected": {"empty": 0, "echo": 0, "degenerate": 0},
               "generic_instructions": 0, "instruction_chars": [12]}]
    merged = merge_shard_stats(shards)
    assert merged["rejected"] == {"empty": 0, "echo": 0, "degenerate": 0, "truncated": 1, "invalid": 0}
    assert merged["truncated"] == 1  # a shard written before the count existed adds nothing


def test_completion_is_a_string_that_keeps_its_finish_reason():
    import pickle

    import pyarrow as pa

    c = Completion("text", "length")
    assert c == "text" and isinstance(c, str) and c.finish_reason == "length"
    assert pickle.loads(pickle.dumps(c)).finish_reason == "length"
    assert pa.Table.from_pylist([{"raw": c}]).column("raw").to_pylist() == ["text"]
    assert Completion("x").finish_reason == "stop"


def test_a_left_cut_in_the_backend_is_logged(tok, caplog):
    with caplog.at_level("WARNING", logger="humpback.generation.base"):
        encode_prompts(tok, [OUTPUT, "short"], 50)
    assert caplog.messages == ["1 of 2 prompts were longer than 50 tokens and lost their beginning "
                               "(generation.max_prompt_tokens=50)"]
