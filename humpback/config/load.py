"""The whole recipe: :class:`RunConfig` (its sections and the checks across them) and
:func:`load_config`, which reads a recipe with the generic parser, builds and validates it."""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

from ..errors import ConfigError
from .augmentation import AugmentConfig
from .judging import CurateConfig, EvalConfig, PreferencesConfig, config_warnings
from .parse import DEFAULT, Source, _f, _section, build, parse_recipe, positive
from .sections import (CorpusConfig, DPOSettings, GenerationConfig, SeedConfig, TrackingConfig, TrainConfig,
                       WorkersConfig)

log = logging.getLogger("humpback.config")  # one logger for the package's warnings


@dataclass
class RunConfig:
    base_model: str = _f(help="Hub id or local path of the base model (`builtin:tiny-llama` builds a tiny one).")
    seed: SeedConfig = _f(help="Seed (instruction, output) pairs.")
    corpus: Optional[CorpusConfig] = _f(None, "Unlabelled text (backtranslation needs it; self_instruct has none).")
    name: str = _f("humpback", "Run name; the default run folder is runs/<name>.")
    base_model_revision: Optional[str] = _f(None, "Hub revision (branch, tag or commit) of the base model.")
    iterations: int = _f(2, "Curation/finetuning rounds after the seed models (paper: 2).")
    random_seed: int = _f(42, "Seed for sampling and training.")
    shard_size: int = _f(
        1000, "Generation and scoring write their results in shards of this many records (the unit of resume)."
    )
    generation: GenerationConfig = _section(GenerationConfig, "How text is generated and scored.")
    augment: AugmentConfig = _section(AugmentConfig, "Self-augmentation (backward model).")
    curate: CurateConfig = _section(CurateConfig, "Self-curation (judge).")
    train: TrainConfig = _section(TrainConfig, "Finetuning of the backward, seed and next models.")
    tracking: TrackingConfig = _section(TrackingConfig, "Metrics and logging.")
    eval: EvalConfig = _section(EvalConfig, "Evaluation of every model of the run.")
    preferences: PreferencesConfig = _section(PreferencesConfig, "train.objective dpo: the answers, the judge and "
                                                                 "the pairs DPO trains on.")
    dpo: DPOSettings = _section(DPOSettings, "train.objective dpo: the DPO training of each model K.")
    workers: WorkersConfig = _section(WorkersConfig, "Where the sharded generation and scoring stages run "
                                                     "(this process, or a Ray cluster).")

    def validate(self, where: Source) -> None:
        positive(where, "iterations", self.iterations)
        positive(where, "shard_size", self.shard_size)
        if self.augment.source == "backtranslation" and self.corpus is None:
            message = ("missing required section 'corpus' (augment.source backtranslation writes instructions for "
                       "corpus segments)")
            if where.who("augment.source") == DEFAULT:  # the recipe left it out, as a missing required key
                raise ConfigError(f"{where.file}: {message}")
            raise where.error(("augment.source", "corpus"), message)
        if self.augment.source == "self_instruct" and self.corpus is not None:
            raise where.error(("corpus", "augment.source"), "'corpus' is not used by augment.source self_instruct "
                                                            "(it writes its own tasks); remove the section")
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if dataclasses.is_dataclass(value) and hasattr(value, "validate"):
                value.validate(where)
        if (self.train.objective == "dpo" and self.preferences.judge_kind == "verifier"
                and self.curate.verifier is None):
            raise where.error(("preferences.judge_kind", "curate.verifier"),
                              "preferences.judge_kind 'verifier' needs 'curate.verifier' (package.module:function)")
        if self.train.objective == "dpo" and self.dpo.min_lr_ratio is not None \
                and self.train.lr_scheduler_type not in ("linear", "cosine"):  # DPO decays on the train schedule
            raise where.error(("dpo.min_lr_ratio", "train.lr_scheduler_type"),
                              f"'dpo.min_lr_ratio' needs train.lr_scheduler_type linear or cosine, got "
                              f"{self.train.lr_scheduler_type!r} (set dpo.min_lr_ratio=null to use it as it is)")
        if self.workers.engine == "ray" and self.generation.backend == "openai":
            raise where.error(("workers.engine", "generation.backend"),
                              "workers.engine 'ray' runs a model in each Ray worker; generation.backend 'openai' "
                              "sends requests to a server instead (scale the server, and generation.concurrency)")
        if self.eval.enabled and self.eval.prompts is None and self.seed.heldout == 0:
            raise where.error(("eval.enabled", "eval.prompts", "seed.heldout"),
                              "'eval.enabled' needs eval prompts: hold seed pairs out ('seed.heldout' > 0) or name "
                              "a prompt set ('eval.prompts')")


def load_config(path: str | Path | None = None, overrides: Sequence[str] = (), data: dict | None = None) -> RunConfig:
    """Read a recipe (or ``data``), apply ``key=value`` overrides, build and validate a RunConfig."""
    data, src = parse_recipe(path, overrides, data)
    cfg = build(RunConfig, data, src)
    cfg.validate(src)
    cfg._where = src  # who set each key, for errors raised later (see who_set)
    for warning in config_warnings(cfg, data, src):
        log.warning("%s", warning)
    return cfg


def who_set(cfg: RunConfig, key: str) -> str:
    """``command line``, the recipe file, or ``the default`` for a dotted key of a loaded config."""
    where = getattr(cfg, "_where", None)
    return "the config" if where is None else where.who(key)
