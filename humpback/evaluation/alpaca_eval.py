"""AlpacaEval's ``model_outputs.json``: a JSON list of ``{"instruction", "output", "generator",
"dataset"}``, one per prompt, which ``alpaca_eval evaluate --model_outputs FILE`` reads unchanged.

``humpback eval RUN_DIR --export alpaca_eval DIR`` writes one per evaluated model
(``DIR/<model>/model_outputs.json``), and the prompt set's reference outputs, when it has them, as
``DIR/reference/model_outputs.json`` (pass it as ``--reference_outputs``). A file in this format is
also a valid ``eval.prompts`` file: its ``output`` becomes the reference output.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

from ..errors import DataError

FIELDS = ("instruction", "output", "generator", "dataset")


def model_outputs(answers: Sequence[dict], generator: str) -> list[dict]:
    """AlpacaEval records of one model's answer rows (``instruction``, ``output``, ``dataset``), in order."""
    return [{"instruction": a["instruction"], "output": a["output"], "generator": generator,
             "dataset": a.get("dataset") or "humpback"} for a in answers]


def reference_outputs(prompts: Sequence[dict]) -> list[dict]:
    """The prompt set's reference outputs as AlpacaEval records (empty when it has none)."""
    if not prompts or any(p.get("output") is None for p in prompts):
        return []
    return [{"instruction": p["instruction"], "output": p["output"], "generator": p.get("generator") or "reference",
             "dataset": p.get("dataset") or "humpback"} for p in prompts]


def write_model_outputs(path: Path, records: Sequence[dict]) -> Path:
    from ..store import write_text

    write_text(Path(path), json.dumps(list(records), ensure_ascii=False, indent=2) + "\n")
    return Path(path)


def read_model_outputs(path: Path) -> list[dict]:
    """Records of a ``model_outputs.json``, checked to carry the four fields as strings."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise DataError(f"{path}: not a readable AlpacaEval model_outputs.json: {e}") from None
    if not isinstance(data, list):
        raise DataError(f"{path}: an AlpacaEval model_outputs.json is a JSON list, got {type(data).__name__}")
    for i, r in enumerate(data, 1):
        missing = [f for f in FIELDS if not isinstance(r, dict) or not isinstance(r.get(f), str)]
        if missing:
            raise DataError(f"{path}:row {i}: missing or non-string field(s) {', '.join(missing)}")
    return data
