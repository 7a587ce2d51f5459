"""A controlled world where the right answer is known: task families with checkable answers, a seed set,
an unlabelled pool of which a set fraction is wrong, held-out eval prompts with exact answers, a labelled
dev set, a verifier, and a small base model pretrained on the world's text. Nothing is downloaded.

``builtin:<name>`` in a recipe resolves here (through :func:`humpback.builtin_names.resolve`):

- ``world-base``: the base model folder (a small Llama + its tokenizer, pretrained on the world's text);
- ``world-seed``: seed pairs, alpaca form (``instruction``, ``output``);
- ``world-pool``: the unlabelled "web", one answer per document (``id``, ``text``);
- ``world-eval``: held-out prompts with exact answers (``instruction``, ``reference``);
- ``world-dev``: labelled pairs for ``curate.dev_set`` (``instruction``, ``output``, ``label``).

``world-<name>@S`` is the same asset of the world built with ``random_seed`` S (its own pool, seed set,
eval prompts and dev set, and a base model pretrained from weights initialised with seed S on that world's
text); ``@0`` is the default world. ``scripts/proof.py --seeds N`` runs its arms on worlds ``@0 .. @N-1``.

The verifier is ``humpback.worlds.tasks:verify`` (``curate.verifier``). Builds are deterministic and cached
under ``$HUMPBACK_CACHE`` in folders whose names carry a hash of what they are made of (the data: its rows;
the base model: its pretraining text, tokenizer texts, training code and library versions); another
:class:`~humpback.worlds.build.WorldSpec` (a test's smaller world) gets folders of its own through
:func:`materialize_world`.
"""

from __future__ import annotations

import ast
import functools
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


def _code(module) -> str:
    """A module's code as its syntax tree without docstrings: a change to what it does changes this,
    a comment, a docstring or a reformatting does not."""
    tree = ast.parse(inspect.getsource(module))
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if (isinstance(body, list) and body and isinstance(body[0], ast.Expr)
                and isinstance(body[0].value, ast.Constant) and isinstance(body[0].value.value, str)):
            node.body = body[1:] or [ast.Pass()]
    return ast.dump(tree)


def _key(kind: str, spec: WorldSpec, world=None) -> str:
    """The cache key of the world's ``data`` or ``base`` model: a hash of what it is made of. The data:
    the rows it holds. The base model: its pretraining documents and tokenizer texts, the code that
    trains it, and the library versions (the same inputs give other weights under other versions). Changing
    the pool, the seed set or the code that draws them leaves the base model's key as it is."""
    from .build import build_world, vocabulary_texts

    world = world or build_world(spec)
    h = hashlib.blake2b(digest_size=6)
    h.update(json.dumps({"kind": kind, "version": WORLD_VERSION}).encode())
    if kind == "data":
        h.update(json.dumps([world.seed, world.pool, world.eval, world.dev], sort_keys=True).encode())
        return h.hexdigest()
    import tokenizers
    import torch
    import transformers

    from . import model

    h.update(json.dumps({"documents": world.pretrain, "vocabulary": vocabulary_texts(),
                         "seed": spec.random_seed}).encode())
    h.update(_code(model).encode())
    h.update(f"{torch.__version__}|{transformers.__version__}|{tokenizers.__version__}".encode())
    return h.hexdigest()


@functools.lru_cache(maxsize=8)
def _drawn(spec: WorldSpec) -> tuple:
    """(the world of ``spec``, its data key, its base model key), once per process: drawing the world and
    hashing what it is made of takes about half a second, and a run resolves its world's assets several times."""
    from .build import build_world

    world = build_world(spec)
    return world, _key("data", spec, world), _key("base", spec, world)


def materialize_world(spec: WorldSpec = WorldSpec(), cache_dir: str | Path | None = None,
                      with_model: bool = True) -> WorldPaths:
    """Build (once) the world of ``spec`` and return where its files are."""
    root = cache_root(cache_dir)
    root.mkdir(parents=True, exist_ok=True)
    world, data_key, base_key = _drawn(spec)
    data = root / f"world-data-v{WORLD_VERSION}-{data_key}"
    if not (data / "dev.jsonl").is_file():
        build_dir(data, lambda tmp: _write_data(tmp, spec, world))
    base = root / f"world-base-v{WORLD_VERSION}-{base_key}"
    if with_model and not (base / "config.json").is_file():
        from ..console import info

        info(f"[world] pretraining the world's base model (once: cached as {base})")
        build_dir(base, lambda tmp: _write_base(tmp, spec, world))
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


def _write_data(folder: Path, spec: WorldSpec, world) -> None:
    _jsonl(folder / "seed.jsonl", [{"instruction": r["instruction"], "output": r["output"]} for r in world.seed])
    _jsonl(folder / "pool.jsonl", [{"id": r["id"], "text": r["text"]} for r in world.pool])
    _jsonl(folder / "eval.jsonl", [{"instruction": r["instruction"], "reference": r["reference"],
                                    "family": r["family"]} for r in world.eval])
    _jsonl(folder / "dev.jsonl", world.dev)
    (folder / "spec.json").write_text(json.dumps(spec.to_dict(), indent=1) + "\n")


def _write_base(folder: Path, spec: WorldSpec, world) -> None:
    from .build import vocabulary_texts
    from .model import PRETRAIN, build_base_model, build_tokenizer

    info = build_base_model(folder, build_tokenizer(vocabulary_texts()), world.pretrain,
                            pretrain={**PRETRAIN, "seed": spec.random_seed})
    (folder / "pretraining.json").write_text(json.dumps({"spec": spec.to_dict(), **info}, indent=1) + "\n")


def _jsonl(path: Path, rows: list[dict]) -> None:
    with open(path, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")

