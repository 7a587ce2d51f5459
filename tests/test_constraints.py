"""Generation that obeys a format: constraints parsed and checked, enforced on the hf backend with the
tiny model, sent to vllm and openai servers in their documented fields, and rejection sampling counted."""

from __future__ import annotations

import json

import pytest

from humpback.config import load_config
from humpback.errors import ConfigError
from humpback.generation.base import Completion, SamplingParams
from humpback.generation.constraints import (BUILTINS, openai_structured_outputs, parse_constraint,
                                             vllm_structured_outputs)
from humpback.generation.rejection import describe_checked, generate_checked, merge_checked, retry_seed

PROMPTS = ["The with statement is used to", "x", "Explain the Python `for` statement. It iterates over",
           "Return the JSON encoding of", "A class definition defines a class object. Score:", "1. Sort a list\n2."]


# --------------------------------------------------------------------------- parsing and checking


def test_builtins_check_the_papers_formats():
    line = parse_constraint("builtin:instruction-line", 128)
    assert line.check("What does the with statement do?") and line.check(" Explain it.")
    assert not line.check("") and not line.check("   ") and not line.check("Two\nlines")
    score = parse_constraint("builtin:score", 256)
    assert score.check("The answer is clear and complete.\nScore: 5") and score.check("Score: 1")
    assert not score.check("Score: 6") and not score.check("Good answer.") and not score.check("x\nScore: 4 ok")
    assert not score.check("x" * 245 + "\nScore: 3")  # longer than 256 tokens could hold
    tasks = parse_constraint("builtin:task-list", 1024)
    assert tasks.check(" Sort a list.\n10. Reverse a string.\n11. Name three colours.")
    assert not tasks.check(" Sort a list.\n\nReverse a string.")


def test_kinds_parse_check_and_say_what_is_wrong(tmp_path):
    assert parse_constraint("regex:[0-9]+").check("42") and not parse_constraint("regex:[0-9]+").check("4a")
    choice = parse_constraint("choice:yes|no")
    assert choice.check("no") and not choice.check("No")
    schema = tmp_path / "s.json"
    schema.write_text(json.dumps({"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}))
    js = parse_constraint(f"json:{schema}")
    assert js.check('{"a": 3}') and not js.check('{"a": "3"}') and not js.check("{")
    gbnf = tmp_path / "yn.gbnf"
    gbnf.write_text('root ::= "yes" | "no" " thanks"?\n')
    grammar = parse_constraint(f"grammar:{gbnf}")
    assert grammar.check("no thanks") and grammar.check("yes") and not grammar.check("maybe")
    for bad, words in [("nothing", "KIND:VALUE"), ("builtin:haiku", "unknown built-in"), ("regex:(", "not a regular"),
                       ("choice:a||b", "non-empty"), ("json:{oops", "not JSON"),
                       (f"json:{tmp_path}/none.json", "cannot read"),
                       ("yaml:x", "unknown kind")]:
        with pytest.raises(ConfigError, match=words):
            parse_constraint(bad)
    bad_grammar = tmp_path / "bad.gbnf"
    bad_grammar.write_text("root ::= (")
    with pytest.raises(ConfigError, match="not an EBNF/GBNF grammar"):
        parse_constraint(f"grammar:{bad_grammar}")


def test_identity_follows_the_resolved_format(tmp_path):
    a, b = parse_constraint("builtin:score", 256), parse_constraint("builtin:score", 128)
    assert a.identity()["spec"] == b.identity()["spec"] == "builtin:score" and a.digest != b.digest
    g = tmp_path / "g.gbnf"
    g.write_text('root ::= "a"')
    before = parse_constraint(f"grammar:{g}").identity()
    g.write_text('root ::= "b"')
    assert parse_constraint(f"grammar:{g}").identity()["hash"] != before["hash"]


# --------------------------------------------------------------------------- request shapes


VLLM_STRUCTURED_FIELDS = {"json", "regex", "choice", "grammar", "json_object", "structural_tag", "whitespace_pattern"}
VLLM_SAMPLING_FIELDS = {"n", "temperature", "top_p", "max_tokens", "seed", "skip_special_tokens", "presence_penalty",
                        "stop", "include_stop_str_in_output", "structured_outputs"}


@pytest.mark.parametrize("spec,field,value", [
    ("regex:[0-9]+", "regex", "[0-9]+"), ("choice:yes|no", "choice", ["yes", "no"]),
    ('json:{"type": "integer"}', "json", {"type": "integer"}),
])
def test_vllm_and_openai_requests_use_the_documented_structured_output_fields(spec, field, value):
    from humpback.generation.openai import completion_body
    from humpback.generation.vllm import sampling_kwargs

    c = parse_constraint(spec)
    assert vllm_structured_outputs(c) == {field: value}
    kwargs = sampling_kwargs(SamplingParams(temperature=0.7, top_p=0.9, max_new_tokens=32, constraint=c), "p")
    assert set(kwargs) <= VLLM_SAMPLING_FIELDS and kwargs["structured_outputs"] == {field: value}
    assert set(kwargs["structured_outputs"]) <= VLLM_STRUCTURED_FIELDS
    body = completion_body("m", "p", SamplingParams(max_new_tokens=32, constraint=c))
    assert body["structured_outputs"] == {field: value} == openai_structured_outputs(c)["structured_outputs"]
    assert not any(k.startswith("guided_") for k in body)  # ignored since vLLM 0.12
    assert "structured_outputs" not in completion_body("m", "p", SamplingParams(max_new_tokens=32))
    assert "structured_outputs" not in sampling_kwargs(SamplingParams(max_new_tokens=32), "p")


def test_a_builtin_goes_to_servers_as_its_regex(tmp_path):
    c = parse_constraint("builtin:score", 64)
    assert vllm_structured_outputs(c) == {"regex": c.value}
    g = tmp_path / "g.gbnf"
    g.write_text('root ::= "a"')
    assert vllm_structured_outputs(parse_constraint(f"grammar:{g}")) == {"grammar": 'root ::= "a"'}


# --------------------------------------------------------------------------- rejection sampling


def fake_generate(calls):
    """Answers "<prompt>#<seed>" as Completions; records each call's (prompts, seed)."""
    def generate(prompts, params):
        calls.append((list(prompts), params.seed))
        return [Completion(f"{p}#{params.seed}") for p in prompts]
    return generate


def test_rejection_sampling_counts_are_exact_with_a_validator_that_rejects_a_known_fraction():
    # Every prompt i is accepted only at attempt (i % 4): a quarter pass at once, a quarter at each retry.
    prompts = [f"p{i}" for i in range(40)]
    seeds = [retry_seed(7, a) for a in range(3)]

    def validator(text):
        prompt, seed = text.split("#")
        return seeds.index(int(seed)) == int(prompt[1:]) % 4

    calls = []
    out = generate_checked(fake_generate(calls), prompts, SamplingParams(temperature=0.7, seed=7), validator, 3)
    assert [len(p) for p, _ in calls] == [40, 30, 20] and [s for _, s in calls] == seeds
    assert out.stats["rows"] == 40 and out.stats["tries"] == 90 and out.stats["passed_attempts"] == 30
    assert out.stats["accepted"] == 30 and out.stats["never_passed"] == 10 and out.stats["validator_rejections"] == 60
    assert out.tries == [1 if i % 4 == 0 else 2 if i % 4 == 1 else 3 for i in range(40)]
    # Rows that never passed keep their last attempt.
    assert [t for t, ok in zip(out.texts, out.passed) if not ok] == [f"p{i}#{seeds[2]}" for i in range(3, 40, 4)]
    merged = merge_checked([out.stats, out.stats], None, {"verifier": "m:f"}, 3)
    assert merged["tries"] == 180 and merged["acceptance_rate"] == 60 / 180 and merged["never_passed"] == 20
    assert describe_checked("augment", merged, "hf") == ["augment: 20 of 80 rows never passed in 3 tries; kept with "
                                                         "their last attempt"]


def test_a_server_that_ignores_the_constraint_is_counted_and_warned_about():
    calls = []
    c = parse_constraint("choice:yes|no")
    out = generate_checked(fake_generate(calls), ["a", "b"], SamplingParams(constraint=c))
    assert out.stats["violations"] == 2 and out.stats["never_passed"] == 2 and out.texts == ["a#0", "b#0"]
    notes = describe_checked("score 1", merge_checked([out.stats], c.identity()), "openai")
    assert "2 of 2 answers broke the constraint 'choice:yes|no'" in notes[0] and "ignored" in notes[0]


def test_a_validator_that_raises_rejects_that_attempt_only():
    def validator(text):
        if text.startswith("a"):
            raise ValueError("boom")
        return True

    out = generate_checked(fake_generate([]), ["a", "b"], SamplingParams(temperature=1.0), validator, 2)
    assert out.passed == [False, True] and out.stats["validator_errors"] == 2 and out.stats["tries"] == 3


def test_without_checks_one_plain_call():
    calls = []
    out = generate_checked(fake_generate(calls), ["a"], SamplingParams(), None, 1)
    assert len(calls) == 1 and out.passed == [True] and out.stats["accepted"] == 1 and out.stats["tries"] == 1


# --------------------------------------------------------------------------- config


def _cfg(*overrides):
    return load_config("recipes/tiny-cpu.yaml", list(overrides))


def test_config_errors_name_the_key_and_who_set_it():
    with pytest.raises(ConfigError, match=r"command line: 'augment.constraint': unknown built-in"):
        _cfg("augment.constraint=builtin:haiku")
    with pytest.raises(ConfigError, match=r"'curate.max_tries' is 3, but greedy decoding"):
        _cfg("curate.mode=both", "curate.constraint=builtin:score", "curate.max_tries=3")
    with pytest.raises(ConfigError, match=r"nothing to retry against"):
        _cfg("augment.max_tries=2")
    with pytest.raises(ConfigError, match=r"apply to the rating judge's generated judgements"):
        _cfg("curate.constraint=builtin:score", "curate.mode=logits")
    with pytest.raises(ConfigError, match=r"package.module:function"):
        _cfg("augment.validator=not a path")
    cfg = _cfg("augment.constraint=builtin:instruction-line", "augment.max_tries=3",
               "curate.mode=both", "curate.constraint=builtin:score")
    assert cfg.augment.max_tries == 3 and cfg.curate.scoring_settings()["constraint"] == "builtin:score"
    assert "constraint" not in _cfg().curate.scoring_settings()  # unset: older runs keep their stage key


# --------------------------------------------------------------------------- enforced on hf


@pytest.fixture(scope="module")
def gen(tiny_model_dir):
    from humpback.generation.hf import HFGenerator

    g = HFGenerator(str(tiny_model_dir), device="cpu", batch_size=4)
    yield g
    g.close()


@pytest.mark.parametrize("name", BUILTINS)
def test_each_builtin_is_enforced_on_hf_with_the_tiny_model(gen, name):
    c = parse_constraint(f"builtin:{name}", 48)
    free = gen.generate(PROMPTS, SamplingParams(max_new_tokens=48))
    assert not all(c.check(t) for t in free)  # the random model does not obey on its own
    for temperature in (0.0, 0.8):
        out = gen.generate(PROMPTS, SamplingParams(temperature=temperature, max_new_tokens=48, seed=3, constraint=c))
        bad = [str(t) for t in out if not c.check(t)]
        assert not bad, f"{name} at temperature {temperature}: {bad}"


def test_choices_and_json_are_enforced_on_hf(gen):
    c = parse_constraint("choice:yes|no|maybe")
    out = gen.generate(PROMPTS, SamplingParams(max_new_tokens=8, constraint=c))
    assert all(str(t) in ("yes", "no", "maybe") and t.finish_reason == "stop" for t in out)
    js = parse_constraint('json:{"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"], '
                          '"additionalProperties": false}')
    out = gen.generate(PROMPTS, SamplingParams(max_new_tokens=24, constraint=js))
    assert all(js.check(t) for t in out), [str(t) for t in out]


def test_a_stop_string_is_not_part_of_the_format():
    tasks = parse_constraint("builtin:task-list", 1024)
    calls = []

    def generate(prompts, params):
        calls.append(params)
        return [Completion(" Sort a list.\n10. Name three colours.\n16."), Completion(" Sort.\n\nNo")]

    out = generate_checked(generate, ["a", "b"], SamplingParams(stop=("\n\n", "16."), constraint=tasks))
    assert out.passed == [True, False]  # "16." ended the first; the second broke the format before its stop


def test_the_rating_judge_obeys_builtin_score_and_records_its_checks(gen):
    from types import SimpleNamespace

    from humpback.config import CurateConfig
    from humpback.judges import CurationJudge, score_rows

    model = SimpleNamespace(tokenizer=gen.tokenizer, generator=gen, usage=lambda: gen.usage)
    cfg = CurateConfig(mode="generate", max_new_tokens=40, constraint="builtin:score")
    rows = [{"candidate_id": str(i), "instruction": p, "output": "An answer."} for i, p in enumerate(PROMPTS)]
    judge = CurationJudge("tiny", cfg, model, seed=0)
    scored = score_rows(rows, judge)
    assert [r["parse_status"] for r in scored] == ["ok"] * len(rows) and all(r["score"] in range(1, 6) for r in scored)
    [checks] = judge.take_checks()
    assert checks["rows"] == checks["accepted"] == len(rows) and checks["violations"] == 0 and not judge.checks
    free = score_rows(rows, CurationJudge("tiny", CurateConfig(mode="generate", max_new_tokens=40), model, seed=0))
    assert sum(r["parse_status"] != "ok" for r in free) == len(rows)  # the random model never writes a score


def test_config_takes_the_self_instruct_and_pairwise_constraints():
    cfg = _cfg("augment.task_constraint=builtin:task-list", "eval.judge_mode=generate",
               "eval.judge_constraint=builtin:verdict")
    assert cfg.augment.task_constraint == "builtin:task-list" and cfg.eval.judge_constraint == "builtin:verdict"
    with pytest.raises(ConfigError, match=r"'augment.task_constraint': unknown built-in"):
        _cfg("augment.task_constraint=builtin:tasks")
    with pytest.raises(ConfigError,
                       match=r"command line: 'eval.judge_constraint' applies to eval.judge_mode generate"):
        _cfg("eval.judge_constraint=builtin:verdict", "eval.judge_mode=logits")
