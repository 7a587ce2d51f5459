"""The curation dev set: labelled (instruction, output, label) pairs that every iteration's judge scores,
so that the selection's precision and recall can be stated (the paper's Table: M0 P 0.44 R 0.09).

A label is ``good``/``bad`` (also ``true``/``false``, booleans), or a gold score 1..5 that counts as a
positive when it is at least ``curate.dev_positive_score``. A row without a usable label, instruction
or output is an error naming its file and line.
"""

from __future__ import annotations

from ..errors import DataError
from ..judges.health import is_positive
from .records import iter_records


def load_dev_set(path: str, positive_score: int = 5) -> list[dict]:
    """Rows ``{candidate_id, instruction, output, label, positive}`` in file order; ``candidate_id`` is
    the record's ``id`` when it has one, else ``dev-<n>``."""
    rows = []
    for n, (location, record) in enumerate(iter_records(path)):
        for key in ("instruction", "output"):
            if not isinstance(record.get(key), str) or not record[key].strip():
                raise DataError(f"{location}: curate.dev_set rows need a non-empty string {key!r}")
        if "label" not in record:
            raise DataError(f"{location}: curate.dev_set rows need a 'label' (good/bad or a gold score 1-5)")
        positive = is_positive(record["label"], positive_score)
        if positive is None:
            raise DataError(f"{location}: label {record['label']!r} is neither good/bad nor a gold score 1-5")
        rows.append({"candidate_id": str(record.get("id", f"dev-{n:05d}")), "instruction": record["instruction"],
                     "output": record["output"], "label": str(record["label"]), "positive": positive})
    if not rows:
        raise DataError(f"{path}: curate.dev_set holds no rows")
    ids = [r["candidate_id"] for r in rows]
    if len(set(ids)) != len(ids):
        raise DataError(f"{path}: curate.dev_set has duplicate ids")
    return rows
