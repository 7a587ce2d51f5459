"""The config as plain data: the dump every run writes (config.yaml; stage keys hash it), with secrets
removed, and the documented leaf keys that docs/config.md and ``--help`` list."""

from __future__ import annotations

import dataclasses
import re
import typing
from typing import Any

import yaml

from .load import RunConfig

_SECRET = re.compile(r"(^|_)(token|api_?key|secret|password)$", re.IGNORECASE)


def to_dict(cfg: Any) -> dict:
    """The resolved config as plain data, with anything that looks like a secret removed."""
    out = {}
    for f in dataclasses.fields(cfg):
        if _SECRET.search(f.name):
            continue
        value = getattr(cfg, f.name)
        out[f.name] = to_dict(value) if dataclasses.is_dataclass(value) else value
    return out


def dump_yaml(cfg: RunConfig) -> str:
    return yaml.safe_dump(to_dict(cfg), sort_keys=False)


def describe_keys(cls: type = RunConfig, prefix: str = "") -> list[tuple[str, str, Any]]:
    """(dotted key, help, default) for every leaf key: docs/config.md and `--help` use it."""
    rows = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        section = next((a for a in (hints[f.name], *typing.get_args(hints[f.name])) if dataclasses.is_dataclass(a)),
                       None)
        if section is not None:
            rows += describe_keys(section, prefix + f.name + ".")
            continue
        default = f.default if f.default is not dataclasses.MISSING else (
            f.default_factory() if f.default_factory is not dataclasses.MISSING else "(required)")
        rows.append((prefix + f.name, f.metadata.get("help", ""), default))
    return rows
