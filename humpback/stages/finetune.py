"""Training stages: the backward model, the seed model M0, each iteration's model M_K, and with
``train.objective: dpo`` the DPO of M_K on its own judged answers.

The mixtures are pure functions of rows (:mod:`humpback.data.mixture`, tested exactly); the training
itself, in this process or under ``accelerate launch``, is :func:`humpback.training.train_model`.
"""

from __future__ import annotations

from typing import Optional

from .. import layout
from ..config import to_dict
from ..data.mixture import backward_rows, mixture_rows
from ..errors import DataError
from ..layout import BACKWARD, BACKWARD_TRAIN, M0, M0_TRAIN, SEED
from ..prompts import SEED_SYSTEM_PROMPT, WEB_SYSTEM_PROMPT, template_hash
from ..run import RunContext
from ..store import Stage, StageResult, Step


def backward_stage(rt: RunContext) -> StageResult:
    deps = {"train": _train_deps(rt), "base": rt.base_identity, "template": template_hash("backward")}
    stage = _training_stage(rt, "backward", deps, [SEED], BACKWARD_TRAIN, BACKWARD)
    if not stage.runs:
        return stage.result()
    with stage.running():
        stats = _train(rt, backward_rows(rt.store.read_rows(SEED)), BACKWARD_TRAIN, BACKWARD, iteration=None)
    return stage.finish(stats)


def m0_stage(rt: RunContext) -> StageResult:
    deps = {"train": _train_deps(rt), "base": rt.base_identity, "tags": [SEED_SYSTEM_PROMPT]}
    stage = _training_stage(rt, "m0", deps, [SEED], M0_TRAIN, M0)
    if not stage.runs:
        return stage.result()
    with stage.running():
        stats = _train(rt, mixture_rows(rt.store.read_rows(SEED), []), M0_TRAIN, M0, iteration=0)
    return stage.finish(stats)


def finetuned_model(rt: RunContext, k: int) -> str:
    """Where iteration K's finetuning writes its model: ``iter_K/model``, or with train.objective dpo
    ``iter_K/sft_model`` (DPO from it then writes ``iter_K/model``)."""
    it = layout.iteration(k)
    return it.sft_model if rt.cfg.train.objective == "dpo" else it.model


def next_model_stage(rt: RunContext, k: int) -> StageResult:
    """Model K: finetuned from the base model on seed + A(K), with the paper's tags."""
    it = layout.iteration(k)
    model = finetuned_model(rt, k)
    deps = {"train": _train_deps(rt), "base": rt.base_identity, "tags": [SEED_SYSTEM_PROMPT, WEB_SYSTEM_PROMPT]}
    stage = _training_stage(rt, it.stage("train"), deps, [SEED, it.curated], it.mixture, model)
    if not stage.runs:
        return stage.result()
    with stage.running():
        rows = mixture_rows(rt.store.read_rows(SEED), rt.store.read_rows(it.curated))
        stats = _train(rt, rows, it.mixture, model, iteration=k)
    return stage.finish(stats)


def mixture_model_stage(rt: RunContext, k: int) -> StageResult:
    """Model K trained on an existing mixture iter_K/train.parquet (replay: no generation at all)."""
    it = layout.iteration(k)
    model = finetuned_model(rt, k)
    name = it.stage("train")
    deps = {"train": _train_deps(rt), "base": rt.base_identity}
    stage = rt.store.stage(name, deps, [model], inputs=[it.mixture], force=rt.forced(name))
    if not stage.runs:
        return stage.result()
    with stage.running():
        stats = _train(rt, rt.store.read_rows(it.mixture), None, model, iteration=k)
    return stage.finish(stats)


def dpo_stage(rt: RunContext, k: int) -> StageResult:
    """Model K by DPO from the finetuned model K (its own reference) on iter_K/preferences.parquet."""
    from ..training import train_model
    from ..training.dpo import PreferenceJob

    it = layout.iteration(k)
    name = it.stage("dpo")
    inputs = [it.sft_model, it.preferences]
    deps = {"dpo": to_dict(rt.cfg.dpo), "train": train_deps(rt), "base": rt.base_identity}
    stage = rt.store.stage(name, deps, [it.model], inputs=inputs, force=rt.forced(name),
                           lineage=[Step("dpo", tuple(inputs), (it.model,))])
    if not stage.runs:
        return stage.result()
    with stage.running():
        rows = rt.store.read_rows(it.preferences)
        if not rows:  # the preferences stage stops first; a replayed or edited file could still be empty
            raise DataError(f"{it.preferences}: no preference pairs, nothing for DPO to train on")
        with rt.tracker.training(it.model) as reporting:
            job = PreferenceJob(rt.base_model, str(rt.store.path(it.sft_model)), rt.cfg.train, rt.cfg.dpo,
                                seed=rt.cfg.random_seed, revision=rt.cfg.base_model_revision, progress=rt.progress,
                                **reporting)
            result = train_model(job, rows, rt.store.path(it.preferences), rt.store.path(it.model))
        tracked = it.model.replace("/", "_")
        for point in result["curve"]:
            for metric, value in point.items():
                if metric != "step":
                    rt.metric(tracked, f"dpo/{metric}", value, iteration=k)
        rt.metric(tracked, "dpo/final_loss", result["train_loss"], iteration=k)
        if result.get("dropped_examples"):
            rt.warn(f"dpo: {result['dropped_examples']} of {len(rows)} pairs dropped (prompt >= "
                    f"train.max_length={rt.cfg.train.max_length})")
        rt.result(dpo_line(len(rows), result))
    return stage.finish(result)


def dpo_line(n_pairs: int, result: dict) -> str:
    """``dpo: 40 pairs, 5 steps in 3s; loss 0.693 -> 0.671, reward accuracy 0.750, margin 0.046``."""
    losses = [p["loss"] for p in result.get("losses") or []]
    curve = f"loss {losses[0]:.3f} -> {losses[-1]:.3f}" if losses else f"mean loss {result['train_loss']:.3f}"
    tail = "".join(f", {label} {result[key]:.3f}" for key, label in (("final_accuracy", "reward accuracy"),
                                                                     ("final_margin", "margin"))
                   if result.get(key) is not None)
    return f"dpo: {n_pairs} pairs, {result['steps']} steps in {result.get('runtime_s') or 0:.0f}s; {curve}{tail}"


def _training_stage(rt: RunContext, name: str, deps: dict, sources: list[str], mixture: str, model: str) -> Stage:
    """Declare a training stage: the mixture from its sources, the model from the mixture (its lineage)."""
    lineage = [Step("mix", tuple(sources), (mixture,)), Step("train", (mixture,), (model,))]
    return rt.store.stage(name, deps, [mixture, model], inputs=sources, force=rt.forced(name), lineage=lineage)


def _train_deps(rt: RunContext) -> dict:
    return train_deps(rt)


def train_deps(rt: RunContext) -> dict:
    """What a training's result depends on of the recipe's ``train`` section (and the seed)."""
    d = to_dict(rt.cfg.train)
    d.pop("accelerate_config")  # where training runs does not change what it learns
    d.pop("num_processes")
    d.pop("logging_steps")
    d.pop("objective")  # which model the finetuning writes is its output, not what it learns
    return {**d, "random_seed": rt.cfg.random_seed}


def _train(rt: RunContext, rows: list[dict], rows_rel: Optional[str], model_rel: str,
           iteration: Optional[int]) -> dict:
    """Save the exact mixture (unless it is already saved, rows_rel None), train on it, log the losses."""
    from ..training import train_model

    mixture_rel = rows_rel or layout.iteration(iteration).mixture
    if rows_rel is not None:
        rt.store.write_rows(rows_rel, rows)
    with rt.tracker.training(model_rel) as reporting:  # TRL's own loss reporting (wandb), else {}
        result = train_model(rt.train_job(**reporting), rows, rt.store.path(mixture_rel), rt.store.path(model_rel))
    stage = model_rel.replace("/", "_")
    for point in result["losses"]:
        rt.metric(stage, "train/loss", point["loss"], iteration=iteration)
    rt.metric(stage, "train/final_loss", result["train_loss"], iteration=iteration)
    if result.get("dropped_examples"):
        rt.warn(f"{layout.model_label(model_rel)}: {result['dropped_examples']} of {len(rows)} examples dropped "
                f"(prompt >= train.max_length={rt.cfg.train.max_length})")
        rt.metric(stage, "train/dropped_examples", result["dropped_examples"], iteration=iteration)
    rt.result(train_line("train" if layout.iteration_of(model_rel) else layout.model_label(model_rel), len(rows),
                         result))
    return result


def train_line(label: str, n_rows: int, result: dict) -> str:
    """A training stage's result line: ``m0: 118 examples, 20 steps in 31s; loss 7.579 -> 7.441 (mean 7.503)``."""
    losses = [p["loss"] for p in result.get("losses") or []]
    curve = f"loss {losses[0]:.3f} -> {losses[-1]:.3f} (mean {result['train_loss']:.3f})" if losses else \
        f"mean loss {result['train_loss']:.3f}"
    return f"{label}: {n_rows} examples, {result['steps']} steps in {result.get('runtime_s') or 0:.0f}s; {curve}"
