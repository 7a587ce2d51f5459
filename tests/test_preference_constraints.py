"""Issue 23 on the preference sampler (``train.objective: dpo``'s responses stage): ``preferences.constraint``
enforced on the sampled answers with the hf backend, ``preferences.validator`` and ``max_tries`` rejection
sampling with exact counts, answers that never passed kept and counted but never paired, the config errors,
and a stage key that stays what it was when the three keys are at their defaults."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from humpback.config import load_config
from humpback.errors import ConfigError
from humpback.generation.base import Completion
from humpback.generation.rejection import merge_checked, retry_seed
from humpback.judges.verifier import verifier_identity
from humpback.loop import open_run
from humpback.preference_pairs import (answer_constraint, pair_responses, response_id, sample_answers, sample_seed,
                                       sampling_settings)
from humpback.stages.preferences import responses_stage
from humpback.store import read_table

TINY = Path(__file__).parent.parent / "recipes" / "tiny-cpu.yaml"
BANK = '{"instruction": "Name a colour."}\n{"instruction": "Say yes or no."}\n{"instruction": "Count to three."}\n'
VALIDATORS = '''
def short(text):
    """Accepts an answer of at most 2 characters."""
    return len(text) <= 2


def constant(row):
    """A verifier judge that scores every answer 1."""
    return 1.0
'''


@pytest.fixture
def validators(tmp_path, monkeypatch):
    (tmp_path / "pref_validators.py").write_text(VALIDATORS)
    monkeypatch.syspath_prepend(str(tmp_path))
    return "pref_validators"


def _cfg(tmp_path, *overrides):
    bank = tmp_path / "bank.jsonl"
    bank.write_text(BANK)
    return load_config(TINY, ["train.objective=dpo", f"preferences.prompts={bank}", "preferences.n=2",
                              "preferences.max_new_tokens=8", "preferences.judge_kind=verifier",
                              "curate.verifier=pref_validators:constant", "tracking.progress=false",
                              "generation.batch_size=4", *overrides])


def _open(tmp_path, cfg, monkeypatch, deps_seen: list):
    """The run's responses stage with the tiny base model standing in for model K (no training here) and
    ``deps_seen`` collecting the stage's key."""
    rt = open_run(cfg, tmp_path / "run", log=lambda _: None)
    base = rt.model
    monkeypatch.setattr(rt, "model", lambda *a, **kw: base(None))
    sharded = rt.store.sharded_stage

    def stage(name, deps, *args, inputs=(), **kw):
        deps_seen.append(deps)
        return sharded(name, deps, *args, inputs=[], **kw)  # iter_K/sft_model is not there: the base model is

    monkeypatch.setattr(rt.store, "sharded_stage", stage)
    return rt


# --------------------------------------------------------------------------- enforced on hf


@pytest.mark.parametrize("spec, matches", [
    ("choice:yes|no|maybe", lambda t: t in ("yes", "no", "maybe")),
    ("regex:[a-z]{1,5}", lambda t: re.fullmatch("[a-z]{1,5}", t) is not None),
])
def test_the_constraint_is_enforced_on_the_sampled_answers_with_hf(tmp_path, monkeypatch, validators, spec, matches):
    cfg = _cfg(tmp_path, f"preferences.constraint={spec}")
    deps: list = []
    rt = _open(tmp_path, cfg, monkeypatch, deps)
    result = responses_stage(rt, 1)
    rows = read_table(rt.store.path("iter_1/responses"))
    assert len(rows) == 6 and all(matches(r["response"]) for r in rows), [r["response"] for r in rows]
    assert all(r["passed"] and r["tries"] == 1 for r in rows)
    checks = result.stats["checks"]
    assert checks["constraint"] == answer_constraint(cfg.preferences).identity()
    assert checks["constraint"]["spec"] == spec
    assert (checks["rows"], checks["tries"], checks["accepted"], checks["violations"], checks["never_passed"]) == \
        (6, 6, 6, 0, 0)
    assert deps[0]["sampling"]["constraint"] == spec and deps[0]["checks"]["constraint"]["spec"] == spec
    assert deps[0]["checks"]["validator"] is None
    rt.close()


def test_rejection_sampling_on_hf_counts_every_attempt(tmp_path, monkeypatch, validators):
    """A validator that rejects some of the tiny model's answers: every failed attempt is retried up to
    max_tries; the stats agree with the rows, and the answers that never passed are kept and flagged."""
    cfg = _cfg(tmp_path, "preferences.constraint=choice:yes|no|maybe", "preferences.validator=pref_validators:short",
               "preferences.max_tries=3")
    rt = _open(tmp_path, cfg, monkeypatch, [])
    checks = responses_stage(rt, 1).stats["checks"]
    rows = read_table(rt.store.path("iter_1/responses"))
    assert len(rows) == 6 and all(r["response"] in ("yes", "no", "maybe") for r in rows)
    assert all(r["passed"] == (r["response"] == "no") for r in rows)  # only "no" is at most 2 characters
    assert checks["tries"] == sum(r["tries"] for r in rows) and checks["violations"] == 0
    assert checks["validator_rejections"] > 0  # the tiny model says "yes" or "maybe" at times: retried
    assert checks["never_passed"] == sum(not r["passed"] for r in rows)
    assert all(r["tries"] == 3 for r in rows if not r["passed"])
    assert checks["validator_rejections"] == checks["tries"] - checks["passed_attempts"]
    assert checks["validator"] == verifier_identity("pref_validators:short") and checks["max_tries"] == 3
    for r in rows:  # the seed recorded is the kept attempt's
        assert r["seed"] == retry_seed(sample_seed(cfg.random_seed, r["sample"]), r["tries"] - 1)
    rt.close()


# --------------------------------------------------------------------------- exact counts


def test_answers_that_never_pass_are_counted_kept_and_not_paired(validators):
    """A generator whose answers are known: prompt a fails every attempt, b fails its first attempt, c
    passes at once, d fails every attempt of its second sample only."""
    import importlib

    first = {sample_seed(7, 0), sample_seed(7, 1)}
    second = {retry_seed(sample_seed(7, 1), a) for a in range(3)}

    def generate(prompts, params):
        bad = {"a": True, "b": params.seed in first, "c": False, "d": params.seed in second}
        return [Completion("bad" if bad[p] else "ok") for p in prompts]

    cfg = load_config(TINY, ["preferences.validator=pref_validators:short", "preferences.max_tries=3",
                             "preferences.n=2"]).preferences
    short = importlib.import_module(validators).short
    part = [{"prompt_id": x, "instruction": f"do {x}"} for x in "abcd"]
    rows, calls = sample_answers(generate, list("abcd"), part, cfg, 7, "g", short)
    assert [(r["response_id"], r["response"], r["tries"], r["passed"]) for r in rows] == [
        ("a#0", "bad", 3, False), ("a#1", "bad", 3, False), ("b#0", "ok", 2, True), ("b#1", "ok", 2, True),
        ("c#0", "ok", 1, True), ("c#1", "ok", 1, True), ("d#0", "ok", 1, True), ("d#1", "bad", 3, False)]
    stats = merge_checked(calls, None, verifier_identity("pref_validators:short"), 3)
    assert (stats["rows"], stats["tries"], stats["passed_attempts"], stats["accepted"], stats["never_passed"],
            stats["validator_rejections"], stats["violations"], stats["validator_errors"]) == \
        (8, 16, 5, 5, 3, 11, 0, 0)
    assert stats["acceptance_rate"] == 5 / 16
    # every answer is judged; the ones that never passed are counted, not paired
    scores = [{"candidate_id": r["response_id"], "value": float(r["sample"]), "judge": "j", "judge_kind": "additive"}
              for r in rows]
    pairs, counts = pair_responses(rows, scores)
    assert counts == {"prompts": 4, "pairs": 2, "none_scored": 1, "one_scored": 1, "tie": 0, "below_margin": 0,
                      "truncated_unpaired": 0, "invalid_unpaired": 3}
    assert [(p["chosen_id"], p["rejected_id"]) for p in pairs] == [("b#1", "b#0"), ("c#1", "c#0")]


def test_unchecked_answers_have_no_check_columns_and_keep_their_seed():
    calls = []

    def generate(prompts, params):
        calls.append(params)
        return [Completion(f"{p} {params.seed}", "length") for p in prompts]

    cfg = load_config(TINY, ["preferences.n=2"]).preferences
    rows, stats = sample_answers(generate, ["p"], [{"prompt_id": "x", "instruction": "do x"}], cfg, 5, "g")
    assert [p.seed for p in calls] == [sample_seed(5, 0), sample_seed(5, 1)] and all(p.constraint is None
                                                                                      for p in calls)
    assert rows == [{"response_id": response_id("x", i), "prompt_id": "x", "instruction": "do x",
                     "system": cfg.system_prompt, "sample": i, "response": f"p {sample_seed(5, i)}",
                     "truncated": True, "generator": "g", "temperature": 0.7, "top_p": 0.9, "max_new_tokens": 256,
                     "seed": sample_seed(5, i)} for i in range(2)]
    assert [(s["tries"], s["never_passed"]) for s in stats] == [(1, 0), (1, 0)]


# --------------------------------------------------------------------------- the stage key


def _main_deps(rt, cfg) -> dict:
    """The responses stage's key as main computed it before these keys existed (humpback/stages/preferences.py
    at 8d948ba), for the verifier judge of these tests."""
    from humpback.stages.preferences import prompt_bank

    p = cfg.preferences
    return {"sampling": {key: getattr(p, key) for key in ("n", "temperature", "top_p", "max_new_tokens",
                                                          "system_prompt")},
            "bank": prompt_bank(rt, 1)[1], "judge": {"judge_kind": "verifier", "verifier": cfg.curate.verifier},
            "judge_identity": verifier_identity(cfg.curate.verifier), "base": rt.base_identity,
            **rt.generation_key()}


def test_default_checks_keep_the_stage_key(tmp_path, monkeypatch, validators):
    from humpback.store import hash_json

    cfg = _cfg(tmp_path)
    deps: list = []
    rt = _open(tmp_path, cfg, monkeypatch, deps)
    result = responses_stage(rt, 1)
    assert deps[0] == _main_deps(rt, cfg) and hash_json(deps[0]) == hash_json(_main_deps(rt, cfg))
    assert "tries" not in read_table(rt.store.path("iter_1/responses"))[0]  # the answers' columns are main's
    assert result.stats["checks"]["constraint"] is None and result.stats["checks"]["tries"] == 6
    assert sampling_settings(cfg.preferences) == _main_deps(rt, cfg)["sampling"]
    rt.close()


def test_each_check_key_joins_the_key_only_when_set():
    def keys(*overrides):
        return set(sampling_settings(load_config(TINY, list(overrides)).preferences))

    main = {"n", "temperature", "top_p", "max_new_tokens", "system_prompt"}
    assert keys() == main
    assert keys("preferences.constraint=choice:a|b") == main | {"constraint"}
    assert keys("preferences.validator=pkg.mod:fn") == main | {"validator"}
    assert keys("preferences.validator=pkg.mod:fn", "preferences.max_tries=2") == main | {"validator", "max_tries"}


# --------------------------------------------------------------------------- config errors


@pytest.mark.parametrize("overrides, message", [
    (["preferences.constraint=builtin:haiku"],
     "command line: 'preferences.constraint': unknown built-in constraint 'haiku'; known: instruction-line, score, "
     "task-list, verdict"),
    (["preferences.constraint=regex:[a-"], "command line: 'preferences.constraint': constraint 'regex:[a-': not a "
                                           "regular expression"),
    (["preferences.constraint=json:no/such/schema.json"], "command line: 'preferences.constraint': "),
    (["preferences.validator=nocolon"],
     "command line: 'preferences.validator' must name a function as package.module:function, got 'nocolon'"),
    (["preferences.max_tries=0"], "command line: 'preferences.max_tries' must be > 0, got 0"),
    (["preferences.max_tries=3"],
     "preferences.max_tries set on the command line, preferences.constraint and preferences.validator left at their "
     "defaults: 'preferences.max_tries' is 3, but there is nothing to retry against (preferences.constraint and "
     "preferences.validator are unset)"),
])
def test_bad_check_settings_are_clear_errors(overrides, message):
    with pytest.raises(ConfigError) as e:
        load_config(TINY, overrides)
    assert message in str(e.value)


def test_a_recipe_file_is_named_as_who_set_the_key(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(TINY.read_text() + "\npreferences:\n  constraint: choice:yes\n  max_tries: 0\n")
    with pytest.raises(ConfigError, match=re.escape("r.yaml") + r".*'preferences.max_tries' must be > 0, got 0"):
        load_config(recipe, [])


def test_the_preference_card_names_the_samplers_checks(tmp_path):
    """The export card says what the answers were checked against and how many never passed (unpaired)."""
    import json

    import yaml

    from humpback import FORMAT_VERSION, layout
    from humpback.export import preference_card
    from humpback.store import RunStore

    run = tmp_path / "run"
    run.mkdir()
    (run / layout.CONFIG).write_text(yaml.safe_dump({
        "base_model": "m", "curate": {"mode": "logits"}, "dpo": {"beta": 0.1},
        "preferences": {"n": 4, "temperature": 1.0, "top_p": 1.0, "max_new_tokens": 8, "system_prompt": None}}))
    checks = {"rows": 8, "tries": 16, "passed_attempts": 5, "accepted": 5, "never_passed": 3, "violations": 0,
              "validator_rejections": 11, "validator_errors": 0, "acceptance_rate": 5 / 16,
              "constraint": {"spec": "choice:yes|no", "kind": "choice", "hash": "h"},
              "validator": {"verifier": "mine:only_no", "source": "s"}, "max_tries": 3}
    it = layout.iteration(1)
    rule = {"pair": "best_vs_worst", "score": "value", "min_margin": 0.0, "keep_truncated": False}
    pairs = {"judge": "j", "judge_kind": "verifier", "rule": rule, "prompts": 2, "pairs": 1, "tie": 0,
             "below_margin": 0, "none_scored": 0, "one_scored": 1, "truncated_unpaired": 0, "invalid_unpaired": 3}
    responses = {"responses": 8, "truncated": 0, "checks": checks, "generator": "m+iter_1/sft_model"}
    stages = {it.stage("responses"): {"status": "done", "stats": responses},
              it.stage("preferences"): {"status": "done", "stats": pairs}}

    def manifest():
        (run / layout.MANIFEST).write_text(json.dumps({"format_version": FORMAT_VERSION, "stages": stages,
                                                       "packages": {"humpback": "0"}}))

    manifest()
    card = preference_card(RunStore(run), 1, 1, "preferences.jsonl")
    assert ("- Checks on the answers: constraint `choice:yes|no`, validator `mine:only_no`, up to 3 tries each; 5 "
            "of 16 attempts passed, 3 answers never passed (judged, not paired)") in card
    assert "0 scored answers left out as cut off, 3 that never passed the sampler's checks" in card
    del responses["checks"]
    pairs["invalid_unpaired"] = 0
    manifest()
    card = preference_card(RunStore(run), 1, 1, "preferences.jsonl")
    assert "Checks on the answers" not in card and "never passed the sampler" not in card
