"""Self-Instruct (``augment.source: self_instruct``): the base model writes new tasks from the seed tasks,
then the instances of each, and these become the candidate pairs the loop curates.

Three stages, each in the shape of the others:

- ``seed_tasks``: the seed's task-level view (instruction, instances, is_classification) -> data/seed_tasks.parquet.
- ``tasks``: rounds of task generation until the pool holds ``augment.target_tasks`` machine-written tasks.
  Each round's prompts sample their in-context instructions from the pool as the earlier rounds left
  it, and each new task must pass the filters (length, keywords, first character, ROUGE-L against
  the whole pool) in order. A round is written as it finishes (augment/tasks, augment/tasks_rejected);
  a killed run reloads the rounds it finished and goes on from the next one.
- ``augment``: for each task, "is it classification?", then its instances (output-first for
  classification, input-first otherwise), sharded like backtranslation's augmentation, into
  augment/candidates (the same rows curation reads) and augment/rejected (with the reason).

Prompts and parsers are the pure functions of :mod:`humpback.data.self_instruct_text`.
"""

from __future__ import annotations

import hashlib
import random

from ..config import to_dict, who_set
from ..data.self_instruct_text import (CLASSIFY_STOP, INSTANCE_REJECT_REASONS, TASK_REJECT_REASONS, TASK_STOP,
                                       clean_instances, ends_at_stop, instance_stop, keyword_pattern, pair_instruction,
                                       parse_classification, parse_input_first, parse_output_first,
                                       render_classify_prompt, render_instance_prompt, render_task_prompt,
                                       sample_prompt_instructions, split_tasks, strip_stop, task_status)
from ..errors import ConfigError
from ..generation.constraints import parse_constraint
from ..generation.rejection import (check_identity, describe_checked, generate_checked, load_validator,
                                    merge_checked)
from ..layout import CANDIDATES, REJECTED, SEED_TASKS, TASKS, TASKS_REJECTED
from ..prompts import template_hash
from ..run import RunContext
from ..store import StageResult, shard_file, source_identity

TEMPLATES = ("self_instruct_tasks", "self_instruct_classify", "self_instruct_input_first",
             "self_instruct_output_first")
TASK_KEYS = ("prompts_per_round", "target_tasks", "max_idle_rounds", "prompt_instructions",
             "prompt_machine_instructions",
             "task_temperature", "task_top_p", "task_presence_penalty", "task_max_new_tokens", "min_task_words",
             "max_task_words", "rouge_threshold", "task_keywords", "keep_unfinished")
INSTANCE_KEYS = ("instance_presence_penalty", "instance_max_new_tokens", "classification_max_new_tokens",
                 "max_instances", "max_instance_chars", "bare_output_instances")


def seed_tasks_stage(rt: RunContext) -> StageResult:
    """The seed as Self-Instruct tasks, each instruction once."""
    cfg = rt.sources.seed
    deps = {"seed": to_dict(rt.cfg.seed), "source": source_identity(cfg.path, cfg.dataset, full=True)}
    stage = rt.store.stage("seed_tasks", deps, [SEED_TASKS], force=rt.forced("seed_tasks"), job="prepare")
    if not stage.runs:
        return stage.result()
    with stage.running():
        from ..data.seed import load_seed_tasks

        tasks, fmt = load_seed_tasks(cfg, format_set_by=who_set(rt.cfg, "seed.format"), random_seed=rt.cfg.random_seed)
        rows, seen = [], set()
        for t in tasks:
            if t.instruction in seen:
                continue
            seen.add(t.instruction)
            rows.append({"task_id": "seed-" + hashlib.blake2b(t.instruction.encode(), digest_size=8).hexdigest(),
                         "instruction": t.instruction, "is_classification": t.is_classification, "source": t.source,
                         "instances": [{"input": i, "output": o} for i, o in t.instances]})
        rt.store.write_rows(SEED_TASKS, rows)
        n_clf = sum(r["is_classification"] for r in rows)
        rt.log(f"  seed tasks: {len(rows)} ({fmt} format), {n_clf} classification")
    return stage.finish({"format": fmt, "tasks": len(rows), "classification": n_clf,
                         "duplicates": len(tasks) - len(rows), "instances": sum(len(r["instances"]) for r in rows)})


def tasks_stage(rt: RunContext) -> StageResult:
    """Rounds of task generation by the base model, each new task filtered against the pool so far."""
    from ..data.rouge import RougePool
    from ..generation.base import SamplingParams

    cfg = rt.cfg.augment
    generator = rt.model_name(None)
    seed = [r["instruction"] for r in rt.store.read_rows(SEED_TASKS)]
    human = cfg.prompt_instructions  # the first round's prompts are all human seed
    if len(seed) < human:
        raise ConfigError(f"{who_set(rt.cfg, 'augment.prompt_instructions')}: 'augment.prompt_instructions' is "
                          f"{human}, but the seed has only {len(seed)} tasks; lower it or give more seed tasks")
    model = rt.model(None)
    machine: list[str] = []
    pool = RougePool(seed, cfg.rouge_threshold)
    keywords = keyword_pattern(cfg.task_keywords)
    constraint = parse_constraint(cfg.task_constraint, cfg.task_max_new_tokens) if cfg.task_constraint else None
    validator = load_validator(cfg.task_validator, "augment.task_validator") if cfg.task_validator else None
    checks = check_identity(constraint, cfg.task_validator, cfg.task_max_tries)
    params = SamplingParams(temperature=cfg.task_temperature, top_p=cfg.task_top_p,
                            max_new_tokens=cfg.task_max_new_tokens,
                            seed=rt.cfg.random_seed, presence_penalty=cfg.task_presence_penalty, stop=TASK_STOP,
                            constraint=constraint)
    deps = {"augment": {k: getattr(cfg, k) for k in TASK_KEYS}, "templates": [template_hash("self_instruct_tasks")],
            "base": rt.base_identity, **rt.generation_key(),
            **({"task_constraint": checks["constraint"]} if constraint else {}),
            **({"task_checks": checks} if validator or cfg.task_max_tries != 1 else {})}
    stage = rt.store.round_stage("tasks", deps, [TASKS, TASKS_REJECTED], inputs=[SEED_TASKS],
                                 force=rt.forced("tasks"), job="augment")

    def load_round(r: int) -> None:
        for row in rt.store.read_rows(shard_file(TASKS, r)):
            machine.append(row["instruction"])
            pool.add(row["instruction"])

    def do_round(r: int) -> dict:
        rng = random.Random(f"self-instruct:{rt.cfg.random_seed}:{r}")
        prompts = [render_task_prompt(sample_prompt_instructions(rng, seed, machine, cfg.prompt_instructions,
                                                                 cfg.prompt_machine_instructions))
                   for _ in range(cfg.prompts_per_round)]
        checked = generate_checked(model.generator.generate, prompts, params, validator, cfg.task_max_tries)
        outputs = checked.texts
        scored_before = pool.pairs_scored
        kept, rejected, unfinished, empty = [], [], 0, 0
        for p, (text, passed) in enumerate(zip(outputs, checked.passed, strict=True)):
            items, finished = split_tasks(text)
            unfinished += not finished
            empty += not items
            for j, instruction in enumerate(items):
                row = {"round": r, "prompt": p, "item": j, "instruction": instruction, "raw_generation": text}
                reason, similar, score = None, None, None
                if not passed:  # every attempt broke augment.task_constraint or augment.task_validator
                    reason = "failed_check"
                elif not finished and not cfg.keep_unfinished:
                    reason = "unfinished"
                elif len(machine) >= cfg.target_tasks:
                    reason = "over_target"
                elif (status := task_status(instruction, cfg.min_task_words, cfg.max_task_words, keywords)) != "ok":
                    reason = status
                elif not (m := pool.add_if_novel(instruction)).novel:
                    reason, similar, score = "similar", pool.texts[m.index], m.score
                if reason is None:
                    machine.append(instruction)
                    kept.append({"task_id": f"si-{r:05d}-{p:03d}-{j:02d}", **row, "generator": generator,
                                 "temperature": cfg.task_temperature, "top_p": cfg.task_top_p,
                                 "presence_penalty": cfg.task_presence_penalty,
                                 "max_new_tokens": cfg.task_max_new_tokens, "seed": rt.cfg.random_seed})
                else:
                    rejected.append({**row, "reason": reason, "similar_to": similar, "rouge_l": score})
        rt.store.write_rows(shard_file(TASKS, r), kept, schema=_tasks_schema())
        rt.store.write_rows(shard_file(TASKS_REJECTED, r), rejected, schema=_task_rejects_schema())
        rt.log(f"  tasks round {r}: {len(prompts)} prompts -> {len(kept)} new tasks; pool {len(machine)}"
               f" of {cfg.target_tasks}")
        return {"prompts": len(prompts), "unfinished_responses": unfinished, "empty_responses": empty,
                "generated": len(kept) + len(rejected), "kept": len(kept),
                "rejected": {x: sum(1 for row in rejected if row["reason"] == x) for x in TASK_REJECT_REASONS},
                "rouge_pairs_scored": pool.pairs_scored - scored_before, "pool": len(machine),
                "served_by": model.served, "checks": checked.stats}

    def more(rounds: list[dict]) -> bool:
        idle = rounds[-cfg.max_idle_rounds:]
        return len(machine) < cfg.target_tasks and not (len(idle) == cfg.max_idle_rounds and
                                                        all(s["kept"] == 0 for s in idle))

    def finish(rounds: list[dict]) -> dict:
        model.close()
        stats = {"seed_tasks": len(seed), "target_tasks": cfg.target_tasks, "tasks": len(machine),
                 "stopped": "target reached" if len(machine) >= cfg.target_tasks else
                 f"{cfg.max_idle_rounds} rounds in a row added no task",
                 **{k: sum(s[k] for s in rounds) for k in ("prompts", "unfinished_responses", "empty_responses",
                                                           "generated", "kept", "rouge_pairs_scored")},
                 "rejected": {x: sum(s["rejected"][x] for s in rounds) for x in TASK_REJECT_REASONS},
                 "served_by": sorted({s["served_by"] for s in rounds if s.get("served_by")})}
        if checks:
            stats["checks"] = merge_checked([s.get("checks") for s in rounds], **checks)
            for note in describe_checked("tasks", stats["checks"], rt.cfg.generation.backend):
                rt.warn(note)
        rt.log(f"  tasks: {stats['prompts']} prompts -> {stats['generated']} tasks written -> {stats['tasks']} kept "
               f"({stats['stopped']}); rejected {stats['rejected']}")
        for name in ("prompts", "unfinished_responses", "generated", "tasks"):
            rt.metric("tasks", name, stats[name])
        for reason, n in stats["rejected"].items():
            rt.metric("tasks", f"rejected/{reason}", n)
        return stats

    try:
        return stage.run(load_round, do_round, more, finish)
    finally:
        model.close()


def instances_stage(rt: RunContext) -> StageResult:
    """Classification, then instances, for every machine-written task: one candidate pair per instance."""
    cfg = rt.cfg.augment
    generator = rt.model_name(None)
    tasks = rt.rows(TASKS)
    model = rt.model(None)
    stop = instance_stop(cfg.max_instances)
    validator = load_validator(cfg.instance_validator, "augment.instance_validator") \
        if cfg.instance_validator else None
    constraints = {max_new: parse_constraint(cfg.instance_constraint, max_new) if cfg.instance_constraint else None
                   for max_new in (cfg.classification_max_new_tokens, cfg.instance_max_new_tokens)}
    checks = check_identity(constraints[cfg.instance_max_new_tokens], cfg.instance_validator, 1)
    deps = {"source": "self_instruct", "augment": {k: getattr(cfg, k) for k in INSTANCE_KEYS},
            "templates": [template_hash(t) for t in TEMPLATES[1:]], "base": rt.base_identity, **rt.generation_key(),
            **({"instance_checks": checks} if checks else {})}
    n_tasks = rt.store.count_rows(TASKS)
    stage = rt.store.sharded_stage("augment", deps, [CANDIDATES, REJECTED], rt.cfg.shard_size, inputs=[TASKS],
                                   force=rt.forced("augment"))

    def do_shard(shard: int, start: int, end: int) -> dict:
        from ..generation.base import SamplingParams

        part = tasks.rows[start:end]
        greedy = dict(temperature=0.0, top_p=1.0, seed=rt.cfg.random_seed)
        answers = _generate(model, [render_classify_prompt(t["instruction"]) for t in part],
                            SamplingParams(max_new_tokens=3, stop=CLASSIFY_STOP, **greedy))
        verdicts = [parse_classification(a) for a in answers]
        texts: list = [None] * len(part)
        passed, check_stats = [True] * len(part), []
        for clf, max_new in ((True, cfg.classification_max_new_tokens), (False, cfg.instance_max_new_tokens)):
            idx = [i for i, v in enumerate(verdicts) if (v == "yes") == clf]
            params = SamplingParams(max_new_tokens=max_new, presence_penalty=cfg.instance_presence_penalty, stop=stop,
                                    constraint=constraints[max_new], **greedy)
            prompts = [render_instance_prompt(part[i]["instruction"], clf) for i in idx]
            if not checks:
                for i, text in zip(idx, _generate(model, prompts, params)):
                    texts[i] = text
                continue
            checked = generate_checked(model.generator.generate, prompts, params, validator, 1)  # greedy: one try
            check_stats.append(checked.stats)
            for i, text, ok in zip(idx, checked.texts, checked.passed, strict=True):
                texts[i], passed[i] = text, ok
        candidates, rejected, unparsed, bare = [], [], 0, 0
        for task, verdict, text, ok in zip(part, verdicts, texts, passed, strict=True):
            clf = verdict == "yes"
            body = strip_stop(text, stop)
            examples = parse_output_first(body) if clf else parse_input_first(body, cfg.bare_output_instances)
            unparsed += not examples
            bare += bool(examples) and not clf and not parse_input_first(body)
            rng = random.Random(f"self-instruct-instances:{rt.cfg.random_seed}:{task['task_id']}")
            finished = cfg.keep_unfinished or ends_at_stop(text, stop)
            kept, dropped = clean_instances(examples, finished, cfg.max_instance_chars,
                                            cfg.max_instances, rng)
            if not ok:  # the generation broke augment.instance_constraint or augment.instance_validator
                kept, dropped = [], dropped + [(ex, "failed_check") for ex in kept]
            base = {"segment_id": task["task_id"], "task_id": task["task_id"], "raw_generation": text,
                    "generator": generator, "temperature": 0.0, "top_p": 1.0,
                    "max_new_tokens": cfg.classification_max_new_tokens if clf else cfg.instance_max_new_tokens,
                    "seed": rt.cfg.random_seed, "is_classification": clf, "classification": verdict}
            for j, (inp, out) in enumerate(kept):
                candidates.append({"candidate_id": f"{task['task_id']}-{j}", **base,
                                   "instruction": pair_instruction(task["instruction"], inp),
                                   "input": inp, "output": out})
            for j, ((inp, out), reason) in enumerate(dropped):
                rejected.append({"candidate_id": f"{task['task_id']}-x{j}", **base,
                                 "instruction": pair_instruction(task["instruction"], inp),
                                 "input": inp, "output": out, "reason": reason})
        rt.store.write_rows(shard_file(CANDIDATES, shard), candidates, schema=_instance_schema(False))
        rt.store.write_rows(shard_file(REJECTED, shard), rejected, schema=_instance_schema(True))
        with_instances = {c["task_id"] for c in candidates}
        return {"tasks": len(part), "classification": {v: verdicts.count(v) for v in ("yes", "no", "unclear")},
                "unparsed_tasks": unparsed, "bare_output_tasks": bare, "tasks_with_instances": len(with_instances),
                "instances_parsed": len(candidates) + len(rejected), "candidates": len(candidates),
                "rejected": {x: sum(1 for r in rejected if r["reason"] == x) for x in INSTANCE_REJECT_REASONS},
                "served_by": model.served if part else None,
                **({"checks": merge_checked(check_stats, **checks)} if checks else {})}

    def finish(shards: list[dict]) -> dict:
        model.close()
        stats = {k: sum(s[k] for s in shards) for k in ("tasks", "unparsed_tasks", "bare_output_tasks",
                                                          "tasks_with_instances", "instances_parsed", "candidates")}
        stats["classification"] = {v: sum(s["classification"][v] for s in shards) for v in ("yes", "no", "unclear")}
        stats["rejected"] = {x: sum(s["rejected"][x] for s in shards) for x in INSTANCE_REJECT_REASONS}
        stats["generator"] = generator
        stats["served_by"] = sorted({s["served_by"] for s in shards if s.get("served_by")})
        if checks:
            stats["checks"] = merge_checked([s.get("checks") for s in shards], **checks)
            for note in describe_checked("instances", stats["checks"], rt.cfg.generation.backend):
                rt.warn(note)
        rt.log(f"  augment (self_instruct): {stats['tasks']} tasks ({stats['classification']['yes']} classification) "
               f"-> {stats['instances_parsed']} instances -> {stats['candidates']} candidates; rejected "
               f"{stats['rejected']}")
        if not stats["candidates"]:
            rt.log("  WARNING: no candidate pairs: curation has nothing to judge (see augment/rejected)")
        for name in ("tasks", "unparsed_tasks", "tasks_with_instances", "instances_parsed", "candidates"):
            rt.metric("augment", name, stats[name])
        for reason, n in stats["rejected"].items():
            rt.metric("augment", f"rejected/{reason}", n)
        return stats

    try:
        return stage.run(n_tasks, do_shard, finish)
    finally:
        model.close()


def _generate(model, prompts: list[str], params) -> list[str]:
    return model.generator.generate(prompts, params) if prompts else []


def _tasks_schema():
    import pyarrow as pa

    return pa.schema([("task_id", pa.string()), ("round", pa.int64()), ("prompt", pa.int64()), ("item", pa.int64()),
                      ("instruction", pa.string()), ("raw_generation", pa.string()), ("generator", pa.string()),
                      ("temperature", pa.float64()), ("top_p", pa.float64()), ("presence_penalty", pa.float64()),
                      ("max_new_tokens", pa.int64()), ("seed", pa.int64())])


def _task_rejects_schema():
    import pyarrow as pa

    return pa.schema([("round", pa.int64()), ("prompt", pa.int64()), ("item", pa.int64()),
                      ("instruction", pa.string()),
                      ("raw_generation", pa.string()), ("reason", pa.string()), ("similar_to", pa.string()),
                      ("rouge_l", pa.float64())])


def _instance_schema(with_reason: bool):
    """The candidate rows backtranslation writes, plus the task, the instance's input and the verdict."""
    import pyarrow as pa

    fields = [("candidate_id", pa.string()), ("segment_id", pa.string()), ("instruction", pa.string()),
              ("output", pa.string()), ("raw_generation", pa.string()), ("generator", pa.string()),
              ("temperature", pa.float64()), ("top_p", pa.float64()), ("max_new_tokens", pa.int64()),
              ("seed", pa.int64()), ("task_id", pa.string()), ("input", pa.string()),
              ("is_classification", pa.bool_()), ("classification", pa.string())]
    if with_reason:
        fields.append(("reason", pa.string()))
    return pa.schema(fields)

