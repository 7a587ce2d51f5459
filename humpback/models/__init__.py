"""Model references: what a recipe's ``base_model`` (and ``curate.judge``, ``eval.judge``) may name, and
the local folder or hub id that transformers then loads.

- a hub id (``HuggingFaceTB/SmolLM2-135M-Instruct``) or a local model folder: loaded as it is;
- a GGUF file (``path/to/model.Q4_K_M.gguf``, or ``owner/repo/file.gguf`` on the hub): converted once
  into an ordinary transformers folder in the cache (:mod:`humpback.models.gguf`);
- ``builtin:<name>``: a model the project builds (``tiny-llama``, ``world-base``) or one shipped as a GGUF
  file inside an installed Python package (:mod:`humpback.models.shipped`), converted the same way
  (:mod:`humpback.builtin_names` resolves every ``builtin:`` name).

Everything downstream (LoRA, training, the generation backends, ``transformers serve``, export) sees an
ordinary model folder.
"""

from __future__ import annotations

from pathlib import Path

from .shipped import SHIPPED  # noqa: F401 (the public name of the shipped models)


def is_gguf(ref: str) -> bool:
    return isinstance(ref, str) and ref.lower().endswith(".gguf")


def resolve_model(ref: str, cache_dir: str | Path | None = None) -> str:
    """The hub id or local folder transformers loads for the model reference ``ref`` (see the module doc)."""
    if ref.startswith("builtin:"):
        from ..builtin_names import resolve

        return resolve(ref)
    if is_gguf(ref):
        from .gguf import convert, locate

        return str(convert(locate(ref), cache_dir, label=ref))
    return ref
