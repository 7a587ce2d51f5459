"""Preference data (``train.objective: dpo``): model K answers a prompt bank ``n`` times, a judge scores
every answer, and the best answer to each prompt is paired against its worst.

- ``iter_K/responses`` (sharded, resumable): the answers (``iter_K/responses/``) and each one's score
  row (``iter_K/response_scores/``), written shard by shard; every answer is kept, failures as data;
- ``iter_K/preferences``: the pairs, ``iter_K/preferences.parquet`` in TRL's conversational preference
  format (:mod:`humpback.preference_pairs`), with the prompts left unpaired counted by why. A new
  ``preferences.min_margin`` re-pairs from the saved answers without sampling or judging again.

The sampler is the finetuned model K (``iter_K/sft_model``); the judge is the same model judging its own
answers (self-rewarding), an outside model (``preferences.judge``) or the recipe's verifier, with the
``curate`` section's judge settings and ``preferences.judge_kind`` (default: the additive prompt).
"""

from __future__ import annotations

import statistics

from .. import layout
from ..chat import messages_for, render_prompt
from ..errors import DataError
from ..judges import CurationJudge, score_rows, score_schema
from ..judges.health import health_counts
from ..layout import CANDIDATES, SEED
from ..preference_pairs import (SKIPS, answer_constraint, bank_from_rows, checked, describe_pairing, judge_settings,
                                load_prompt_bank, merge_response_stats, pair_responses, pairing_rule,
                                preferences_schema, responses_schema, sample_answers, sampling_settings)
from ..prompts import template_hash
from ..run import RunContext
from ..store import StageResult, model_identity, shard_file, source_identity

# The judge settings each kind reads from the curate section (what the answers' scores depend on).
JUDGE_KEYS = {"additive": ("mode", "max_new_tokens", "temperature", "system_prompt"),
              "rating": ("mode", "max_new_tokens", "temperature", "system_prompt"),
              "rubric": ("rubric", "rubric_field", "rubric_combine", "rubric_temperature", "system_prompt"),
              "likelihood": ("likelihood", "system_prompt"), "verifier": ("verifier",)}


def named_bank(prompts: str, k: int) -> tuple[str, str] | None:
    """(the run-folder output, its id field) of a bank ``preferences.prompts`` names, for iteration K; None
    for a file or dataset named by its path."""
    return {"curated": (layout.iteration(k).curated, "candidate_id"), "candidates": (CANDIDATES, "candidate_id"),
            "seed": (SEED, "id")}.get(prompts)


def prompt_bank(rt: RunContext, k: int) -> tuple[list[dict], dict, list[str]]:
    """(prompts, what identifies the bank, the run-folder files it comes from) for iteration K."""
    cfg = rt.cfg.preferences
    named = named_bank(cfg.prompts, k)
    if named is not None:
        output, id_field = named
        rows, duplicates = bank_from_rows(rt.store.read_rows(output), id_field)
        identity, inputs = {"bank": cfg.prompts}, [output]
    else:
        from ..builtin_names import resolve

        path = resolve(cfg.prompts)
        rows, duplicates = bank_from_rows(load_prompt_bank(path), "prompt_id")
        identity, inputs = {"bank": source_identity(path, None, full=True)}, []
    total = len(rows)
    if cfg.max_prompts is not None:
        rows = rows[:cfg.max_prompts]
    if not rows:
        raise DataError(f"preferences: the prompt bank of iteration {k} ({cfg.prompts!r}) has no prompt "
                        f"({duplicates} duplicates); nothing to answer. Name another bank in preferences.prompts")
    return rows, {**identity, "max_prompts": cfg.max_prompts, "prompts": len(rows), "distinct": total,
                  "duplicates": duplicates}, inputs


def _judge(rt: RunContext, k: int, model) -> tuple[CurationJudge, list[str], dict | None]:
    """(the judge of model K's answers, the run-folder models it reads, what identifies an outside one)."""
    cfg = judge_settings(rt.cfg.curate, rt.cfg.preferences)
    it = layout.iteration(k)
    if cfg.judge_kind == "verifier":
        from ..judges.verifier import load_verifier, verifier_identity

        load_verifier(cfg.verifier)  # a clear error now, before any work
        return CurationJudge(cfg.verifier, cfg, None, rt.cfg.random_seed), [], verifier_identity(cfg.verifier)
    budget = rt.cfg.generation.max_prompt_tokens
    if cfg.judge:
        from ..builtin_names import resolve

        outside = resolve(cfg.judge)
        return (CurationJudge(outside, cfg, rt.model(outside=outside), rt.cfg.random_seed, budget), [],
                model_identity(outside, None))
    return CurationJudge(rt.model_name(it.sft_model), cfg, model, rt.cfg.random_seed, budget), [it.sft_model], None


def responses_stage(rt: RunContext, k: int) -> StageResult:
    """iter_K/responses and iter_K/response_scores: ``preferences.n`` answers of model K to each prompt of
    the bank and the judge's score of each, written in shards of ``shard_size`` prompts. With
    ``preferences.constraint`` / ``validator`` the answers are checked and rejection sampled; the checks
    are in the stats as augment's are."""
    from ..generation.rejection import describe_checked, load_validator, merge_checked
    from ..judges.verifier import verifier_identity

    cfg = rt.cfg.preferences
    it = layout.iteration(k)
    bank, bank_identity, bank_inputs = prompt_bank(rt, k)
    constraint = answer_constraint(cfg)
    validator = load_validator(cfg.validator, "preferences.validator") if cfg.validator else None
    checks = {"constraint": constraint.identity() if constraint else None,
              "validator": verifier_identity(cfg.validator) if cfg.validator else None}
    model = rt.model(it.sft_model)
    judge, judge_inputs, judge_identity = _judge(rt, k, model)
    generator = rt.model_name(it.sft_model)
    seed = rt.cfg.random_seed
    judging = judge_settings(rt.cfg.curate, rt.cfg.preferences)
    # The checks join the stage key only when set (sampling_settings too): runs made before them keep theirs.
    deps = {"sampling": sampling_settings(cfg),
            "bank": bank_identity, "judge": {"judge_kind": judging.judge_kind,
                                             **{key: getattr(judging, key) for key in JUDGE_KEYS[judging.judge_kind]}},
            "judge_identity": judge_identity, "base": rt.base_identity, **rt.generation_key(),
            **({"checks": checks} if any(checks.values()) else {})}
    if judging.judge_kind in ("additive", "rating"):
        deps["template"] = template_hash("additive" if judging.judge_kind == "additive" else "curate")
    if judging.judge_kind == "rubric":
        from ..judges.rubric import load_rubric

        deps["rubric_hash"] = load_rubric(judging.rubric, judging.rubric_field).text_hash
    name = it.stage("responses")
    inputs = list(dict.fromkeys([it.sft_model, *bank_inputs, *judge_inputs]))
    stage = rt.store.sharded_stage(name, deps, [it.responses, it.response_scores], rt.cfg.shard_size, inputs=inputs,
                                   force=rt.forced(name), job="preferences", unit="prompts")

    def do_shard(shard: int, start: int, end: int) -> dict:
        part = bank[start:end]
        prompts = [render_prompt(model.tokenizer, messages_for(p["instruction"], system=cfg.system_prompt))
                   for p in part]
        rows, calls = sample_answers(model.generator.generate, prompts, part, cfg, seed, generator, validator,
                                     constraint)
        scores = score_rows([{"candidate_id": r["response_id"], "instruction": r["instruction"],
                              "output": r["response"]} for r in rows], judge)
        rt.store.write_rows(shard_file(it.responses, shard), rows, schema=responses_schema(checked(cfg)))
        rt.store.write_rows(shard_file(it.response_scores, shard), scores, schema=score_schema(judge.cfg.judge_kind))
        failures: dict[str, int] = {}
        for s in scores:
            if s["parse_status"] != "ok":
                failures[s["parse_status"]] = failures.get(s["parse_status"], 0) + 1
        values = [s["value"] for s in scores if s["value"] is not None]
        return {"prompts": len(part), "responses": len(rows), "truncated": sum(r["truncated"] for r in rows),
                "response_chars": sum(len(r["response"]) for r in rows), "failures": failures,
                "value_sum": sum(values), "value_n": len(values), "health_counts": health_counts(scores),
                "served_by": model.served, "checks": merge_checked(calls)}

    def finish(shards: list[dict]) -> dict:
        model.close()
        stats = merge_response_stats(shards)
        stats.update(generator=generator, judge=judge.name, judge_kind=judge.cfg.judge_kind, bank=bank_identity)
        stats["checks"] = merge_checked([s.get("checks") for s in shards], checks["constraint"], checks["validator"],
                                        cfg.max_tries)
        for note in describe_checked(f"responses {k}", stats["checks"], rt.cfg.generation.backend):
            rt.warn(note + " (judged, not paired)" if "never passed" in note else note)
        failed = sum(stats["failures"].values())
        rt.result(f"responses: {stats['prompts']} prompts x {cfg.n} answers = {stats['responses']}, "
                  f"{stats['truncated']} cut at max_new_tokens; {judge.cfg.judge_kind} judge: value mean "
                  f"{_fmt(stats['value_mean'])}, {failed} failures")
        for warning in stats["health"]["warnings"]:
            rt.warn(f"judge health, iteration {k} answers: {warning}")
        if stats["truncated"]:
            rt.warn(f"responses: {stats['truncated']} of {stats['responses']} answers ran out of "
                    f"preferences.max_new_tokens ({cfg.max_new_tokens}): " +
                    ("paired like the others" if cfg.keep_truncated else "judged, but not paired"))
        for name in ("prompts", "responses", "truncated", "value_mean"):
            rt.metric("responses", name, stats[name], iteration=k)
        if checked(cfg):
            for name in ("tries", "never_passed", "violations", "acceptance_rate"):
                if stats["checks"][name] is not None:
                    rt.metric("responses", f"checks/{name}", stats["checks"][name], iteration=k)
        return stats

    try:
        return stage.run(len(bank), do_shard, finish)
    finally:
        model.close()
        judge.close()


def preferences_stage(rt: RunContext, k: int) -> StageResult:
    """iter_K/preferences.parquet: best vs worst answer per prompt by the pairing rule; none at all stops
    the run with the counts (never an empty DPO run)."""
    cfg = rt.cfg.preferences
    it = layout.iteration(k)
    rule = pairing_rule(cfg.min_margin, cfg.keep_truncated)

    name = it.stage("preferences")
    stage = rt.store.stage(name, rule, [it.preferences], inputs=[it.responses, it.response_scores],
                           force=rt.forced(name))
    if not stage.runs:
        return stage.result()
    with stage.running():
        pairs, counts = pair_responses(rt.store.read_rows(it.responses), rt.store.read_rows(it.response_scores),
                                       cfg.min_margin, cfg.keep_truncated)
        skipped = ", ".join(f"{counts[s]} {s.replace('_', ' ')}" for s in SKIPS if counts[s]) or "none"
        line = f"preferences: {counts['prompts']} prompts -> {counts['pairs']} pairs; not paired: {skipped}"
        if counts["invalid_unpaired"]:
            line += (f"; {counts['invalid_unpaired']} answers that never passed preferences.constraint or "
                     f"preferences.validator left out")
        if not pairs:
            checks = "; or raise preferences.max_tries or loosen the checks" if counts["invalid_unpaired"] else ""
            raise DataError(f"{line}. DPO has nothing to train on: the judge ranked no two answers apart "
                            f"({describe_pairing(rule)}); lower preferences.min_margin, raise preferences.n or "
                            f"preferences.temperature, or choose another preferences.judge_kind{checks}")
        rt.store.write_rows(it.preferences, pairs, schema=preferences_schema())
        rt.result(line)
        margins = [p["margin"] for p in pairs]
        stats = {**counts, "rule": rule, "judge": pairs[0]["judge"], "judge_kind": pairs[0]["judge_kind"],
                 "generator": pairs[0]["generator"], "margin_mean": statistics.fmean(margins),
                 "chosen_score_mean": statistics.fmean(p["chosen_score"] for p in pairs),
                 "rejected_score_mean": statistics.fmean(p["rejected_score"] for p in pairs),
                 "pair_rate": counts["pairs"] / counts["prompts"]}
        for metric in ("pairs", "pair_rate", "margin_mean", *SKIPS):
            rt.metric("preferences", metric, stats[metric], iteration=k)
    return stage.finish(stats)


def _fmt(x) -> str:
    return "-" if x is None else f"{x:.3f}"
