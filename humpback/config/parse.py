"""A recipe parser that knows no humpback key, as TRL's parser and torchtune's config helpers do: a YAML
mapping whose keys are the fields of nested dataclasses, dotted ``key=value`` overrides from the command
line, strict keys and typed values. :class:`Source` remembers who set each key (the recipe file, the
command line, or the default), and every error names the key and who set it.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
import types
import typing
from dataclasses import field
from pathlib import Path
from typing import Any, Iterator, Literal, Sequence, Union

import yaml

from ..errors import ConfigError

COMMAND_LINE = "command line"
DEFAULT = "the default"
_EXPONENT = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")
_INDEX = re.compile(r"\[\d+\]")


def _f(default: Any = dataclasses.MISSING, help: str = "", **kw: Any) -> Any:
    """A dataclass field whose help text documents the recipe key."""
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: type(default)(default), metadata={"help": help}, **kw)
    return field(default=default, metadata={"help": help}, **kw)


def _section(cls: type, help: str) -> Any:
    """A config section that a recipe may leave out (it then takes its defaults)."""
    return field(default_factory=cls, metadata={"help": help})


class Source(str):
    """Who set each dotted key: the recipe file (the string itself), the command line, or nobody (the
    default). Every ``validate(where)`` gets one, so that an error blames who set the values it names."""

    def __new__(cls, file: str, data: dict | None = None) -> "Source":
        obj = super().__new__(cls, file)
        obj.set_by = {key: (file, is_section) for key, is_section in _paths(data or {})}
        return obj

    @property
    def file(self) -> str:
        return str.__str__(self)

    def override(self, key: str, value: Any) -> None:
        """The command line set ``key`` to ``value``, replacing what was there (a section: all of it)."""
        self.set_by = {k: v for k, v in self.set_by.items() if k != key and not k.startswith(key + ".")}
        parts = key.split(".")
        for i in range(1, len(parts)):  # sections the override created
            self.set_by.setdefault(".".join(parts[:i]), (COMMAND_LINE, True))
        self.set_by.update({k: (COMMAND_LINE, is_section) for k, is_section in _paths({key: value})})

    def who(self, key: str) -> str:
        """``command line``, the recipe file, or ``the default`` for a dotted key (``tags[1]``: the list's)."""
        parts = _INDEX.sub("", key).split(".")
        for i in range(len(parts), 0, -1):
            found = self.set_by.get(".".join(parts[:i]))
            if found is not None:
                who, is_section = found
                return who if i == len(parts) or not is_section else DEFAULT
        return DEFAULT

    def blame(self, keys: str | Sequence[str], message: str) -> str:
        """``message`` after who set ``keys``: ``r.yaml: ...`` when one source set them all, else each key
        with its own source (``a set in r.yaml, b set on the command line, c left at the default: ...``)."""
        groups: dict[str, list[str]] = {}
        for key in [keys] if isinstance(keys, str) else keys:
            groups.setdefault(self.who(key), []).append(key)
        if len(groups) == 1:
            return f"{next(iter(groups))}: {message}"
        said = []
        for who, named in groups.items():
            names = " and ".join(named)
            if who == COMMAND_LINE:
                said.append(f"{names} set on the command line")
            elif who == DEFAULT:
                said.append(f"{names} left at {'the default' if len(named) == 1 else 'their defaults'}")
            else:
                said.append(f"{names} set in {who}")
        return f"{', '.join(said)}: {message}"

    def error(self, keys: str | Sequence[str], message: str) -> ConfigError:
        """The error for ``message`` about ``keys`` (one, or several that conflict), blamed on who set them."""
        return ConfigError(self.blame(keys, message))

    def invalid(self, key: str, problem: str) -> ConfigError:
        """The error for a bad value of one key: ``r.yaml: 'key' must be > 0, got 0`` (``problem`` after it)."""
        return self.error(key, f"'{key}'{'' if problem.startswith(':') else ' '}{problem}")


def _paths(data: dict, prefix: str = "") -> Iterator[tuple[str, bool]]:
    """(dotted key, whether it holds a mapping) for every key of ``data``, sections and leaves."""
    for k, v in data.items():
        yield prefix + str(k), isinstance(v, dict)
        if isinstance(v, dict):
            yield from _paths(v, f"{prefix}{k}.")


def positive(where: Source, key: str, value: Any, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if value is None or value <= 0:
        raise where.invalid(key, f"must be > 0, got {value!r}")


def fraction(where: Source, key: str, value: float) -> None:
    if not 0 <= value <= 1:
        raise where.invalid(key, f"must be between 0 and 1, got {value!r}")


# --------------------------------------------------------------------------- reading


def parse_recipe(path: str | Path | None, overrides: Sequence[str] = (),
                 data: dict | None = None) -> tuple[dict, Source]:
    """The recipe's mapping (read from ``path``, or ``data``) with the ``key=value`` overrides applied,
    and the :class:`Source` that knows who set each key."""
    where = str(path) if path is not None else "config"
    if data is None:
        if path is None:
            raise ConfigError("no recipe given")
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"{where}: no such recipe file")
        try:
            data = yaml.safe_load(p.read_text()) or {}
        except yaml.YAMLError as e:
            raise ConfigError(f"{where}: not valid YAML: {e}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: a recipe must be a mapping of keys, got {type(data).__name__}")
    data = _deep_copy(data)
    src = Source(where, data)
    for item in overrides:
        src.override(*_apply_override(data, item))
    return data, src


def _deep_copy(d: Any) -> Any:
    if isinstance(d, dict):
        return {k: _deep_copy(v) for k, v in d.items()}
    if isinstance(d, list):
        return [_deep_copy(v) for v in d]
    return d


def _apply_override(data: dict, item: str) -> tuple[str, Any]:
    if "=" not in item:
        raise ConfigError(f"{COMMAND_LINE}: override {item!r} is not of the form key=value")
    key, raw = item.split("=", 1)
    key = key.strip()
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError:
        value = raw
    parts = key.split(".")
    node = data
    for i, part in enumerate(parts[:-1]):
        nxt = node.get(part)
        if nxt is None:
            nxt = node[part] = {}
        if not isinstance(nxt, dict):
            raise ConfigError(f"{COMMAND_LINE}: '{'.'.join(parts[: i + 1])}' is not a section, cannot set {key!r}")
        node = nxt
    node[parts[-1]] = value
    return key, value


# --------------------------------------------------------------------------- building


def build(cls: type, data: Any, src: Source, prefix: str = "") -> Any:
    """``cls`` (a dataclass of dataclasses) from ``data``: unknown keys, missing required keys and values
    of the wrong type are errors that name the key and who set it."""
    if not isinstance(data, dict):
        key = prefix.rstrip(".") or "recipe"
        raise src.invalid(key, f"must be a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        key = prefix + str(unknown[0])
        close = difflib.get_close_matches(str(unknown[0]), list(fields), n=3)
        hint = f" (did you mean {', '.join(repr(prefix + c) for c in close)}?)" if close else ""
        raise src.error(key, f"unknown key '{key}'{hint}")
    kwargs = {}
    for name, f in fields.items():
        key = prefix + name
        if name in data:
            kwargs[name] = _coerce(hints[name], data[name], key, src)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            what = "section" if dataclasses.is_dataclass(hints[name]) else "key"
            raise ConfigError(f"{src.file}: missing required {what} '{key}'")
    return cls(**kwargs)


def _coerce(tp: Any, value: Any, key: str, src: Source) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if dataclasses.is_dataclass(tp):
        return build(tp, value if value is not None else {}, src, key + ".")
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        errors = []
        for a in inner:
            try:
                return _coerce(a, value, key, src)
            except ConfigError as e:
                errors.append(e)
        raise errors[0]
    if origin is Literal:
        if value not in args:
            choices = ", ".join(repr(a) for a in args)
            raise src.invalid(key, f"must be one of {choices}, got {value!r}")
        return value
    if origin is dict:
        if not isinstance(value, dict):
            raise src.invalid(key, f"must be a mapping, got {value!r}")
        return {str(k): _coerce(args[1], v, f"{key}.{k}", src) for k, v in value.items()}
    if origin is list:
        if not isinstance(value, list):
            raise src.invalid(key, f"must be a list, got {value!r}")
        return [_coerce(args[0], v, f"{key}[{i}]", src) for i, v in enumerate(value)]
    if tp is bool:
        if not isinstance(value, bool):
            raise src.invalid(key, f"must be true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise src.invalid(key, f"must be an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, str) and _EXPONENT.fullmatch(value.strip()):
            return float(value)  # YAML 1.1 reads 2e-4 (no dot in the mantissa) as a string
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise src.invalid(key, f"must be a number, got {value!r}")
        return float(value)
    if tp is str:
        if isinstance(value, (dict, list)) or value is None:
            raise src.invalid(key, f"must be a string, got {value!r}")
        return str(value)
    raise src.invalid(key, f"has an unsupported type {tp!r}")  # pragma: no cover
