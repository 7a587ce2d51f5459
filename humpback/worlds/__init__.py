"""A controlled world where the right answer is known: task families with checkable answers, a seed set,
an unlabelled pool of which a set fraction is wrong, held-out eval prompts with exact answers, a labelled
dev set, a verifier, and a small base model pretrained on the world's text. Nothing is downloaded.

``builtin:<name>`` in a recipe resolves here (through :func:`humpback.builtins.resolve`):

- ``world-base``: the base model folder (a small Llama + its tokenizer, pretrained on the world's text);
- ``world-seed``: seed pairs, alpaca form (``instruction``, ``output``);
- ``world-pool``: the unlabelled "web", one answer per document (``id``, ``text``);
- ``world-eval``: held-out prompts with exact answers (``instruction``, ``reference``);
- ``world-dev``: labelled pairs for ``curate.dev_set`` (``instruction``, ``output``, ``label``).

``world-<name>@S`` is the same asset of the world built with ``random_seed`` S (its own pool, seed set,
eval prompts and dev set, and a base model pretrained from weights initialised with seed S on that world's
text); ``@0`` is the default world. ``scripts/proof.py --seeds N`` runs its arms on worlds ``@0 .. @N-1``.

The verifier is ``humpback.worlds.tasks:verify`` (``curate.verifier``). Builds are deterministic and cached
under ``$HUMPBACK_CACHE`` in folders whose names carry a hash of everything they depend on; another
:class:`~humpback.worlds.build.WorldSpec` (a test's smaller world) gets folders of its own through
:func:`materialize_world`.
"""

from __future__ import annotations

import hashlib
import inspect
import json
from dataclasses import dataclass
from pathlib import Path

from ..cache import build_dir, cache_root
from .build import WorldSpec

WORLD_VERSION = 2
BUILTINS = ("world-base", "world-seed", "world-pool", "world-eval", "world-dev")
VERIFIER = "humpback.worlds.tasks:verify"
_FILES = {"world-seed": "seed.jsonl", "world-pool": "pool.jsonl", "world-eval": "eval.jsonl", "world-dev": "dev.jsonl"}


@dataclass(frozen=True)
class WorldPaths:
    base: Path
    seed: Path
    pool: Path
    eval: Path
    dev: Path


def _key(kind: str, spec: WorldSpec) -> str:
    from . import build, model, tasks

    h = hashlib.blake2b(digest_size=6)
    what = spec.pretrain_key() if kind == "base" else spec.to_dict()
    h.update(json.dumps({"kind": kind, "version": WORLD_VERSION, "spec": what}, sort_keys=True).encode())
    # The code that builds it: a change to the tasks, the sampling or the model rebuilds.
    for module in (tasks, build) + ((model,) if kind == "base" else ()):
        h.update(inspect.getsource(module).encode())
    if kind == "base":
        import tokenizers
        import torch
        import transformers

        h.update(f"{torch.__version__}|{transformers.__version__}|{tokenizers.__version__}".encode())
    return h.hexdigest()


def materialize_world(spec: WorldSpec = WorldSpec(), cache_dir: str | Path | None = None,
                      with_model: bool = True) -> WorldPaths:
    """Build (once) the world of ``spec`` and return where its files are."""
    root = cache_root(cache_dir)
    root.mkdir(parents=True, exist_ok=True)
    data = root / f"world-data-v{WORLD_VERSION}-{_key('data', spec)}"
    if not (data / "dev.jsonl").is_file():
        build_dir(data, lambda tmp: _write_data(tmp, spec))
    base = root / f"world-base-v{WORLD_VERSION}-{_key('base', spec)}"
    if with_model and not (base / "config.json").is_file():
        from ..console import info

        info(f"[world] pretraining the world's base model (once: cached as {base})")
        build_dir(base, lambda tmp: _write_base(tmp, spec))
        done = json.loads((base / "pretraining.json").read_text())
        info(f"  world: {done['steps']} steps on {done['documents']} documents, loss {done['first_loss']:.3f} -> "
             f"{done['last_loss']:.3f}")
    return WorldPaths(base, data / "seed.jsonl", data / "pool.jsonl", data / "eval.jsonl", data / "dev.jsonl")


def parse(name: str) -> tuple[str, int]:
    """``world-base`` -> (``world-base``, 0); ``world-pool@3`` -> (``world-pool``, 3). A name that is not
    the world's, or a seed that is not a whole number >= 0, is a ConfigError."""
    from ..errors import ConfigError

    base, at, seed = name.partition("@")
    if base not in BUILTINS:
        raise ConfigError(f"unknown builtin {name!r}; the world's: {', '.join(BUILTINS)} (each may end in @SEED)")
    if not at:
        return base, 0
    if not seed.isdigit():
        raise ConfigError(f"builtin {name!r}: the world's seed after '@' must be a whole number >= 0, got {seed!r}")
    return base, int(seed)


def is_world(name: str) -> bool:
    return name.partition("@")[0] in BUILTINS


def materialize(name: str, cache_dir: str | Path | None = None) -> Path:
    """The path of the builtin ``name`` (``world-pool``, ``world-pool@3``, ...): the default world's, or
    the world of the seed after ``@``."""
    base, seed = parse(name)
    paths = materialize_world(WorldSpec(random_seed=seed), cache_dir=cache_dir, with_model=base == "world-base")
    return paths.base if base == "world-base" else getattr(paths, base.split("-", 1)[1])


def _write_data(folder: Path, spec: WorldSpec) -> None:
    from .build import build_world

    world = build_world(spec)
    _jsonl(folder / "seed.jsonl", [{"instruction": r["instruction"], "output": r["output"]} for r in world.seed])
    _jsonl(folder / "pool.jsonl", [{"id": r["id"], "text": r["text"]} for r in world.pool])
    _jsonl(folder / "eval.jsonl", [{"instruction": r["instruction"], "reference": r["reference"],
                                    "family": r["family"]} for r in world.eval])
    _jsonl(folder / "dev.jsonl", world.dev)
    (folder / "spec.json").write_text(json.dumps(spec.to_dict(), indent=1) + "\n")


def _write_base(folder: Path, spec: WorldSpec) -> None:
    from .build import build_world, vocabulary_texts
    from .model import PRETRAIN, build_base_model, build_tokenizer

    info = build_base_model(folder, build_tokenizer(vocabulary_texts()), build_world(spec).pretrain,
                            pretrain={**PRETRAIN, "seed": spec.random_seed})
    (folder / "pretraining.json").write_text(json.dumps({"spec": spec.to_dict(), **info}, indent=1) + "\n")


def _jsonl(path: Path, rows: list[dict]) -> None:
    with open(path, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")

