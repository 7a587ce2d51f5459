"""Issue 22, the pure parts: the additive judge's prompt and parsing, the pairing rule, the preference file
as TRL reads it, and the bad input that must stop with a clear error."""

from __future__ import annotations

import json

import pytest

from humpback.config import load_config
from humpback.errors import ConfigError, DataError
from humpback.generation import ChoiceProbs
from humpback.judges import SCORE_COLUMNS
from humpback.judges.additive import rows_both, rows_generate, rows_logits
from humpback.preference_pairs import (bank_from_rows, describe_pairing, dpo_rows, load_prompt_bank, pair_responses,
                                       pairing_rule, preferences_schema, response_id, sample_seed)
from humpback.prompts import render_additive, template
from humpback.scoring import parse_score

TINY = "recipes/tiny-cpu.yaml"

# --------------------------------------------------------------------------- the additive prompt

ADDITIVE = (
    "Review the user\u2019s question and the corresponding response using the additive 5-point scoring system "
    "described below. Points are accumulated based on the satisfaction of each criterion:\n"
    "- Add 1 point if the response is relevant and provides some information related to the user\u2019s inquiry, "
    "even if it is incomplete or contains some irrelevant content.\n"
    "- Add another point if the response addresses a substantial portion of the user\u2019s question, but does not "
    "completely resolve the query or provide a direct answer.\n"
    "- Award a third point if the response answers the basic elements of the user\u2019s question in a useful way, "
    "regardless of whether it seems to have been written by an AI Assistant or if it has elements typically found "
    "in blogs or search results.\n"
    "- Grant a fourth point if the response is clearly written from an AI Assistant\u2019s perspective, addressing "
    "the user\u2019s question directly and comprehensively, and is well-organized and helpful, even if there is "
    "slight room for improvement in clarity, conciseness or focus.\n"
    "- Bestow a fifth point for a response that is impeccably tailored to the user\u2019s question by an AI "
    "Assistant, without extraneous information, reflecting expert knowledge, and demonstrating a high-quality, "
    "engaging, and insightful answer.\n"
    "\n"
    "User: What is {x}?\n"
    "\n"
    "<response>It is {y}.</response>\n"
    "\n"
    "After examining the user\u2019s instruction and the response:\n"
    "- Briefly justify your total score, up to 100 words.\n"
    "- Conclude with the score using the format: \u201cScore: <total points>\u201d\n"
    "\n"
    "Remember to assess from the AI Assistant perspective, utilizing web search knowledge as necessary. To evaluate "
    "the response in alignment with this additive scoring model, we\u2019ll systematically attribute points based on "
    "the outlined criteria.")


def test_additive_prompt_renders_exactly():
    assert render_additive("What is {x}?", "It is {y}.") == ADDITIVE  # braces in the pair are left alone
    assert template("additive").count("{") == 2


@pytest.mark.parametrize("text, points, status", [
    ("Relevant and direct.\nScore: 4", 4, "ok"),
    ("No points at all.\nScore: 0", 0, "ok"),  # the additive scale starts at 0
    ("Score: 2\n...on reflection, Score: 5", 5, "ok"),  # the last one wins
    ("**Score:** 3 points", 3, "ok"),
    ("Score: 6", None, "out_of_range"),
    ("Score: 2.5", None, "not_integer"),
    ("four points", None, "missing"),
    ("  ", None, "empty"),
])
def test_additive_points_parse_exactly(text, points, status):
    parsed = parse_score(text, range(6))
    assert (parsed.score, parsed.status) == (points, status)
    assert parse_score("Score: 0").status == "out_of_range"  # the rating judge's 1..5 is unchanged


ROWS = [{"candidate_id": "p#0", "instruction": "Q?", "output": "A."},
        {"candidate_id": "p#1", "instruction": "Q?", "output": "B."}]


def _row(cid, mode, **kw):
    base = dict.fromkeys(SCORE_COLUMNS)
    base.update(candidate_id=cid, judge_kind="additive", mode=mode, parse_status="ok", judge="j")
    base.update(kw)
    return base


def test_additive_score_rows_exactly():
    assert rows_generate(ROWS, ["ok\nScore: 0", "Score: 9"], "j") == [
        _row("p#0", "generate", score=0, value=0.0, raw="ok\nScore: 0"),
        _row("p#1", "generate", value=None, raw="Score: 9", parse_status="out_of_range")]
    probs = [ChoiceProbs((0.5, 0.0, 0.0, 0.0, 0.0, 0.5), 0.8), ChoiceProbs(None, 0.0)]
    assert rows_logits(ROWS, probs, "j") == [
        _row("p#0", "logits", score=0, logits_score=0, expected_score=2.5, probs=[0.5, 0.0, 0.0, 0.0, 0.0, 0.5],
             choice_mass=0.8, value=2.5,
             raw=json.dumps({"0": 0.5, "1": 0.0, "2": 0.0, "3": 0.0, "4": 0.0, "5": 0.5})),  # a tie: the lower
        _row("p#1", "logits", value=None, raw="{}", choice_mass=0.0, parse_status="no_choice_in_top_logprobs")]
    both = rows_both(ROWS, ["Score: 3", "none"], probs, "j")
    assert [(r["mode"], r["score"], r["logits_score"], r["value"], r["parse_status"]) for r in both] == \
        [("both", 3, 0, 2.5, "ok"), ("both", None, None, None, "missing")]


# --------------------------------------------------------------------------- pairing


def _answers(prompt, values, truncated=()):
    responses, scores = [], []
    for i, v in enumerate(values):
        rid = response_id(prompt, i)
        responses.append({"response_id": rid, "prompt_id": prompt, "instruction": f"do {prompt}", "system": "S",
                          "sample": i, "response": f"{prompt} answer {i}", "truncated": i in truncated,
                          "generator": "g"})
        scores.append({"candidate_id": rid, "value": v, "judge": "j", "judge_kind": "additive"})
    return responses, scores


def _pair(responses, scores, **kw):
    return pair_responses(responses, scores, **kw)


def test_best_against_worst_and_every_skip_counted():
    parts = [_answers("a", [2.0, 4.0, 1.0, 4.0]),  # best 4 (sample 1, the first of the tie), worst 1
             _answers("b", [3.0, 3.0, 3.0]),  # a tie
             _answers("c", [None, None]),  # no answer scored
             _answers("d", [None, 5.0]),  # one scored
             _answers("e", [2.0, 2.5])]  # a margin of 0.5
    responses = [r for rs, _ in parts for r in rs]
    scores = [s for _, ss in parts for s in ss][::-1]  # the order of the score rows does not matter
    pairs, counts = _pair(responses, scores, min_margin=1.0)
    assert counts == {"prompts": 5, "pairs": 1, "none_scored": 1, "one_scored": 1, "tie": 1, "below_margin": 1,
                      "truncated_unpaired": 0, "invalid_unpaired": 0}
    assert pairs == [{"prompt_id": "a", "prompt": [{"role": "system", "content": "S"},
                                                   {"role": "user", "content": "do a"}],
                      "chosen": [{"role": "assistant", "content": "a answer 1"}],
                      "rejected": [{"role": "assistant", "content": "a answer 2"}],
                      "chosen_score": 4.0, "rejected_score": 1.0, "margin": 3.0, "chosen_id": "a#1",
                      "rejected_id": "a#2", "judge": "j", "judge_kind": "additive", "generator": "g"}]
    pairs, counts = _pair(responses, scores)  # no margin: any difference pairs
    assert [p["prompt_id"] for p in pairs] == ["a", "e"] and counts["below_margin"] == 0 and counts["tie"] == 1


def test_truncated_answers_are_judged_but_paired_only_when_kept():
    responses, scores = _answers("a", [5.0, 1.0, 3.0], truncated=(0,))
    pairs, counts = _pair(responses, scores)
    assert (pairs[0]["chosen_id"], pairs[0]["rejected_id"], counts["truncated_unpaired"]) == ("a#2", "a#1", 1)
    pairs, counts = _pair(responses, scores, keep_truncated=True)
    assert (pairs[0]["chosen_id"], counts["truncated_unpaired"]) == ("a#0", 0)


def test_an_answer_without_a_score_row_is_an_error():
    responses, scores = _answers("a", [1.0, 2.0])
    with pytest.raises(DataError, match="1 answers have no score row"):
        pair_responses(responses, scores[:1])


def test_pairing_rule_in_words():
    assert pairing_rule(0, False) == {"pair": "best_vs_worst", "score": "value", "min_margin": 0.0,
                                      "keep_truncated": False}
    assert describe_pairing(pairing_rule(0, True)) == \
        "the best and the worst judged answer to each prompt, with different scores, became a pair"
    assert describe_pairing(pairing_rule(1.5, False)) == (
        "the best and the worst judged answer to each prompt, at least 1.5 apart, became a pair; answers cut off "
        "at the token limit were not paired")


def test_each_sample_has_its_own_seed():
    assert len({sample_seed(42, i) for i in range(8)}) == 8 and sample_seed(42, 0) != 42


# --------------------------------------------------------------------------- the prompt bank


def test_prompt_bank_dedups_and_counts(tmp_path):
    assert bank_from_rows([{"id": 1, "instruction": " Q "}, {"id": 2, "instruction": "Q"},
                           {"id": 3, "instruction": ""},
                           {"id": 4, "instruction": "R"}], "id") == \
        ([{"prompt_id": "1", "instruction": "Q"}, {"prompt_id": "4", "instruction": "R"}], 1)
    path = tmp_path / "bank.jsonl"
    path.write_text('{"instruction": "Sort ABC.", "input": "now"}\n{"instruction": "Count."}\n')
    assert load_prompt_bank(str(path)) == [{"prompt_id": "000000", "instruction": "Sort ABC.\n\nnow"},
                                           {"prompt_id": "000001", "instruction": "Count."}]


def test_the_stage_reads_a_prompt_bank_file(tmp_path):
    """preferences.prompts naming a file: the stage's bank, deduplicated and cut at max_prompts, identified
    by the file's content (the bank stage code resolves builtin: names the same way)."""
    from types import SimpleNamespace

    from humpback.stages.preferences import prompt_bank

    path = tmp_path / "bank.jsonl"
    path.write_text('{"instruction": "Q1"}\n{"instruction": "Q1"}\n{"instruction": "Q2"}\n{"instruction": "Q3"}\n')
    cfg = load_config(TINY, ["train.objective=dpo", f"preferences.prompts={path}", "preferences.max_prompts=2"])
    rows, identity, inputs = prompt_bank(SimpleNamespace(cfg=cfg), 1)
    assert rows == [{"prompt_id": "000000", "instruction": "Q1"}, {"prompt_id": "000002", "instruction": "Q2"}]
    assert (identity["prompts"], identity["distinct"], identity["duplicates"], inputs) == (2, 3, 1, [])
    assert identity["bank"] == prompt_bank(SimpleNamespace(cfg=cfg), 2)[1]["bank"]  # the file, not the iteration


def test_the_candidates_bank_is_the_whole_pool_deduplicated():
    """preferences.prompts=candidates: every distinct instruction of augment/candidates (curated or not), its
    candidate_id as prompt_id, the candidates folder as the stage's input; the same bank in every iteration."""
    from types import SimpleNamespace

    from humpback.layout import CANDIDATES
    from humpback.stages.preferences import prompt_bank

    pool = [{"candidate_id": "c0", "instruction": "Q1"}, {"candidate_id": "c1", "instruction": " Q1 "},
            {"candidate_id": "c2", "instruction": ""}, {"candidate_id": "c3", "instruction": "Q2"}]
    cfg = load_config(TINY, ["train.objective=dpo", "preferences.prompts=candidates"])
    rt = SimpleNamespace(cfg=cfg, store=SimpleNamespace(read_rows={CANDIDATES: pool}.__getitem__))
    rows, identity, inputs = prompt_bank(rt, 1)
    assert rows == [{"prompt_id": "c0", "instruction": "Q1"}, {"prompt_id": "c3", "instruction": "Q2"}]
    assert (identity, inputs) == ({"bank": "candidates", "max_prompts": None, "prompts": 2, "distinct": 2,
                                   "duplicates": 1}, [CANDIDATES])
    assert prompt_bank(rt, 2)[:2] == (rows, identity)


def test_a_constant_schedule_is_fine_without_a_dpo_floor():
    cfg = load_config(TINY, ["train.objective=dpo", "train.lr_scheduler_type=constant", "dpo.min_lr_ratio=null"])
    assert (cfg.train.lr_scheduler_type, cfg.dpo.min_lr_ratio) == ("constant", None)


def test_an_empty_prompt_bank_is_a_clear_error(tmp_path):
    path = tmp_path / "empty.jsonl"
    path.write_text('{"instruction": "  "}\n')
    with pytest.raises(DataError, match=r"no prompt found \(1 records, none with a non-empty 'instruction'\)"):
        load_prompt_bank(str(path))
    path.write_text('{"question": "Q?"}\n')
    with pytest.raises(DataError, match="needs a string 'instruction' field, fields seen: \\['question'\\]"):
        load_prompt_bank(str(path))


# --------------------------------------------------------------------------- config


@pytest.mark.parametrize("overrides, message", [
    (["preferences.n=1"], "command line: 'preferences.n' must be at least 2 (a pair needs two answers to one prompt)"),
    (["preferences.temperature=0"], "'preferences.temperature' must be > 0 (at 0 the 4 answers to a prompt are all"),
    (["preferences.min_margin=-1"], "'preferences.min_margin' must be >= 0"),
    (["dpo.loss_type=kto"], "'dpo.loss_type' must be one of 'sigmoid', 'ipo'"),
    (["dpo.beta=0"], "'dpo.beta' must be > 0"),
    (["train.objective=dpo", "preferences.judge_kind=verifier"],
     "preferences.judge_kind 'verifier' needs 'curate.verifier'"),
    (["preferences.judge_kind=verifier", "preferences.judge=some/model"], "the verifier judge uses none"),
    (["preferences.prompts=no/such/bank.jsonl"], "command line: 'preferences.prompts': no such file or folder "
                                                 "'no/such/bank.jsonl'"),
    (["train.objective=dpo", "train.lr_scheduler_type=constant"],
     "dpo.min_lr_ratio left at the default, train.lr_scheduler_type set on the command line: 'dpo.min_lr_ratio' "
     "needs train.lr_scheduler_type linear or cosine, got 'constant'"),
])
def test_bad_preference_settings_are_clear_errors(overrides, message):
    with pytest.raises(ConfigError) as e:
        load_config(TINY, overrides)
    assert message in str(e.value)


def test_dpo_defaults_are_the_papers():
    cfg = load_config(TINY, ["train.objective=dpo"])
    p, d = cfg.preferences, cfg.dpo
    assert (p.n, p.temperature, p.top_p, p.judge_kind, p.min_margin) == (4, 0.7, 0.9, "additive", 0.0)
    assert (d.beta, d.loss_type, d.min_lr_ratio, d.per_device_train_batch_size * d.gradient_accumulation_steps) == \
        (0.1, "sigmoid", 0.1, 16)


# --------------------------------------------------------------------------- the file, as TRL reads it


def test_preference_file_is_what_trl_preprocesses(tmp_path, tiny_model_dir):
    """Written with the stage's schema, loaded back with `datasets`, recognised by TRL as conversational
    preference data and tokenised by DPOTrainer's own preprocessing: chosen and rejected end with EOS."""
    from datasets import load_dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import DPOConfig, DPOTrainer
    from trl.data_utils import is_conversational

    from humpback.chat import ensure_chat_template
    from humpback.store import write_table

    responses, scores = _answers("a", [1.0, 3.0])
    more = _answers("b", [2.0, 0.0])
    pairs, _ = pair_responses(responses + more[0], scores + more[1])
    path = tmp_path / "preferences.parquet"
    write_table(path, pairs, schema=preferences_schema())
    data = load_dataset("parquet", data_files=str(path), split="train")
    assert data.column_names[:4] == ["prompt_id", "prompt", "chosen", "rejected"]
    assert is_conversational(data[0]) and data[0]["chosen"] == [{"role": "assistant", "content": "a answer 1"}]
    assert dpo_rows(data) == [{k: p[k] for k in ("prompt", "chosen", "rejected")} for p in pairs]
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    ensure_chat_template(tok)
    args = DPOConfig(output_dir=str(tmp_path / "out"), report_to="none", bf16=False, max_length=256,
                     activation_checkpointing=False)
    trainer = DPOTrainer(model=AutoModelForCausalLM.from_pretrained(tiny_model_dir), args=args, train_dataset=data,
                         processing_class=tok)
    first = trainer.train_dataset[0]
    prompt = tok.apply_chat_template(pairs[0]["prompt"], tokenize=False, add_generation_prompt=True)
    assert tok.decode(first["prompt_ids"]) == prompt
    assert tok.decode(first["chosen_ids"]) == "a answer 1" + tok.eos_token
    assert tok.decode(first["rejected_ids"]) == "a answer 0" + tok.eos_token


def test_paired_difference_of_exact_match():
    from humpback.evaluation.exact import exact_match_change

    before = {"a": True, "b": False, "c": False, "d": True, "x": True}
    after = {"a": True, "b": True, "c": True, "d": False, "y": False}
    d = exact_match_change(before, after, n_resamples=500)
    assert ((d["prompts"], d["before"], d["after"], d["difference"], d["gained"], d["lost"])
            == (4, 0.5, 0.75, 0.25, 2, 1))
    lo, hi = d["difference_ci"]
    assert -1 <= lo < 0.25 < hi <= 1
    same = exact_match_change(before, before)
    assert same["difference"] == 0 and same["difference_ci"] == [0.0, 0.0]
