"""Training stages: the backward model, the seed model M0, and each iteration's model M_K.

The mixtures are pure functions of rows (tested exactly); training itself is TRL SFT + PEFT in
:mod:`humpback.training`, run in this process or, with ``train.accelerate_config``, under
``accelerate launch`` (several GPUs, DeepSpeed) through :mod:`humpback.train_worker`.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from ..chat import messages_for
from ..config import SEED_SYSTEM_PROMPT, WEB_SYSTEM_PROMPT, dump_yaml, to_dict
from ..errors import HumpbackError
from ..prompts import render_backward, template_hash
from ..runtime import Runtime
from ..store import StageResult, write_text
from .prepare import SEED

BACKWARD = "models/backward"
M0 = "models/m0"
BACKWARD_TRAIN = "data/train_backward.parquet"
M0_TRAIN = "data/train_m0.parquet"


def backward_rows(seed: list[dict]) -> list[dict]:
    """Flipped seed pairs: the output is the prompt, the instruction the target (M_yx = p(x|y))."""
    return [{"id": r["id"], "source": "seed", "messages": messages_for(render_backward(r["output"]), r["instruction"])}
            for r in seed]


def mixture_rows(seed: list[dict], curated: list[dict]) -> list[dict]:
    """Seed pairs tagged as AI-assistant answers, curated pairs tagged as web-search knowledge."""
    rows = [{"id": r["id"], "source": "seed",
             "messages": messages_for(r["instruction"], r["output"], system=SEED_SYSTEM_PROMPT)} for r in seed]
    rows += [{"id": r["candidate_id"], "source": "augmented",
              "messages": messages_for(r["instruction"], r["output"], system=WEB_SYSTEM_PROMPT)} for r in curated]
    return rows


def backward_stage(rt: Runtime) -> StageResult:
    def work() -> dict:
        return _train(rt, backward_rows(rt.store.read_rows(SEED)), BACKWARD_TRAIN, BACKWARD, iteration=None)

    deps = {"train": _train_deps(rt), "base": rt.base_identity(), "template": template_hash("backward")}
    return rt.store.stage("backward", deps, [BACKWARD_TRAIN, BACKWARD], work, inputs=[SEED],
                          force="backward" in rt.force)


def m0_stage(rt: Runtime) -> StageResult:
    def work() -> dict:
        return _train(rt, mixture_rows(rt.store.read_rows(SEED), []), M0_TRAIN, M0, iteration=0)

    deps = {"train": _train_deps(rt), "base": rt.base_identity(), "tags": [SEED_SYSTEM_PROMPT]}
    return rt.store.stage("m0", deps, [M0_TRAIN, M0], work, inputs=[SEED], force="m0" in rt.force)


def next_model_stage(rt: Runtime, k: int, curated_rel: str) -> StageResult:
    """Model K: finetuned from the base model on seed + A(K), with the paper's tags."""
    train_rel, model_rel = f"iter_{k}/train.parquet", f"iter_{k}/model"

    def work() -> dict:
        rows = mixture_rows(rt.store.read_rows(SEED), rt.store.read_rows(curated_rel))
        return _train(rt, rows, train_rel, model_rel, iteration=k)

    deps = {"train": _train_deps(rt), "base": rt.base_identity(), "tags": [SEED_SYSTEM_PROMPT, WEB_SYSTEM_PROMPT]}
    name = f"iter_{k}/train"
    return rt.store.stage(name, deps, [train_rel, model_rel], work, inputs=[SEED, curated_rel],
                          force=name in rt.force or "train" in rt.force)


def mixture_model_stage(rt: Runtime, k: int) -> StageResult:
    """Model K trained on an existing mixture iter_K/train.parquet (replay: no generation at all)."""
    train_rel, model_rel = f"iter_{k}/train.parquet", f"iter_{k}/model"

    def work() -> dict:
        return _train(rt, rt.store.read_rows(train_rel), None, model_rel, iteration=k)

    deps = {"train": _train_deps(rt), "base": rt.base_identity()}
    name = f"iter_{k}/train"
    return rt.store.stage(name, deps, [model_rel], work, inputs=[train_rel], force=name in rt.force)


def _train_deps(rt: Runtime) -> dict:
    d = to_dict(rt.cfg.train)
    d.pop("accelerate_config")  # where training runs does not change what it learns
    d.pop("num_processes")
    d.pop("logging_steps")
    return {**d, "random_seed": rt.cfg.random_seed}


def _train(rt: Runtime, rows: list[dict], rows_rel: str | None, model_rel: str, iteration: int | None) -> dict:
    """Save the exact mixture (unless it is already saved, rows_rel None), train on it into a scratch
    folder, then move the model into place."""
    if rows_rel is not None:
        rt.store.write_rows(rows_rel, rows)
    final = rt.store.path(model_rel)
    scratch = final.with_name(final.name + ".partial")
    shutil.rmtree(scratch, ignore_errors=True)
    rt.log(f"  training {model_rel} on {len(rows)} examples")
    with rt.tracker.training(model_rel) as reporting:  # TRL's own loss reporting (wandb), else {}
        if rt.cfg.train.accelerate_config:
            result = _train_launched(rt, rows_rel or f"{model_rel.rsplit('/', 1)[0]}/train.parquet", scratch)
        else:
            from ..training import train_sft

            r = train_sft(rt.base_model, rows, scratch, rt.cfg.train, seed=rt.cfg.random_seed,
                          revision=rt.cfg.base_model_revision, progress=rt.progress, **reporting)
            result = r.summary()
    shutil.rmtree(final, ignore_errors=True)
    os.replace(scratch, final)
    stage = model_rel.replace("/", "_")
    for point in result["losses"]:
        rt.metric(stage, "train/loss", point["loss"], iteration=iteration)
    rt.metric(stage, "train/final_loss", result["train_loss"], iteration=iteration)
    if result.get("dropped_examples"):
        rt.log(f"  {result['dropped_examples']} of {len(rows)} examples dropped: the prompt alone fills "
               f"train.max_length={rt.cfg.train.max_length}")
        rt.metric(stage, "train/dropped_examples", result["dropped_examples"], iteration=iteration)
    return result


def _train_launched(rt: Runtime, rows_rel: str, scratch: Path) -> dict:
    """Run the training under ``accelerate launch`` with the recipe's accelerate config."""
    spec_dir = scratch.parent / (scratch.name + ".spec")
    spec_dir.mkdir(parents=True, exist_ok=True)
    write_text(spec_dir / "config.yaml", dump_yaml(rt.cfg))
    result_path = spec_dir / "result.json"
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", rt.cfg.train.accelerate_config]
    if rt.cfg.train.num_processes:
        cmd += ["--num_processes", str(rt.cfg.train.num_processes)]
    cmd += ["-m", "humpback.train_worker", "--config", str(spec_dir / "config.yaml"), "--base-model", rt.base_model,
           "--rows", str(rt.store.path(rows_rel)), "--output", str(scratch), "--result", str(result_path)]
    rt.log("  launching: " + " ".join(cmd))
    proc = subprocess.run(cmd)
    if proc.returncode != 0 or not result_path.exists():
        raise HumpbackError(f"training under accelerate launch failed (exit {proc.returncode}); its log is above")
    result = json.loads(result_path.read_text())
    shutil.rmtree(spec_dir, ignore_errors=True)
    return result
