"""The run folder's layout: every path of a run and every stage name. Nobody else spells one.

Paths are relative to the run folder. The loop's stages, replay, export, the read side and the
trackers all take them from here; an iteration's paths come from :func:`iteration`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

CONFIG = "config.yaml"
MANIFEST = "manifest.json"
MANIFEST_LOCK = ".manifest.lock"
RUN_LOCK = ".run.lock"  # held by the run's main process (see humpback.store.lock)
METRICS = "metrics.jsonl"
REPORT = "report.html"
TRACKING = "tracking.json"
PROGRESS = ".progress"  # per-shard markers of the sharded stages
WANDB = "wandb"
TENSORBOARD = "tensorboard"

SEED = "data/seed.parquet"
SEGMENTS = "data/segments.parquet"
FUNNEL = "data/funnel.json"
BACKWARD_TRAIN = "data/train_backward.parquet"
M0_TRAIN = "data/train_m0.parquet"
BACKWARD = "models/backward"
M0 = "models/m0"
CANDIDATES = "augment/candidates"
REJECTED = "augment/rejected"
# augment.source self_instruct: the seed tasks, and the machine-written tasks (one shard per round)
SEED_TASKS = "data/seed_tasks.parquet"
TASKS = "augment/tasks"
TASKS_REJECTED = "augment/tasks_rejected"

# Stages that run once per run, in loop order; each iteration adds ITERATION_STAGES.
RUN_STAGES = ("seed", "segments", "backward", "m0", "augment")
SELF_INSTRUCT_STAGES = ("seed", "seed_tasks", "m0", "tasks", "augment")  # augment.source self_instruct
ITERATION_STAGES = ("score", "select", "train")

_ITER = re.compile(r"iter_(\d+)(?:/|$)")


@dataclass(frozen=True)
class Iteration:
    """The paths and stage names of iteration K (K >= 1)."""

    k: int

    @property
    def dir(self) -> str:
        return f"iter_{self.k}"

    @property
    def scores(self) -> str:
        return f"{self.dir}/scores"  # a folder of shards

    @property
    def curated(self) -> str:
        return f"{self.dir}/curated.parquet"

    @property
    def mixture(self) -> str:
        return f"{self.dir}/train.parquet"

    @property
    def model(self) -> str:
        return f"{self.dir}/model"

    @property
    def stats(self) -> str:
        return f"{self.dir}/stats.json"

    def stage(self, what: str) -> str:
        """The manifest name of one of this iteration's stages (``score``, ``select``, ``train``)."""
        if what not in ITERATION_STAGES:
            raise ValueError(f"unknown iteration stage {what!r}")
        return f"{self.dir}/{what}"

    @property
    def judge(self) -> str:
        """The model that judges this iteration's pool: model K-1, M0 for the first iteration."""
        return M0 if self.k == 1 else iteration(self.k - 1).model


def iteration(k: int) -> Iteration:
    if k < 1:
        raise ValueError(f"iterations are numbered from 1, got {k}")
    return Iteration(k)


def iteration_of(rel: str) -> Optional[int]:
    """K for a path or stage name inside ``iter_K/``; None for anything else."""
    m = _ITER.match(rel)
    return int(m.group(1)) if m else None


def iterations_on_disk(root: Path) -> list[int]:
    """The K of every ``iter_K`` folder present in a run folder."""
    return sorted(k for p in Path(root).glob("iter_*") if (k := iteration_of(p.name)) is not None)


def stage_kind(name: str) -> str:
    """``iter_2/score`` -> ``score``; a run stage is its own kind. ``--force`` matches either form."""
    return name.rsplit("/", 1)[-1]


# Names of the run's artifacts (trackers) and models (loss curves), by path.
_NAMES = {SEED: "seed", SEGMENTS: "segments", FUNNEL: "funnel", BACKWARD_TRAIN: "mixture-backward",
          M0_TRAIN: "mixture-m0", BACKWARD: "model-backward", M0: "model-m0", CANDIDATES: "candidates",
          REJECTED: "rejected", SEED_TASKS: "seed-tasks", TASKS: "tasks", TASKS_REJECTED: "tasks-rejected"}
_MODEL_LABELS = {BACKWARD: "backward", M0: "m0"}


def artifact(rel: str) -> tuple[str, str]:
    """(name, type) of a run-folder output as a tracker artifact: ``iter_2/curated.parquet`` ->
    ``("curated-2", "dataset")``, ``models/m0`` -> ``("model-m0", "model")``."""
    k = iteration_of(rel)
    if k is not None:
        it = iteration(k)
        kinds = {it.scores: "scores", it.curated: "curated", it.mixture: "mixture", it.model: "model",
                 it.stats: "stats"}
        if rel not in kinds:
            raise ValueError(f"{rel}: not an output of iteration {k}")
        name = f"{kinds[rel]}-{k}"
        return name, "model" if rel == it.model else "dataset"
    if rel not in _NAMES:
        raise ValueError(f"{rel}: not a run-folder output")
    return _NAMES[rel], "model" if rel.startswith("models/") else "dataset"


def model_label(rel: str) -> str:
    """The short name of a model of the run: ``backward``, ``m0``, ``iter_2``."""
    k = iteration_of(rel)
    return iteration(k).dir if k is not None else _MODEL_LABELS[rel]
