"""The held-out split of the seed, and the eval prompt set every model answers.

**Held-out pairs.** ``seed.heldout`` (a fraction below 1, or a whole count) of the seed's distinct
instructions are kept out of every training mixture: all pairs that share a held-out instruction
go together, so no model sees an eval instruction in training. Which ones is decided by a hash of
the instruction alone (not the run's random seed, not the file order), so runs over the same seed
file hold out the same pairs and their figures compare.

**Eval prompts.** By default the held-out instructions, with the held-out seed answers as
reference outputs. ``eval.prompts`` names a local JSON/JSONL/Parquet file or folder, or a
``datasets`` id, whose records carry ``instruction`` (required; a non-empty ``input`` is appended
after a blank line, as for alpaca seeds), and optionally ``output`` (a reference answer for
pairwise judging, as in AlpacaEval's set), ``generator`` (who wrote it), ``dataset`` (a subset name)
and ``reference`` (an exact answer: the eval then reports exact match).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Iterable, Optional

from ..errors import ConfigError, DataError

HELDOUT_SALT = b"humpback-heldout"
HELDOUT_DATASET = "heldout"
PROMPT_FIELDS = ("prompt_id", "instruction", "output", "generator", "dataset", "reference")


def heldout_count(spec: float, n_instructions: int, where: str = "recipe") -> int:
    """How many distinct instructions ``seed.heldout`` holds out of ``n_instructions``: a fraction in
    (0, 1) is rounded (at least 1), a value >= 1 is a count. At least one must be left to train on."""
    if spec <= 0:
        return 0
    if spec < 1:
        n = max(1, round(spec * n_instructions))
    else:
        n = int(spec)
    if n >= n_instructions:
        raise ConfigError(f"{where}: 'seed.heldout' ({spec:g}) holds out {n} instructions, but the seed has only "
                          f"{n_instructions} distinct instructions: nothing would be left to train on")
    return n


def _rank(instruction: str) -> bytes:
    return hashlib.blake2b(instruction.encode("utf-8"), key=HELDOUT_SALT, digest_size=16).digest()


def split_heldout(pairs: list[dict], spec: float, where: str = "recipe") -> tuple[list[dict], list[dict]]:
    """(training pairs, held-out pairs), each in the seed's order."""
    instructions = list(dict.fromkeys(p["instruction"] for p in pairs))
    n = heldout_count(spec, len(instructions), where)
    held = set(sorted(instructions, key=_rank)[:n])
    return [p for p in pairs if p["instruction"] not in held], [p for p in pairs if p["instruction"] in held]


def heldout_prompts(heldout: list[dict]) -> list[dict]:
    """The default eval prompts: one per held-out instruction (its first pair), the seed answer as the
    reference output."""
    seen: set[str] = set()
    rows = []
    for p in heldout:
        if p["instruction"] in seen:
            continue
        seen.add(p["instruction"])
        rows.append({"prompt_id": p["id"], "instruction": p["instruction"], "output": p["output"], "generator": "seed",
                     "dataset": HELDOUT_DATASET, "reference": None})
    return rows


def prompt_rows(records: Iterable[tuple[str, dict]], default_dataset: str, where: str) -> list[dict]:
    """Eval prompt rows from ``(location, record)`` pairs; a record without a usable ``instruction`` is
    an error naming its location and the key that pointed at the file."""
    rows = []
    for i, (location, r) in enumerate(records):
        instruction = r.get("instruction")
        if not isinstance(instruction, str) or not instruction.strip():
            what = ("has no 'instruction' field" if "instruction" not in r
                    else "has an empty or non-string 'instruction'")
            raise DataError(f"{location}: eval prompt {what} ({where}); every eval prompt needs one, "
                            f"fields seen: {sorted(r)}")
        extra = r.get("input")
        if isinstance(extra, str) and extra.strip():
            instruction = f"{instruction.strip()}\n\n{extra.strip()}"
        rows.append({"prompt_id": f"{i:06d}", "instruction": instruction.strip(),
                     "output": _text(r, "output", location),
                     "generator": _text(r, "generator", location),
                     "dataset": _text(r, "dataset", location) or default_dataset,
                     "reference": _text(r, "reference", location)})
    if not rows:
        raise DataError(f"{where}: no eval prompt found")
    return rows


def _text(record: dict, key: str, location: str) -> Optional[str]:
    value = record.get(key)
    if value is None:
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool) and key == "reference":
        return str(value)  # a numeric exact answer ("42") is compared as text
    if not isinstance(value, str):
        raise DataError(f"{location}: eval prompt field '{key}' must be a string, got {type(value).__name__}")
    return value


def load_prompts(source: str, config: Optional[str] = None, split: str = "train") -> list[dict]:
    """The eval prompts of ``eval.prompts``: a local file or folder of records, else a ``datasets`` id."""
    from ..data.records import iter_hub_records, iter_records

    local = Path(source).expanduser()
    if local.exists():
        records: Any = iter_records(local)
        name = local.stem
    else:
        records = iter_hub_records(source, config, split, streaming=False)
        name = source
    return prompt_rows(records, name, f"eval.prompts {source!r}")


def prompts_schema():
    import pyarrow as pa

    return pa.schema([(name, pa.string()) for name in PROMPT_FIELDS])
