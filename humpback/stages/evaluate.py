"""Evaluation stages: did the next model get better? Every model of a run (the base model, M0, M_1..M_N)
is measured on the same yardstick, after it is trained and again by ``humpback eval``:

- ``loss``: its loss on the held-out seed pairs, formatted exactly as training formats seed pairs;
- ``answers``: its answers to the eval prompt set (greedy by default, both system tags), sharded;
- ``judge``: each answer against a reference answer (``eval.reference``), judged in both orders by
  one judge (``eval.judge``), sharded; the win rate, its bootstrap interval, a length-controlled win
  rate and the judge's position consistency are the stage's figures;
- ``lm_eval``: lm-evaluation-harness tasks on the base model plus the model's adapter (optional).

Each is content-addressed like every stage, and the sharded ones resume shard by shard. The model's
``stats.json`` is composed from these stages' figures (:func:`humpback.view.figures.eval_stats`).
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from pathlib import Path
from typing import Any, Optional

from .. import layout
from ..device import pick_device
from ..chat import messages_for, render_prompt
from ..errors import ConfigError, StoreError
from ..evaluation.heldout import loss_schema
from ..evaluation.pairwise import PairwiseJudge, reference_of
from ..layout import EVAL_PROMPTS, HELDOUT
from ..prompts import SEED_SYSTEM_PROMPT, template_hash
from ..run import LazyModel, RunContext
from ..store import StageResult, model_identity, shard_file, source_identity, write_json
from ..view.figures import EVAL_METRICS, eval_stats


# --------------------------------------------------------------------------- the prompt set


def prompts_stage(rt: RunContext) -> StageResult:
    """EVAL_PROMPTS: the held-out seed instructions with their answers, or the ``eval.prompts`` set."""
    from ..evaluation.prompt_set import heldout_prompts, load_prompts, prompts_schema

    cfg, source = rt.cfg.eval, rt.sources.eval_prompts
    if source is None and not _recorded(rt, HELDOUT):
        raise ConfigError(f"{rt.store.root}: no held-out seed pairs to evaluate on (the run was made without "
                          f"'seed.heldout', or before it existed): name a prompt set with 'eval.prompts'")

    local = source is not None and _exists(source)
    deps = {"prompts": cfg.prompts, "config": cfg.prompts_config, "split": cfg.prompts_split,
            "max_prompts": cfg.max_prompts, "source": source_identity(source, None, full=True) if local else None}
    stage = rt.store.stage("eval_prompts", deps, [EVAL_PROMPTS], inputs=[] if source else [HELDOUT],
                           force=rt.forced("eval_prompts"), job="eval")
    if not stage.runs:
        return stage.result()
    with stage.running():
        if source is None:
            rows = heldout_prompts(rt.store.read_rows(HELDOUT))
        else:
            rows = load_prompts(source, cfg.prompts_config, cfg.prompts_split)
        rows = rows[: cfg.max_prompts] if cfg.max_prompts else rows
        rt.store.write_rows(EVAL_PROMPTS, rows, schema=prompts_schema())
        stats = {"prompts": len(rows), "source": cfg.prompts or "heldout",
                 "with_output": sum(r["output"] is not None for r in rows),
                 "with_reference": sum(r["reference"] is not None for r in rows)}
        rt.result(f"eval prompts: {stats['prompts']} from {stats['source']} ({stats['with_output']} with a reference "
                  f"output, {stats['with_reference']} with an exact answer)")
    return stage.finish(stats)


def preflight(rt: RunContext) -> None:
    """What must hold before any model is loaded: the prompt set suits ``eval.reference``, the judge's
    endpoint answers, every lm-eval task exists. Each failure names the key (and file)."""
    cfg = rt.cfg.eval
    prompts = rt.store.read_rows(EVAL_PROMPTS)
    if not prompts:
        raise ConfigError("'seed.heldout' left no held-out instruction to evaluate on; raise it or set 'eval.prompts'")
    if cfg.reference == "outputs":
        missing = [p for p in prompts if p["output"] is None]
        if missing:
            raise ConfigError(f"'eval.reference: outputs' needs a reference 'output' on every eval prompt, but "
                              f"{len(missing)} of {len(prompts)} prompts of {cfg.prompts or 'the held-out set'} have "
                              f"none; set eval.reference to previous, m0, base or none")
    if cfg.reference != "none" and cfg.judge_api_base:
        from ..generation.openai import check_endpoint

        check_endpoint(cfg.judge_api_base, "eval.judge_api_base", "the judge")
    if cfg.lm_eval_tasks:
        from ..evaluation.lm_harness import task_manager

        task_manager(cfg.lm_eval_tasks, cfg.lm_eval_include_path)


# --------------------------------------------------------------------------- the models


def evaluate(rt: RunContext, labels: list[str]) -> list[dict]:
    """Every eval stage of the models ``labels`` (``base``, ``m0``, ``iter_K``), then their stats.json.
    Each model is loaded once for its loss and answers; the judge once for all of them."""
    cfg = rt.cfg.eval
    refs = {label: reference_of(cfg.reference, label) for label in labels}
    answering = list(dict.fromkeys(labels + [r for r in refs.values() if r not in (None, "outputs")]))
    results: dict[str, list[StageResult]] = {label: [] for label in answering}
    for label in answering:
        model = rt.model(layout.evaluation(label).adapter)
        try:
            if label in labels:
                results[label].append(loss_stage(rt, label, model))
            results[label].append(answers_stage(rt, label, model))
        finally:
            model.close()
        if label in labels and cfg.lm_eval_tasks:
            results[label].append(lm_eval_stage(rt, label))
    judge = open_pairwise_judge(rt)
    try:
        for label in labels:
            if refs[label] is not None:
                results[label].append(judge_stage(rt, label, refs[label], judge))
    finally:
        judge.model.close()
    out = []
    for label in labels:
        done = [r for r in results[label] if r is not None]
        rt.tracker.log_steps(*done)
        out.append(write_stats(rt, label, refs[label], ran=any(r.ran for r in done)))
    return out


def write_stats(rt: RunContext, label: str, reference: Optional[str], ran: bool = True) -> dict:
    """The model's stats.json from its stages' figures, and (when a stage ran) its metrics."""
    ev = layout.evaluation(label)
    rt.store.refresh()
    stats = eval_stats(rt.store.manifest["stages"], label, rt.cfg.eval.length_drift_ratio, reference,
                       rt.cfg.eval.lm_eval_tasks)
    if rt.store.worker.is_main:
        write_json(rt.store.path(ev.stats), stats)
        if ran:
            for name in EVAL_METRICS:
                if isinstance(stats.get(name), (int, float)) and not isinstance(stats.get(name), bool):
                    rt.metric("eval", name, stats[name], iteration=ev.step)
            for i, end in enumerate(("low", "high")):
                if (stats.get("win_rate_ci") or [None, None])[i] is not None:
                    rt.metric("eval", f"win_rate_ci_{end}", stats["win_rate_ci"][i], iteration=ev.step)
            for name, value in (stats.get("lm_eval") or {}).items():
                rt.metric("eval", f"lm_eval/{name}", value, iteration=ev.step)
    return stats


def _adapter_inputs(label: str) -> list[str]:
    adapter = layout.evaluation(label).adapter
    return [adapter] if adapter else []


def _exists(path: str) -> bool:
    return Path(path).expanduser().exists()


def _recorded(rt: RunContext, rel: str) -> bool:
    try:
        rt.store.output_hash(rel)
        return True
    except StoreError:
        return False


# --------------------------------------------------------------------------- held-out loss


def loss_stage(rt: RunContext, label: str, model: LazyModel) -> Optional[StageResult]:
    """``heldout_loss.parquet``: per held-out pair, its completion tokens and summed loss."""
    from ..evaluation.heldout import completion_losses, heldout_messages, loss_rows, loss_stats, tokenize_example

    ev = layout.evaluation(label)
    if not _recorded(rt, HELDOUT) or rt.store.count_rows(HELDOUT) == 0:
        return None

    deps = {"max_length": rt.cfg.train.max_length, "tags": [SEED_SYSTEM_PROMPT], "format": "prompt-completion",
            "base": rt.base_identity, "dtype": rt.cfg.generation.dtype}
    name = ev.stage("loss")
    stage = rt.store.stage(name, deps, [ev.heldout_loss], inputs=[HELDOUT, *_adapter_inputs(label)],
                           force=rt.forced(name), job="eval")
    if not stage.runs:
        return stage.result()
    with stage.running():
        pairs = rt.store.read_rows(HELDOUT)
        tok = model.tokenizer
        examples = [tokenize_example(tok, heldout_messages(p), rt.cfg.train.max_length) for p in pairs]
        net, device, close = _torch_model(rt, model)
        try:
            pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
            losses = completion_losses(net, examples, pad, device, rt.cfg.generation.batch_size)
        finally:
            close()
        rows = loss_rows(pairs, losses)
        rt.store.write_rows(ev.heldout_loss, rows, schema=loss_schema())
        stats = loss_stats(rows)
        rt.result(f"{label}: held-out loss {_fmt(stats['heldout_loss'])} over {stats['heldout_tokens']} tokens "
                  f"of {stats['heldout_pairs']} pairs")
    return stage.finish(stats)


def _torch_model(rt: RunContext, model: LazyModel):
    """(torch model, device, close) for the loss: the hf backend's own model, else a transformers copy."""
    from ..generation.hf import HFGenerator

    if rt.cfg.generation.backend == "hf" and rt.cfg.workers.engine == "local":  # ray: the model is on the workers
        gen = model.generator
        return gen.model, gen.device, lambda: None
    g = rt.cfg.generation
    weights, adapter, revision = model.weights()
    gen = HFGenerator(weights, adapter=str(adapter) if adapter else None, revision=revision,
                      device=g.device, dtype=g.dtype, batch_size=g.batch_size, tokenizer=model.tokenizer)
    return gen.model, gen.device, gen.close


# --------------------------------------------------------------------------- answers


def answers_stage(rt: RunContext, label: str, model: LazyModel) -> StageResult:
    """``answers/``: the model's answer to every eval prompt, in shards."""
    from ..evaluation.answers import answer_rows, answer_schema, merge_answer_stats, shard_answer_stats

    cfg = rt.cfg.eval
    ev = layout.evaluation(label)
    prompts = rt.rows(EVAL_PROMPTS)
    generator = rt.model_name(ev.adapter)
    settings = {"system_prompt": cfg.system_prompt, "temperature": cfg.temperature, "top_p": cfg.top_p,
                "max_new_tokens": cfg.max_new_tokens, "seed": rt.cfg.random_seed}
    deps = {**settings, "base": rt.base_identity, **rt.generation_key()}
    name = ev.stage("answers")
    n_prompts = rt.store.count_rows(EVAL_PROMPTS)
    stage = rt.store.sharded_stage(name, deps, [ev.answers], rt.cfg.shard_size,
                                   inputs=[EVAL_PROMPTS, *_adapter_inputs(label)], force=rt.forced(name), job="eval")

    def do_shard(shard: int, start: int, end: int) -> dict:
        from ..generation.base import SamplingParams

        part = prompts.rows[start:end]
        texts = [render_prompt(model.tokenizer, messages_for(p["instruction"], system=cfg.system_prompt))
                 for p in part]
        params = SamplingParams(temperature=cfg.temperature, top_p=cfg.top_p, max_new_tokens=cfg.max_new_tokens,
                                seed=rt.cfg.random_seed)
        outputs = model.generator.generate(texts, params) if texts else []
        counts = ([len(ids) for ids in model.tokenizer(outputs, add_special_tokens=False)["input_ids"]]
                  if outputs else [])
        rows = answer_rows(part, outputs, counts, label, generator, settings)
        rt.store.write_rows(shard_file(ev.answers, shard), rows, schema=answer_schema())
        return shard_answer_stats(rows)

    def finish(shards: list[dict]) -> dict:
        stats = {"model": label, "generator": generator, **merge_answer_stats(shards)}
        em = f", exact match {_fmt(stats['exact_match'])}" if stats["exact_match"] is not None else ""
        rt.result(f"{label}: {stats['answers']} answers, mean {_fmt(stats['answer_chars_mean'], 1)} characters{em}")
        return stats

    return stage.run(n_prompts, do_shard, finish)


# --------------------------------------------------------------------------- pairwise judging


def open_pairwise_judge(rt: RunContext) -> PairwiseJudge:
    """The judge ``eval.judge`` names (the base model by default, or one an endpoint serves)."""
    cfg = rt.cfg.eval
    target = rt.sources.eval_judge or rt.base_model
    if cfg.judge_api_base:
        served = cfg.judge if cfg.judge != "base" else None
        gen = dataclasses.replace(rt.cfg.generation, backend="openai", api_base=cfg.judge_api_base,
                                  served_model_name=served)
        return PairwiseJudge(rt.model(outside=target, generation=gen), served or rt.cfg.base_model,
                     {"api_base": cfg.judge_api_base, "model": served or target})
    if rt.sources.eval_judge is None:
        return PairwiseJudge(rt.model(None), rt.cfg.base_model, {"base": rt.base_identity})
    return PairwiseJudge(rt.model(outside=target), cfg.judge, model_identity(target, None))


def judge_stage(rt: RunContext, label: str, reference: str, judge: PairwiseJudge) -> StageResult:
    """``judgements/``: two judgements per prompt (each order), with the raw text or probabilities."""
    from ..evaluation.pairwise import (CHOICES, VERDICT_PREFILL, judge_tasks, judgement_rows_generate,
                                       judgement_rows_logits, judgement_schema)
    from ..evaluation.winrate import summarize
    from ..generation.constraints import parse_constraint
    from ..generation.rejection import (check_identity, describe_checked, generate_checked, load_validator,
                                        merge_checked)

    cfg = rt.cfg.eval
    ev = layout.evaluation(label)
    ref_rel = EVAL_PROMPTS if reference == "outputs" else layout.evaluation(reference).answers
    cache: dict[str, Any] = {}
    generate = cfg.judge_mode == "generate"
    # eval.judge_constraint and judge_validator are refused outside generate mode (EvalConfig.validate)
    constraint = parse_constraint(cfg.judge_constraint, cfg.judge_max_new_tokens) if cfg.judge_constraint else None
    validator = load_validator(cfg.judge_validator, "eval.judge_validator") if cfg.judge_validator else None
    checks = check_identity(constraint, cfg.judge_validator, cfg.judge_max_tries)
    deps = {"judge": judge.identity, "mode": cfg.judge_mode, "template": template_hash("pairwise"),
            "system_prompt": cfg.judge_system_prompt, "reference": reference,
            "bootstrap_samples": cfg.bootstrap_samples,
            "max_new_tokens": cfg.judge_max_new_tokens if generate else None,
            **rt.generation_key(), **({"constraint": constraint.identity()} if constraint else {}),
            **({"checks": checks, "temperature": cfg.judge_temperature}
               if validator or cfg.judge_max_tries != 1 or cfg.judge_temperature else {})}
    name = ev.stage("judge")
    n_answers = rt.store.count_rows(ev.answers)
    stage = rt.store.sharded_stage(name, deps, [ev.judgements], rt.cfg.shard_size, inputs=[ev.answers, ref_rel],
                                   force=rt.forced(name), job="eval")

    def pairs() -> list[dict]:
        if "pairs" not in cache:
            refs = {r["prompt_id"]: r["output"] for r in rt.store.read_rows(ref_rel)}
            cache["pairs"] = [{"prompt_id": a["prompt_id"], "instruction": a["instruction"],
                               "model_answer": a["output"],
                               "reference_answer": refs[a["prompt_id"]]} for a in rt.store.read_rows(ev.answers)]
        return cache["pairs"]

    def do_shard(shard: int, start: int, end: int) -> dict:
        from ..generation.base import SamplingParams

        part = pairs()[start:end]
        tasks = judge_tasks(part)
        logits = cfg.judge_mode == "logits"
        tok = judge.model.tokenizer
        texts = [render_prompt(tok, messages_for(t["user_turn"], system=cfg.judge_system_prompt),
                               prefill=VERDICT_PREFILL if logits else "") for t in tasks]
        checks = None
        if logits:
            rows = judgement_rows_logits(tasks, judge.model.generator.choice_probs(texts, CHOICES), judge.name)
        else:
            params = SamplingParams(temperature=cfg.judge_temperature, max_new_tokens=cfg.judge_max_new_tokens,
                                    seed=rt.cfg.random_seed, constraint=constraint)
            checked = generate_checked(judge.model.generator.generate, texts, params, validator,
                                       cfg.judge_max_tries)  # the verdicts checked
            rows, checks = judgement_rows_generate(tasks, checked.texts, judge.name), checked.stats
        rt.store.write_rows(shard_file(ev.judgements, shard), rows, schema=judgement_schema())
        kinds = dict(Counter(r["parse_status"] for r in rows if r["parse_status"] != "ok"))
        return {"prompt_ids": [r["prompt_id"] for r in rows], "orders": [r["order"] for r in rows],
                "outcomes": [r["outcome"] for r in rows], "parse_failure_kinds": kinds,
                "tie_verdicts": sum(r["verdict"] == "tie" for r in rows), "checks": checks,
                "model_chars": {p["prompt_id"]: len(p["model_answer"]) for p in part},
                "reference_chars": {p["prompt_id"]: len(p["reference_answer"]) for p in part}}

    def finish(shards: list[dict]) -> dict:
        flat = lambda key: [x for s in shards for x in s[key]]  # noqa: E731
        chars = lambda key: {k: v for s in shards for k, v in s[key].items()}  # noqa: E731
        kinds = dict(sum((Counter(s["parse_failure_kinds"]) for s in shards), Counter()))
        summary = summarize(flat("orders"), flat("outcomes"), flat("prompt_ids"), chars("model_chars"),
                            chars("reference_chars"), cfg.bootstrap_samples, rt.cfg.random_seed)
        stats = {"judge": judge.name, "judge_mode": cfg.judge_mode, "reference": reference, **summary,
                 "judgements": len(flat("orders")), "parse_failures": sum(kinds.values()),
                 "parse_failure_kinds": kinds, "tie_verdicts": sum(s["tie_verdicts"] for s in shards)}
        if checks:
            stats["checks"] = merge_checked([s.get("checks") for s in shards], **checks)
            for note in describe_checked(f"{label} judge", stats["checks"], rt.cfg.generation.backend):
                rt.warn(note)
        lo, hi = stats["win_rate_ci"]
        rt.result(f"{label}: win rate vs {reference} {_fmt(stats['win_rate'])} [{_fmt(lo)}, {_fmt(hi)}], "
               f"length-controlled {_fmt(stats['lc_win_rate'])}, position consistency "
               f"{_fmt(stats['position_consistency'])}")
        return stats

    return stage.run(n_answers, do_shard, finish)


# --------------------------------------------------------------------------- lm-evaluation-harness


def lm_eval_stage(rt: RunContext, label: str) -> StageResult:
    """``lm_eval.json``: the harness's metrics for each of ``eval.lm_eval_tasks``."""
    cfg = rt.cfg.eval
    ev = layout.evaluation(label)

    include = cfg.lm_eval_include_path
    deps = {"tasks": list(cfg.lm_eval_tasks),
            "include": source_identity(include, None, full=True) if include else None,
            "limit": cfg.lm_eval_limit, "num_fewshot": cfg.lm_eval_num_fewshot,
            "chat_template": cfg.lm_eval_chat_template,
            "system_prompt": cfg.system_prompt if cfg.lm_eval_chat_template else None, "base": rt.base_identity,
            "dtype": rt.cfg.generation.dtype, "random_seed": rt.cfg.random_seed}
    name = ev.stage("lm_eval")
    stage = rt.store.stage(name, deps, [ev.lm_eval], inputs=_adapter_inputs(label), force=rt.forced(name), job="eval")
    if not stage.runs:
        return stage.result()
    with stage.running():
        from ..evaluation.lm_harness import flat_metrics, model_args, run_tasks, task_manager
        from ..progress import progress_bars

        manager = task_manager(cfg.lm_eval_tasks, cfg.lm_eval_include_path)
        adapter = str(rt.store.path(ev.adapter)) if ev.adapter else None
        args = model_args(rt.base_model, adapter, rt.cfg.base_model_revision, pick_device(rt.cfg.generation.device),
                          rt.cfg.generation.dtype)
        with progress_bars(rt.progress):
            summary = run_tasks(manager, cfg.lm_eval_tasks, args, batch_size=cfg.lm_eval_batch_size,
                                limit=cfg.lm_eval_limit, num_fewshot=cfg.lm_eval_num_fewshot,
                                chat_template=cfg.lm_eval_chat_template, system_prompt=cfg.system_prompt,
                                seed=rt.cfg.random_seed)
        write_json(rt.store.path(ev.lm_eval), summary)
        metrics = flat_metrics(summary)
        rt.result(f"{label}: lm-eval " + ", ".join(f"{k} {_fmt(v)}" for k, v in metrics.items()))
    return stage.finish({"lm_eval": metrics})


def _fmt(value: Optional[float], digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"
