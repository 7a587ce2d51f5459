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
PROGRESS = ".progress"  # per-shard markers of the sharded stages: progress_dir(), shard_marker()
WANDB = "wandb"
TENSORBOARD = "tensorboard"
REPLAY_AGREEMENT = "replay_agreement.json"  # a re-scoring replay: the new judge's scores vs the run's own
LOGS = "logs"  # one log file per attempt: run_log()

SEED = "data/seed.parquet"  # the seed pairs models train on (the held-out ones are not among them)
HELDOUT = "data/heldout.parquet"  # seed pairs kept out of every training mixture (seed.heldout)
SEGMENTS = "data/segments.parquet"
FUNNEL = "data/funnel.json"
BACKWARD_TRAIN = "data/train_backward.parquet"
M0_TRAIN = "data/train_m0.parquet"
BACKWARD = "models/backward"
M0 = "models/m0"
CANDIDATES = "augment/candidates"
REJECTED = "augment/rejected"
EVAL_PROMPTS = "eval/prompts.parquet"  # the prompt set every model answers

# humpback review: a reviewer's verdicts on generated pairs (see humpback.review); the lock guards its updates
REVIEW = "review"
REVIEW_DECISIONS = "review/decisions.parquet"
REVIEW_LOCK = "review/.decisions.lock"

# augment.source self_instruct: the seed tasks, and the machine-written tasks (one shard per round)
SEED_TASKS = "data/seed_tasks.parquet"
TASKS = "augment/tasks"
TASKS_REJECTED = "augment/tasks_rejected"

# Stages that run once per run, in loop order; each iteration adds ITERATION_STAGES.
RUN_STAGES = ("seed", "segments", "eval_prompts", "backward", "m0", "augment")
SELF_INSTRUCT_STAGES = ("seed", "seed_tasks", "eval_prompts", "m0", "tasks", "augment")  # augment.source self_instruct
# dev: only with curate.dev_set; compare, compare_dev: only with curate.compare_judges
ITERATION_STAGES = ("score", "dev", "compare", "compare_dev", "select", "train")
# train.objective dpo: model K's answers to the prompt bank, judged; the pairs; DPO on them.
PREFERENCE_STAGES = ("responses", "preferences", "dpo")
# Each evaluated model's stages (see Evaluation); ``--force eval`` re-runs all of them.
EVAL_STAGES = ("loss", "answers", "judge", "lm_eval")

# A sharded stage's output is a folder of shards (shard_file); each finished shard has a marker (shard_marker).
SHARD = "part-{:05d}"  # a shard's name without its suffix: part-00003
SHARD_FILES = "part-*.parquet"  # the shards in an output folder (a glob)
SHARD_MARKERS = "part-*.json"  # the markers in a stage's progress_dir (a glob)

RUNS = "runs"  # where a run folder goes when no --run-dir is given: default_run_dir()

_ITER = re.compile(r"iter_(\d+)(?:/|$)")
_LOG = re.compile(r"run-(\d+)(?:\.worker-(\d+))?\.log")


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
    def dev_scores(self) -> str:
        return f"{self.dir}/dev_scores.parquet"  # curate.dev_set scored by this iteration's judge

    def compare_scores(self, judge_kind: str) -> str:
        """A comparison judge's scores of the candidates (curate.compare_judges): a folder of shards."""
        return f"{self.dir}/compare/{judge_kind}/scores"

    def compare_dev_scores(self, judge_kind: str) -> str:
        """A comparison judge's scores of the dev set."""
        return f"{self.dir}/compare/{judge_kind}/dev_scores.parquet"

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

    # train.objective dpo: the finetuned model, its judged answers, the pairs; ``model`` is then the DPO one.
    @property
    def sft_model(self) -> str:
        return f"{self.dir}/sft_model"

    @property
    def responses(self) -> str:
        return f"{self.dir}/responses"  # a folder of shards: n answers per prompt of the bank

    @property
    def response_scores(self) -> str:
        return f"{self.dir}/response_scores"  # a folder of shards: the judge's score row of each answer

    @property
    def preferences(self) -> str:
        return f"{self.dir}/preferences.parquet"

    def stage(self, what: str) -> str:
        """The manifest name of one of this iteration's stages (``score``, ``dev``, ``compare``, ``select``,
        ``train``; ``responses``, ``preferences``, ``dpo``)."""
        if what not in ITERATION_STAGES + PREFERENCE_STAGES:
            raise ValueError(f"unknown iteration stage {what!r}")
        return f"{self.dir}/{what}"

    @property
    def judge(self) -> str:
        """The model that judges this iteration's pool: model K-1, M0 for the first iteration."""
        return M0 if self.k == 1 else iteration(self.k - 1).model


def shard_file(folder: str, shard: int) -> str:
    """Shard ``shard`` of the output folder ``folder``: ``augment/candidates/part-00003.parquet``."""
    return f"{folder}/{SHARD.format(shard)}.parquet"


def progress_dir(stage: str) -> str:
    """The folder of a sharded (or round) stage's shard markers: ``.progress/iter_1_score``."""
    return f"{PROGRESS}/{stage.replace('/', '_')}"


def shard_marker(stage: str, shard: int) -> str:
    """The marker of one finished shard of ``stage``: ``.progress/augment/part-00003.json``."""
    return f"{progress_dir(stage)}/{SHARD.format(shard)}.json"


def shard_number(path: Path | str) -> int:
    """The shard a shard file or marker is of: ``part-00003.parquet`` -> 3."""
    return int(Path(path).stem.split("-")[1])


def default_run_dir(name: str) -> str:
    """The run folder of a run named ``name`` when no --run-dir is given (relative to the working directory)."""
    return f"{RUNS}/{name}"


def run_log(attempt: int, worker: Optional[int] = None) -> str:
    """The log of one attempt (one command on the run folder): ``logs/run-3.log``; with several
    workers sharing the folder, one each: ``logs/run-3.worker-1.log``."""
    return f"{LOGS}/run-{attempt}" + ("" if worker is None else f".worker-{worker}") + ".log"


def log_attempt(name: str, worker: Optional[int] = None) -> Optional[int]:
    """The attempt number of a log file name of ``worker`` (None: a single worker), else None."""
    m = _LOG.fullmatch(name)
    if not m or (m.group(2) is None) != (worker is None) or (worker is not None and int(m.group(2)) != worker):
        return None
    return int(m.group(1))


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


def is_eval_stage(name: str) -> bool:
    """An evaluation stage: ``eval_prompts``, or a model's ``eval/m0/answers``, ``iter_2/eval/judge``, ..."""
    head, _, kind = name.rpartition("/")
    return name == "eval_prompts" or (kind in EVAL_STAGES and (head.startswith("eval/") or head.endswith("/eval")))


def stage_kind(name: str) -> str:
    """``iter_2/score`` -> ``score``; a run stage is its own kind. ``--force`` matches either form."""
    return name.rsplit("/", 1)[-1]


# Names of the run's artifacts (trackers) and models (loss curves), by path.
_NAMES = {SEED: "seed", SEGMENTS: "segments", FUNNEL: "funnel", BACKWARD_TRAIN: "mixture-backward",
          M0_TRAIN: "mixture-m0", BACKWARD: "model-backward", M0: "model-m0", CANDIDATES: "candidates",
          REJECTED: "rejected", HELDOUT: "heldout", EVAL_PROMPTS: "eval-prompts", SEED_TASKS: "seed-tasks",
          TASKS: "tasks", TASKS_REJECTED: "tasks-rejected"}
_MODEL_LABELS = {BACKWARD: "backward", M0: "m0"}


def artifact(rel: str) -> tuple[str, str]:
    """(name, type) of a run-folder output as a tracker artifact: ``iter_2/curated.parquet`` ->
    ``("curated-2", "dataset")``, ``models/m0`` -> ``("model-m0", "model")``."""
    for label in _eval_labels(rel):
        ev = evaluation(label)
        kinds = {ev.answers: "answers", ev.judgements: "judgements", ev.heldout_loss: "heldout-loss",
                 ev.lm_eval: "lm-eval"}
        if rel in kinds:
            return f"eval-{kinds[rel]}-{label.replace('_', '-')}", "dataset"
    k = iteration_of(rel)
    if k is not None:
        it = iteration(k)
        kinds = {it.scores: "scores", it.dev_scores: "dev-scores", it.curated: "curated", it.mixture: "mixture",
                 it.model: "model",
                 it.stats: "stats", it.sft_model: "sft-model", it.responses: "responses",
                 it.response_scores: "response-scores", it.preferences: "preferences"}
        m = re.fullmatch(rf"{it.dir}/compare/(\w+)/(scores|dev_scores\.parquet)", rel)
        if m:
            kinds[rel] = f"compare-{m.group(1)}-{'scores' if m.group(2) == 'scores' else 'dev-scores'}"
        if rel not in kinds:
            raise ValueError(f"{rel}: not an output of iteration {k}")
        name = f"{kinds[rel]}-{k}"
        return name, "model" if rel in (it.model, it.sft_model) else "dataset"
    if rel not in _NAMES:
        raise ValueError(f"{rel}: not a run-folder output")
    return _NAMES[rel], "model" if rel.startswith("models/") else "dataset"


def model_label(rel: str) -> str:
    """The short name of a model of the run: ``backward``, ``m0``, ``iter_2`` (``iter_2_sft``: the finetuned
    model that DPO starts from, with train.objective dpo)."""
    k = iteration_of(rel)
    if k is not None and rel == iteration(k).sft_model:
        return f"{iteration(k).dir}_sft"
    return iteration(k).dir if k is not None else _MODEL_LABELS[rel]


# --------------------------------------------------------------------------- evaluation

BASE = "base"  # the label of the base model itself (no adapter)


@dataclass(frozen=True)
class Evaluation:
    """The paths and stage names of one model's evaluation. ``label`` is ``base``, ``m0`` or ``iter_K``:
    the base model and M0 are evaluated under ``eval/base/`` and ``eval/m0/``, model K under ``iter_K/eval/``."""

    label: str

    @property
    def dir(self) -> str:
        return f"eval/{self.label}" if self.label in (BASE, "m0") else f"{self.label}/eval"

    @property
    def adapter(self) -> Optional[str]:
        """The model's adapter in the run folder; None for the base model."""
        if self.label == BASE:
            return None
        return M0 if self.label == "m0" else iteration(iteration_of(self.label)).model

    @property
    def step(self) -> int:
        """The model's place on a plot across the run: -1 the base model, 0 M0, K model K."""
        return -1 if self.label == BASE else 0 if self.label == "m0" else iteration_of(self.label)

    @property
    def heldout_loss(self) -> str:
        return f"{self.dir}/heldout_loss.parquet"

    @property
    def answers(self) -> str:
        return f"{self.dir}/answers"  # a folder of shards

    @property
    def judgements(self) -> str:
        return f"{self.dir}/judgements"  # a folder of shards

    @property
    def lm_eval(self) -> str:
        return f"{self.dir}/lm_eval.json"

    @property
    def stats(self) -> str:
        return f"{self.dir}/stats.json"

    def stage(self, what: str) -> str:
        """The manifest name of one of this model's eval stages (``loss``, ``answers``, ``judge``, ``lm_eval``)."""
        if what not in EVAL_STAGES:
            raise ValueError(f"unknown eval stage {what!r}")
        return f"{self.dir}/{what}"

    def previous(self) -> Optional[str]:
        """The label of the model trained before this one: base <- m0 <- iter_1 <- iter_2 ..."""
        if self.label == BASE:
            return None
        if self.label == "m0":
            return BASE
        k = iteration_of(self.label)
        return "m0" if k == 1 else iteration(k - 1).dir


def evaluation(label: str) -> Evaluation:
    if label not in (BASE, "m0") and (iteration_of(label) is None or label != iteration(iteration_of(label)).dir):
        raise ValueError(f"unknown model {label!r}: expected base, m0 or iter_K")
    return Evaluation(label)


def eval_labels(iterations: int) -> list[str]:
    """Every evaluated model of a run, in training order: base, m0, iter_1 .. iter_N."""
    return [BASE, "m0"] + [iteration(k).dir for k in range(1, iterations + 1)]


def _eval_labels(rel: str) -> list[str]:
    """The label whose eval folder holds ``rel`` (a list of at most one)."""
    if rel.startswith("eval/"):
        label = rel.split("/")[1]
        return [label] if label in (BASE, "m0") else []
    k = iteration_of(rel)
    return [iteration(k).dir] if k is not None and rel.startswith(f"{iteration(k).dir}/eval/") else []
