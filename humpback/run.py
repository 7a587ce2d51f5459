"""The run context a stage receives: the config, the run folder, the tracker, the models and data
sources resolved once when the run opens, and the chores every stage shares (is it forced, the
generation part of its key, a model of the run opened on first use, a metric logged)."""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Callable, Iterable, Optional

from . import layout
from .config import CorpusConfig, GenerationConfig, RunConfig, SeedConfig
from .errors import ConfigError
from .progress import progress_bars
from .store import RunStore, model_identity
from .tracking import Tracker


@dataclass(frozen=True)
class Sources:
    """The recipe's models and data with ``builtin:`` references resolved to local paths."""

    base_model: str
    seed: SeedConfig
    corpus: CorpusConfig
    judge: Optional[str]  # curate.judge: an outside judge, or None for the run's own models
    eval_judge: Optional[str] = None  # eval.judge when it names a model ("base": None)
    eval_prompts: Optional[str] = None  # eval.prompts (None: the held-out seed instructions)

    @classmethod
    def resolve(cls, cfg: RunConfig) -> "Sources":
        from .tiny import resolve

        with progress_bars(cfg.tracking.progress):  # building a builtin model writes shards
            return cls(
                base_model=resolve(cfg.base_model),
                seed=dataclasses.replace(cfg.seed, path=resolve(cfg.seed.path) if cfg.seed.path else None),
                corpus=dataclasses.replace(cfg.corpus, path=resolve(cfg.corpus.path) if cfg.corpus.path else None),
                judge=resolve(cfg.curate.judge) if cfg.curate.judge else None,
                eval_judge=resolve(cfg.eval.judge) if cfg.eval.judge != "base" else None,
                eval_prompts=resolve(cfg.eval.prompts) if cfg.eval.prompts else None,
            )


@dataclass
class RunContext:
    cfg: RunConfig  # the recipe as given (provenance names what the user wrote)
    store: RunStore
    sources: Sources
    force: frozenset[str] = frozenset()
    log: Callable[[str], None] = print
    tracker: Tracker = field(default_factory=Tracker)  # wandb/TensorBoard mirror (see humpback.tracking)

    def __post_init__(self) -> None:
        check_force(self.force, self.cfg.iterations)

    @property
    def base_model(self) -> str:
        return self.sources.base_model

    @property
    def progress(self) -> bool:
        return self.cfg.tracking.progress

    @cached_property
    def base_identity(self) -> dict:
        """What identifies the base model in stage keys: hub id + revision, or a local folder's content."""
        return model_identity(self.base_model, self.cfg.base_model_revision)

    def forced(self, stage: str) -> bool:
        """``--force X`` re-runs stage ``X`` (``iter_2/score``) or every stage of kind ``X`` (``score``);
        ``--force eval`` every evaluation stage."""
        return (stage in self.force or layout.stage_kind(stage) in self.force
                or ("eval" in self.force and layout.is_eval_stage(stage)))

    def generation_key(self) -> dict:
        """What a generating stage's output depends on besides its own settings and model."""
        g = self.cfg.generation
        return {"backend": g.backend, "max_prompt_tokens": g.max_prompt_tokens, "dtype": g.dtype,
                "random_seed": self.cfg.random_seed}

    def metric(self, stage: str, name: str, value: Any, iteration: Optional[int] = None) -> None:
        """Append one figure to RUN_DIR/metrics.jsonl, the source of truth, and mirror it to the tracker."""
        row = {"iteration": iteration, "stage": stage, "name": name, "value": value, "time": time.time()}
        with open(self.store.path(layout.METRICS), "a") as f:
            f.write(json.dumps(row, default=float) + "\n")
        self.tracker.metric(stage, name, value, iteration)

    def model_name(self, adapter_rel: Optional[str]) -> str:
        """Provenance name of a model of this run: the base model plus the adapter's run-folder path."""
        return self.cfg.base_model + (f"+{adapter_rel}" if adapter_rel else "")

    def model(self, adapter_rel: Optional[str] = None, outside: Optional[str] = None,
              generation: Optional[GenerationConfig] = None) -> "LazyModel":
        """The base model with an adapter of this run (None: the base model alone), or an ``outside``
        model altogether, opened on first use; ``generation`` replaces the recipe's backend settings
        (an evaluation judge behind its own endpoint)."""
        adapter = self.store.path(adapter_rel) if adapter_rel is not None and outside is None else None
        return LazyModel(self, outside or self.base_model, adapter, None if outside else self.cfg.base_model_revision,
                         generation)

    def rows(self, rel: str) -> "LazyRows":
        return LazyRows(self.store, rel)

    def train_job(self, **reporting: Any):
        """A training of the base model with the recipe's settings (``reporting``: the tracker's)."""
        from .training import TrainJob

        return TrainJob(self.base_model, self.cfg.train, seed=self.cfg.random_seed,
                        revision=self.cfg.base_model_revision, progress=self.progress, **reporting)


def check_force(force: Iterable[str], iterations: int) -> None:
    """Every ``--force`` value names a stage kind or one iteration's stage."""
    kinds = layout.RUN_STAGES + layout.ITERATION_STAGES + layout.EVAL_STAGES + ("eval",)
    named = {layout.iteration(k).stage(s) for k in range(1, iterations + 1) for s in layout.ITERATION_STAGES}
    named |= {layout.evaluation(m).stage(s) for m in layout.eval_labels(iterations) for s in layout.EVAL_STAGES}
    for value in force:
        if value not in kinds and value not in named:
            raise ConfigError(f"command line: --force {value!r} is not a stage of this run; stages: "
                              f"{', '.join(kinds)}, or one iteration's such as {layout.iteration(1).stage('score')}")


class LazyRows:
    """A run-folder table read on first use, once."""

    def __init__(self, store: RunStore, rel: str):
        self.store, self.rel, self._rows = store, rel, None

    @property
    def rows(self) -> list[dict]:
        if self._rows is None:
            self._rows = self.store.read_rows(self.rel)
        return self._rows


class LazyModel:
    """A model opened on first use: a worker with no shard left never loads it. Its chat tokenizer
    (the adapter's own, which carries the template used in training, wins) is loaded once and
    shared with the generator."""

    def __init__(self, rt: RunContext, model: str, adapter: Optional[Path], revision: Optional[str],
                 generation: Optional[GenerationConfig] = None):
        self.rt, self.model, self.adapter, self.revision = rt, model, adapter, revision
        self.generation = generation or rt.cfg.generation
        self._generator = None

    @cached_property
    def tokenizer(self):
        from .chat import load_chat_tokenizer

        return load_chat_tokenizer(self.model, self.revision, self.adapter)

    @property
    def generator(self):
        if self._generator is None:
            from .generation import load_generator

            rt = self.rt
            with progress_bars(rt.progress):  # quiet: no "Loading weights" bars either
                self._generator = load_generator(
                    self.generation, self.model, adapter=str(self.adapter) if self.adapter is not None else None,
                    revision=self.revision, progress=rt.progress, seed=rt.cfg.random_seed, tokenizer=self.tokenizer)
        return self._generator

    def close(self) -> None:
        if self._generator is not None:
            self._generator.close()
            self._generator = None
