"""Checks that several sections share: a generation step's constraint, validator and retries, and
whether a reference names a local file or a hub id."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from ..errors import ConfigError
from .parse import Source, positive


def looks_local(ref: str) -> bool:
    """A hub id is ``name`` or ``owner/name``; a path with a suffix, a leading ./ / ~ or more slashes is a file."""
    return ref.startswith((".", "/", "~")) or ref.count("/") > 1 or Path(ref).suffix.lower() in (
        ".json", ".jsonl", ".parquet", ".gz")


def check_rejection(where: Source, section: str, constraint: Optional[str], validator: Optional[str],
                    max_tries: int, max_new_tokens: int, temperature_key: str, temperature: float,
                    prefix: str = "") -> None:
    """A generation step's constraint, validator and max_tries (see humpback.generation.rejection), the keys
    ``{section}.{prefix}constraint``, ``...validator`` and ``...max_tries``; ``temperature_key`` names the
    step's sampling temperature (retries of greedy decoding would repeat the same answer)."""
    keys = {k: f"{section}.{prefix}{k}" for k in ("constraint", "validator", "max_tries")}
    if constraint is not None:
        from ..generation.constraints import parse_constraint

        try:
            parse_constraint(constraint, max_new_tokens)
        except ConfigError as e:
            raise where.invalid(keys["constraint"], f": {e}") from None
    if validator is not None:
        from ..judges.verifier import check_path

        try:
            check_path(validator, keys["validator"])
        except ConfigError as e:
            raise where.error(keys["validator"], str(e)) from None
    positive(where, keys["max_tries"], max_tries)
    if max_tries > 1 and temperature == 0:
        raise where.error((keys["max_tries"], f"{section}.{temperature_key}"),
                          f"'{keys['max_tries']}' is {max_tries}, but greedy decoding ({section}.{temperature_key} 0) "
                          f"gives the same answer every time; set {section}.{temperature_key} > 0 or max_tries 1")
    if max_tries > 1 and constraint is None and validator is None:
        raise where.error((keys["max_tries"], keys["constraint"], keys["validator"]),
                          f"'{keys['max_tries']}' is {max_tries}, but there is nothing to retry against "
                          f"({keys['constraint']} and {keys['validator']} are unset)")
