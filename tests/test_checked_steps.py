"""Issue 23 on the steps that had no validator or retries: Self-Instruct's task lists
(``augment.task_validator``, ``task_max_tries``), its instances (``augment.instance_constraint``,
``instance_validator``; greedy, one try) and the pairwise judge (``eval.judge_validator``,
``judge_max_tries``, ``judge_temperature``). Counts are exact with scripted generators whose answers depend
on the attempt; the instance constraint is enforced on the tiny model with the hf backend; keys at their
defaults leave every stage key as it was."""

from __future__ import annotations

import re
from pathlib import Path
from types import SimpleNamespace

import pytest

from humpback import layout
from humpback.chat import load_chat_tokenizer
from humpback.config import load_config
from humpback.errors import ConfigError
from humpback.generation.base import Usage
from humpback.generation.rejection import retry_seed
from humpback.loop import open_run, prepare
from humpback.stages.evaluate import judge_stage
from humpback.stages.self_instruct import instances_stage, tasks_stage
from humpback.store import read_table

ROOT = Path(__file__).parent.parent
RECIPE = ROOT / "recipes" / "self-instruct-tiny.yaml"
TINY = ROOT / "recipes" / "tiny-cpu.yaml"
SI = ["augment.target_tasks=40", "augment.prompts_per_round=4", "augment.max_idle_rounds=1",
      "augment.task_max_new_tokens=12", "augment.instance_max_new_tokens=24",
      "augment.classification_max_new_tokens=24", "shard_size=8", "generation.max_prompt_tokens=192",
      "generation.batch_size=4", "tracking.progress=false"]
VALIDATORS = '''
def no_bad(text):
    """Rejects a generation that says BAD."""
    return "BAD" not in text
'''
# Continuations of the task prompt, distinct enough to pass the ROUGE-L filter: one task each.
TASKS = ["Name three rivers of Europe.", "Convert this recipe into metric units.", "Summarise the plot of a fable.",
         "Suggest a title for the essay.", "Rewrite the sentence in the passive voice.",
         "Classify the animal as mammal or bird.", "Write a limerick about spring rain.",
         "Explain why the sky looks blue."]


@pytest.fixture
def validators(tmp_path, monkeypatch):
    (tmp_path / "step_validators.py").write_text(VALIDATORS)
    monkeypatch.syspath_prepend(str(tmp_path))
    return "step_validators:no_bad"


class Scripted:
    """A generator whose answer to prompt ``i`` of a call is ``script(i, attempt, prompt)``; the attempt is
    read from the sampling seed (rejection sampling's retry seeds)."""

    name = "scripted"

    def __init__(self, base_seed: int, script):
        self.attempts = {retry_seed(base_seed, k): k for k in range(8)}
        self.script, self.calls, self.usage = script, [], Usage()

    def generate(self, prompts, params):
        attempt = self.attempts[params.seed]
        self.calls.append((len(prompts), attempt))
        return [self.script(i, attempt, p) for i, p in enumerate(prompts)]

    def close(self):
        pass


def scripted_model(rt, monkeypatch, script):
    gen = Scripted(rt.cfg.random_seed, script)
    handle = SimpleNamespace(generator=gen, served="scripted", close=lambda: None, usage=lambda: Usage())
    monkeypatch.setattr(rt, "model", lambda *a, **kw: handle)
    return gen


# --------------------------------------------------------------------------- task lists


def _tasks_run(tmp_path, monkeypatch, overrides, script):
    rt = open_run(load_config(RECIPE, [*SI, *overrides]), tmp_path / "run", log=lambda _: None)
    prepare(rt)
    gen = scripted_model(rt, monkeypatch, script)
    result = tasks_stage(rt)
    rt.close()
    return result, gen, rt


def bad_first_try(i, attempt, prompt):
    """Prompts 1 and 3 of every call say BAD on their first attempt; every retry is good."""
    n = len(prompt) % len(TASKS)  # a different task per prompt (the prompts differ)
    return f" {TASKS[(n + i) % len(TASKS)]}" + (" BAD" if attempt == 0 and i % 2 else "") + "\n\n"


def test_task_lists_are_retried_until_the_validator_accepts(tmp_path, monkeypatch, validators):
    result, gen, rt = _tasks_run(tmp_path, monkeypatch, [f"augment.task_validator={validators}",
                                                         "augment.task_max_tries=3"], bad_first_try)
    checks = result.stats["checks"]
    rounds = result.stats["prompts"] // 4
    assert gen.calls == [(4, 0), (2, 1)] * rounds  # two of four prompts retried once per round
    assert {k: checks[k] for k in ("rows", "tries", "passed_attempts", "accepted", "never_passed",
                                   "validator_rejections", "violations")} == \
        {"rows": 4 * rounds, "tries": 6 * rounds, "passed_attempts": 4 * rounds, "accepted": 4 * rounds,
         "never_passed": 0, "validator_rejections": 2 * rounds, "violations": 0}
    assert checks["validator"]["verifier"] == validators and checks["max_tries"] == 3
    assert result.stats["rejected"]["failed_check"] == 0
    assert not any("BAD" in r["instruction"] for r in read_table(rt.store.path(layout.TASKS)))


def test_a_task_list_that_never_passes_is_rejected_whole_and_counted(tmp_path, monkeypatch, validators):
    result, gen, rt = _tasks_run(tmp_path, monkeypatch, [f"augment.task_validator={validators}"], bad_first_try)
    checks, rounds = result.stats["checks"], result.stats["prompts"] // 4
    assert gen.calls == [(4, 0)] * rounds  # one try: nothing retried
    assert checks["never_passed"] == checks["validator_rejections"] == 2 * rounds and checks["tries"] == 4 * rounds
    rejected = read_table(rt.store.path(layout.TASKS_REJECTED))
    failed = [r for r in rejected if r["reason"] == "failed_check"]
    assert len(failed) == result.stats["rejected"]["failed_check"] == 2 * rounds  # one task per failed list
    assert all(r["instruction"].endswith("BAD") for r in failed)
    assert not any("BAD" in r["instruction"] for r in read_table(rt.store.path(layout.TASKS)))


# --------------------------------------------------------------------------- instances


def _instances_run(tmp_path, monkeypatch, overrides, script):
    rt = open_run(load_config(RECIPE, [*SI, "augment.target_tasks=8", *overrides]), tmp_path / "run",
                  log=lambda _: None)
    prepare(rt)
    scripted_model(rt, monkeypatch, lambda i, a, p: f" {TASKS[i % len(TASKS)]}\n\n")
    tasks_stage(rt)
    gen = scripted_model(rt, monkeypatch, script)
    return rt, gen


def instance_script(i, attempt, prompt):
    if prompt.rstrip().endswith("Is it classification?"):
        return " No"
    text = f"Input: case {i}\nOutput: answer {i}\n\n"
    return text + "BAD" if i % 3 == 0 else text


def test_instances_that_fail_the_validator_are_rejected_and_counted(tmp_path, monkeypatch, validators):
    rt, gen = _instances_run(tmp_path, monkeypatch, [f"augment.instance_validator={validators}",
                                                     "augment.max_instances=1"], instance_script)
    result = instances_stage(rt)
    rt.close()
    checks = result.stats["checks"]
    tasks = result.stats["tasks"]
    failing = sum(1 for start in range(0, tasks, 8) for i in range(min(8, tasks - start)) if i % 3 == 0)
    assert checks["rows"] == checks["tries"] == tasks and checks["max_tries"] == 1
    assert checks["never_passed"] == checks["validator_rejections"] == failing > 0
    rejected = read_table(rt.store.path(layout.REJECTED))
    assert sum(r["reason"] == "failed_check" for r in rejected) == result.stats["rejected"]["failed_check"]
    assert result.stats["rejected"]["failed_check"] >= failing  # every instance of a failed generation
    assert all("BAD" not in r["raw_generation"] for r in read_table(rt.store.path(layout.CANDIDATES)))


def test_the_instance_constraint_is_enforced_on_hf(tmp_path, monkeypatch):
    """The tiny random model, constrained: every instance generation matches the regex."""
    pattern = "Input: [a-z]{1,6}\nOutput: [a-z]{1,6}\n"
    rt = open_run(load_config(RECIPE, [*SI, "augment.target_tasks=6", f"augment.instance_constraint=regex:{pattern}",
                                       "augment.instance_max_new_tokens=24",
                                       "augment.classification_max_new_tokens=24"]),
                  tmp_path / "run", log=lambda _: None)
    prepare(rt)
    real = rt.model
    scripted_model(rt, monkeypatch, lambda i, a, p: f" {TASKS[i % len(TASKS)]}\n\n")
    tasks_stage(rt)
    monkeypatch.setattr(rt, "model", real)
    result = instances_stage(rt)
    rt.close()
    rows = read_table(rt.store.path(layout.CANDIDATES)) + read_table(rt.store.path(layout.REJECTED))
    assert rows and all(re.fullmatch(pattern, r["raw_generation"]) for r in rows), [r["raw_generation"] for r in rows]
    assert result.stats["checks"]["violations"] == 0 and result.stats["checks"]["constraint"]["spec"] == \
        f"regex:{pattern}"


# --------------------------------------------------------------------------- the pairwise judge


def _judge(tmp_path, monkeypatch, tiny_model_dir, overrides, script):
    cfg = load_config(TINY, ["eval.judge_mode=generate", "tracking.progress=false", "shard_size=4", *overrides])
    rt = open_run(cfg, tmp_path / "run", log=lambda _: None)
    prompts = [{"prompt_id": f"p{i}", "instruction": f"Question {i}?", "output": f"reference {i}"} for i in range(3)]
    ev = layout.evaluation("m0")
    rt.store.write_rows(layout.EVAL_PROMPTS, prompts)
    rt.store.write_rows(ev.answers, [{"prompt_id": p["prompt_id"], "instruction": p["instruction"],
                                      "output": f"answer {i}"} for i, p in enumerate(prompts)])
    sharded = rt.store.sharded_stage
    monkeypatch.setattr(rt.store, "sharded_stage",
                        lambda name, deps, *a, inputs=(), **kw: sharded(name, deps, *a, inputs=[], **kw))
    gen = Scripted(rt.cfg.random_seed, script)
    model = SimpleNamespace(generator=gen, tokenizer=load_chat_tokenizer(str(tiny_model_dir), None, None))
    result = judge_stage(rt, "m0", "outputs", SimpleNamespace(model=model, name="scripted", identity={"id": "s"}))
    rt.close()
    return result, gen


def verdict_script(i, attempt, prompt):
    """Judgement 0 of each call rambles on its first attempt (no verdict); the rest pick A."""
    return "It depends." if attempt == 0 and i == 0 else "A is better.\nWinner: A"


def test_pairwise_judgements_are_retried_against_the_validator(tmp_path, monkeypatch, tiny_model_dir):
    (tmp_path / "verdict_check.py").write_text("def has_winner(text):\n    return 'Winner:' in text\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    result, gen = _judge(tmp_path, monkeypatch, tiny_model_dir, [
        "eval.judge_validator=verdict_check:has_winner", "eval.judge_max_tries=2", "eval.judge_temperature=0.7"],
        verdict_script)
    assert gen.calls == [(6, 0), (1, 1)]  # 3 prompts x 2 orders in one shard; the rambling one retried
    checks = result.stats["checks"]
    assert (checks["rows"], checks["tries"], checks["validator_rejections"], checks["never_passed"]) == (6, 7, 1, 0)
    assert checks["validator"]["verifier"] == "verdict_check:has_winner" and checks["max_tries"] == 2
    assert result.stats["parse_failures"] == 0 and result.stats["judgements"] == 6


def test_without_retries_the_rambling_judgement_is_a_counted_parse_failure(tmp_path, monkeypatch, tiny_model_dir):
    result, gen = _judge(tmp_path, monkeypatch, tiny_model_dir, [], verdict_script)
    assert gen.calls == [(6, 0)] and "checks" not in result.stats
    assert result.stats["parse_failures"] == 1


# --------------------------------------------------------------------------- config


@pytest.mark.parametrize("overrides, message", [
    (["augment.task_max_tries=2"], "'augment.task_max_tries' is 2, but there is nothing to retry against "
                                   r"\(augment.task_constraint and augment.task_validator are unset\)"),
    (["augment.task_max_tries=0"], "'augment.task_max_tries' must be > 0"),
    (["augment.instance_constraint=builtin:nope"], "'augment.instance_constraint': unknown built-in"),
    (["eval.judge_mode=generate", "eval.judge_max_tries=2", "eval.judge_constraint=builtin:verdict"],
     r"'eval.judge_max_tries' is 2, but greedy decoding \(eval.judge_temperature 0\)"),
    (["eval.judge_mode=logits", "eval.judge_temperature=0.5"],
     "'eval.judge_temperature' applies to eval.judge_mode generate"),
    (["eval.judge_mode=generate", "eval.judge_temperature=-1"], "'eval.judge_temperature' must be >= 0"),
])
def test_the_new_keys_are_checked_and_blamed_on_who_set_them(overrides, message):
    with pytest.raises(ConfigError, match=message) as e:
        load_config(RECIPE if overrides[0].startswith("augment") else TINY, overrides)
    assert re.match(r"command line: |[\w.]+ set on the command line", str(e.value)), str(e.value)
