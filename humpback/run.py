"""The run context a stage receives: the config, the run folder, the tracker, the models and data
sources resolved once when the run opens, and the chores every stage shares (is it forced, the
generation part of its key, a model of the run opened on first use, a metric logged, its bar, its
result line, a warning)."""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Callable, Iterable, Optional

from . import console, layout, progress
from .config import CorpusConfig, GenerationConfig, RunConfig, SeedConfig, dump_yaml, to_dict
from .errors import ConfigError
from .progress import progress_bars
from .store import RunStore, model_identity
from .store.lock import RunLock
from .tracking import Tracker


@dataclass(frozen=True)
class Sources:
    """The recipe's models and data with ``builtin:`` references resolved to local paths."""

    base_model: str
    seed: SeedConfig
    corpus: Optional[CorpusConfig]  # None: augment.source self_instruct reads no corpus
    judge: Optional[str]  # curate.judge: an outside judge, or None for the run's own models
    dev_set: Optional[str] = None  # curate.dev_set: the labelled pairs every iteration's judge scores
    eval_judge: Optional[str] = None  # eval.judge when it names a model ("base": None)
    eval_prompts: Optional[str] = None  # eval.prompts (None: the held-out seed instructions)

    @classmethod
    def resolve(cls, cfg: RunConfig) -> "Sources":
        from .builtin_names import resolve
        from .models import resolve_model

        with progress_bars(cfg.tracking.progress):  # building a builtin model writes shards
            return cls(
                base_model=resolve_model(cfg.base_model),
                seed=dataclasses.replace(cfg.seed, path=resolve(cfg.seed.path) if cfg.seed.path else None),
                corpus=None if cfg.corpus is None else
                dataclasses.replace(cfg.corpus, path=resolve(cfg.corpus.path) if cfg.corpus.path else None),
                judge=resolve_model(cfg.curate.judge) if cfg.curate.judge else None,
                dev_set=resolve(cfg.curate.dev_set) if cfg.curate.dev_set else None,
                eval_judge=resolve_model(cfg.eval.judge) if cfg.eval.judge != "base" else None,
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
    lock: Optional[RunLock] = None  # the run lock the main worker holds (humpback.store.lock)
    engine: Any = None  # workers.engine ray: the run's cluster (humpback.generation.remote.RayEngine), on first use

    def __post_init__(self) -> None:
        check_force(self.force, self.cfg.iterations)
        for warning in check_served_models(self.cfg):
            self.log(f"WARNING: {warning}")

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

    def result(self, line: str) -> None:
        """The stage's result line, e.g. ``augment: 96 segments -> 96 candidates; rejected ...``: shown
        under its bar, and again whenever a later run skips the stage as up to date."""
        self.store.result(line)

    def warn(self, message: str) -> None:
        """A warning a person must see (judge health, truncation, skipped inputs): always on the
        console, whatever its verbosity, and in the run's log."""
        console.warn(message)

    def bar(self, total: Optional[int], unit: str, desc: str, initial: int = 0):
        """A progress bar for the stage's work in its own unit (``rt.bar(n, "segments", "segments")``),
        a context manager; the sharded stages have theirs already. Off with ``tracking.progress=false``."""
        return progress.bar(total, unit, desc, initial=initial, show=self.progress)

    def metric(self, stage: str, name: str, value: Any, iteration: Optional[int] = None) -> None:
        """Append one figure to RUN_DIR/metrics.jsonl, the source of truth, and mirror it to the tracker.
        Each row carries this attempt's id, so a resumed run's figures are never taken for an earlier one's."""
        row = {"iteration": iteration, "stage": stage, "name": name, "value": value, "time": time.time(),
               "attempt": self.store.attempt}
        with open(self.store.path(layout.METRICS), "a") as f:
            f.write(json.dumps(row, default=float) + "\n")
        self.tracker.metric(stage, name, value, iteration)

    def remote(self):
        """workers.engine ray: the run's Ray cluster, joined or started on first use; else None."""
        if self.cfg.workers.engine != "ray":
            return None
        if self.engine is None:
            from .generation.remote import RayEngine

            self.engine = RayEngine(self.cfg.workers, self.log)
        return self.engine

    def close(self, failed: bool = False) -> None:
        """Finish the tracker, stop the Ray cluster the run started and release the run lock (idempotent)."""
        if self.engine is not None:
            self.engine.close()
            self.engine = None
        self.tracker.finish(failed=failed)
        if self.lock is not None:
            self.lock.release()
            self.lock = None

    def model_name(self, adapter_rel: Optional[str]) -> str:
        """Provenance name of a model of this run: the base model plus the adapter's run-folder path."""
        return self.cfg.base_model + (f"+{adapter_rel}" if adapter_rel else "")

    def model(self, adapter_rel: Optional[str] = None, outside: Optional[str] = None,
              generation: Optional[GenerationConfig] = None) -> "LazyModel":
        """The base model with an adapter of this run (None: the base model alone), or an ``outside``
        model altogether, opened on first use; ``generation`` replaces the recipe's backend settings
        (an evaluation judge behind its own endpoint)."""
        adapter = self.store.path(adapter_rel) if adapter_rel is not None and outside is None else None
        label = "judge" if outside else layout.model_label(adapter_rel) if adapter_rel else "base"
        return LazyModel(self, outside or self.base_model, adapter, None if outside else self.cfg.base_model_revision,
                         generation, label, self.store.output_hash(adapter_rel) if adapter is not None else None)

    def served_name(self, label: str, adapter: Optional[Path], adapter_hash: Optional[str],
                    g: Optional[GenerationConfig] = None) -> Optional[str]:
        """openai backend: the model name requests for this model of the run go to (None: the default
        rule of the backend, the adapter's path or the model id); ``g``: the backend settings in use."""
        g = g or self.cfg.generation
        if label in g.served_models:
            return g.served_models[label]
        if g.load_adapters and adapter is not None:
            return f"{self.cfg.name}-{label}-{adapter_hash[:12]}"
        return g.served_model_name

    def rows(self, rel: str) -> "LazyRows":
        return LazyRows(self.store, rel)

    def train_job(self, **reporting: Any):
        """A training of the base model with the recipe's settings (``reporting``: the tracker's)."""
        from .training import TrainJob

        return TrainJob(self.base_model, self.cfg.train, seed=self.cfg.random_seed,
                        revision=self.cfg.base_model_revision, progress=self.progress, **reporting)


# The keys that make a run folder another recipe's run: another base model, seed set or corpus.
IDENTITY_KEYS = ("base_model", "base_model_revision", "seed", "corpus")


def recipe_differences(old: dict, new: dict) -> list[str]:
    """``key: old -> new`` for every identity key (or key of an identity section) that differs. A key the
    old config does not have (added by a later humpback) is not a difference."""
    out = []
    for key in IDENTITY_KEYS:
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            out += [f"{key}.{k}: {a[k]!r} -> {b.get(k)!r}" for k in sorted(a) if a[k] != b.get(k)]
        elif key in old and a != b:
            out.append(f"{key}: {a!r} -> {b!r}")
    return out


def guard_recipe(run_dir: Path, cfg: RunConfig, overwrite: bool, log: Callable[[str], None]) -> None:
    """Refuse a run folder that holds another recipe's run (another base model, seed or corpus);
    with ``overwrite``, delete that run's files first. Changed downstream keys are fine: the stages
    that depend on them re-run."""
    import shutil

    import yaml

    config = Path(run_dir) / layout.CONFIG
    if not (Path(run_dir) / layout.MANIFEST).exists() or not config.exists():
        return
    try:
        old = yaml.safe_load(config.read_text()) or {}
    except yaml.YAMLError:
        old = {}
    diffs = recipe_differences(old, to_dict(cfg))
    if not diffs:
        return
    if not overwrite:
        raise ConfigError(f"{run_dir} holds the run of another recipe ({'; '.join(diffs)}); use another --run-dir, "
                          f"or give --overwrite to delete that run and start afresh")
    log(f"[run] --overwrite: deleting the run of another recipe in {run_dir} ({'; '.join(diffs)})")
    for p in Path(run_dir).iterdir():
        if p.name != layout.RUN_LOCK:
            shutil.rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink()


def config_text(cfg: RunConfig, sources: Sources) -> str:
    """``RUN_DIR/config.yaml``: the resolved recipe, headed by where its ``builtin:`` assets were built
    (and its GGUF models converted)."""
    from .cache import cache_root
    from .models import is_gguf

    built = [(ref, path) for ref, path in ((cfg.base_model, sources.base_model), (cfg.seed.path, sources.seed.path),
                                           (cfg.corpus and cfg.corpus.path, sources.corpus and sources.corpus.path),
                                           (cfg.curate.judge, sources.judge), (cfg.curate.dev_set, sources.dev_set))
             if ref and (ref.startswith("builtin:") or is_gguf(ref))]
    head = "".join(f"# {ref} was built in {path}\n" for ref, path in built)
    if built:
        head += (f"# (builtin: assets and converted GGUF models are cached under {cache_root()}; "
                 "HUMPBACK_CACHE moves them)\n")
    return head + dump_yaml(cfg)


def served_labels(cfg: RunConfig) -> list[str]:
    """The models of a run that go through the generation backend, by label: the backward model
    (augmentation; the base model writes Self-Instruct's tasks) and each iteration's judge (M0 .. M_{N-1},
    or the outside judge)."""
    judges = ["judge"] if cfg.curate.judge else [layout.model_label(layout.iteration(k).judge)
                                                 for k in range(1, cfg.iterations + 1)]
    return ["base" if cfg.augment.source == "self_instruct" else "backward", *judges]


def check_served_models(cfg: RunConfig) -> list[str]:
    """openai backend: refuse a configuration that sends several models of the run to one served name
    (backtranslation needs each stage's own adapter), or return the loud warning when
    ``generation.share_served_model`` allows it."""
    g = cfg.generation
    if g.backend != "openai":
        return []
    by_name: dict[str, list[str]] = {}
    for label in served_labels(cfg):
        name = g.served_models.get(label) or (None if g.load_adapters and label not in ("judge", "base")
                                             else g.served_model_name)
        if name is not None:
            by_name.setdefault(name, []).append(label)
    shared = {n: labels for n, labels in by_name.items() if len(labels) > 1}
    if not shared:
        return []
    what = "; ".join(f"{n!r} would serve {', '.join(labels)}" for n, labels in shared.items())
    if not g.share_served_model:
        raise ConfigError(f"generation: one served model would stand in for several models of the run ({what}); "
                          f"give each its own name in generation.served_models (or generation.load_adapters), or "
                          f"set generation.share_served_model: true to run that way anyway")
    return [f"one served model stands in for several models of the run ({what}): the stages do not use their "
            f"own adapters, so this is not backtranslation as the paper runs it"]


def check_force(force: Iterable[str], iterations: int) -> None:
    """Every ``--force`` value names a stage kind or one iteration's stage."""
    kinds = (tuple(dict.fromkeys(layout.RUN_STAGES + layout.SELF_INSTRUCT_STAGES)) + layout.ITERATION_STAGES
             + layout.PREFERENCE_STAGES + layout.EVAL_STAGES + ("eval",))
    named = {layout.iteration(k).stage(s) for k in range(1, iterations + 1)
             for s in layout.ITERATION_STAGES + layout.PREFERENCE_STAGES}
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


def is_full_model(folder: Path) -> bool:
    """A trained model folder that holds the whole model (``train.full_finetune``), not a LoRA adapter."""
    folder = Path(folder)
    return (folder / "config.json").is_file() and not (folder / "adapter_config.json").is_file()


class LazyModel:
    """A model opened on first use: a worker with no shard left never loads it. Its chat tokenizer
    (the adapter's own, which carries the template used in training, wins) is loaded once and
    shared with the generator."""

    def __init__(self, rt: RunContext, model: str, adapter: Optional[Path], revision: Optional[str],
                 generation: Optional[GenerationConfig] = None, label: str = "base",
                 adapter_hash: Optional[str] = None):
        self.rt, self.model, self.adapter, self.revision = rt, model, adapter, revision
        self.generation = generation or rt.cfg.generation
        self.label, self.adapter_hash = label, adapter_hash
        self._generator = None

    @cached_property
    def tokenizer(self):
        from .chat import load_chat_tokenizer

        return load_chat_tokenizer(self.model, self.revision, self.adapter)

    def weights(self) -> tuple[str, Optional[Path], Optional[str]]:
        """(model, adapter, revision) to load: a folder that ``train.full_finetune`` saved is the whole
        model, not an adapter on the base."""
        if self.adapter is not None and is_full_model(self.adapter):
            return str(self.adapter), None, None
        return self.model, self.adapter, self.revision

    @property
    def generator(self):
        if self._generator is None:
            from .generation import load_generator

            rt = self.rt
            model, adapter, revision = self.weights()
            engine = rt.remote() if self.generation.backend != "openai" else None
            if engine is not None:  # the model runs in each Ray worker; the calls travel (docs/ray.md)
                from .generation.remote import ModelSpec

                self._generator = engine.generator(ModelSpec(
                    self.generation, model, str(adapter) if adapter is not None else None, revision,
                    rt.cfg.random_seed, self.tokenizer))
                return self._generator
            with progress_bars(rt.progress):  # quiet: no "Loading weights" bars either
                self._generator = load_generator(
                    self.generation, model, adapter=str(adapter) if adapter is not None else None,
                    revision=revision, progress=rt.progress, seed=rt.cfg.random_seed, tokenizer=self.tokenizer,
                    served_name=rt.served_name(self.label, self.adapter, self.adapter_hash, self.generation))
        return self._generator

    @property
    def served(self) -> str:
        """What really served this model's requests: the backend's own name for it."""
        return self.generator.name

    def usage(self):
        """What the model has processed so far (prompts, tokens: :class:`~humpback.generation.base.Usage`);
        nothing when it was never opened."""
        from .generation.base import Usage

        return self._generator.usage if self._generator is not None else Usage()

    def close(self) -> None:
        if self._generator is not None:
            self._generator.close()
            self._generator = None
