"""Review decisions: what reviewers said about generated pairs, in ``RUN_DIR/review/decisions.parquet``.

One row per (pair, reviewer): the pair id (the candidate's id), the verdict (``accept``, ``reject`` or
``edit``), the edited instruction (``edit`` only), the reviewer's name, the time (UTC), the iteration whose
sample the pair was read in, where the verdict came from (``page`` or ``argilla``) and the sha256 of the
pair as the reviewer read it (generated instruction and output). A decision about a pair that has been
generated again since (another text under the same id) is *stale*: counted, never applied to other text.

Every decision is written at once: under an exclusive ``flock`` on ``review/.decisions.lock`` the table is
read, the row replaced or added, and the whole table written to a temporary file that is renamed into
place. A killed server loses nothing it acknowledged, and two reviewers (two servers on one folder, or a
server and an Argilla pull) never lose each other's rows.

When several reviewers decided the same pair, the pair's decision is the latest one (at the same time, a
reject; see :func:`effective`);
:func:`disagreements` counts the pairs whose reviewers disagree about keeping it.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import hashlib
from pathlib import Path
from typing import Iterable, Iterator, Optional

from .. import layout
from ..errors import StoreError
from ..store import hash_file, write_table

VERDICTS = ("accept", "reject", "edit")
KEEPS = {"accept": True, "edit": True, "reject": False}  # edit: kept, with the reviewer's instruction
COLUMNS = ("candidate_id", "verdict", "instruction", "reviewer", "time", "iteration", "source", "pair_sha256")


def decisions_schema():
    import pyarrow as pa

    return pa.schema([("candidate_id", pa.string()), ("verdict", pa.string()), ("instruction", pa.string()),
                      ("reviewer", pa.string()), ("time", pa.timestamp("ms", tz="UTC")), ("iteration", pa.int64()),
                      ("source", pa.string()), ("pair_sha256", pa.string())])


def pair_sha256(instruction: str, output: str) -> str:
    """The hash of a pair's text as the reviewer read it (instruction, a NUL, output)."""
    return hashlib.sha256(instruction.encode() + b"\0" + output.encode()).hexdigest()


def decision(candidate_id: str, verdict: str, reviewer: str, iteration: int, pair_hash: str,
             instruction: Optional[str] = None, source: str = "page", time: Optional[dt.datetime] = None) -> dict:
    """A checked decision row. ``edit`` needs the new instruction; the other verdicts carry none."""
    if verdict not in VERDICTS:
        raise ValueError(f"verdict must be one of {', '.join(VERDICTS)}, got {verdict!r}")
    if not str(reviewer or "").strip():
        raise ValueError("a decision needs the reviewer's name")
    if verdict == "edit":
        if not isinstance(instruction, str) or not instruction.strip():
            raise ValueError("an edit needs the new instruction (non-empty)")
        instruction = instruction.strip()
    else:
        instruction = None
    return {"candidate_id": str(candidate_id), "verdict": verdict, "instruction": instruction,
            "reviewer": str(reviewer).strip(), "time": time or dt.datetime.now(dt.timezone.utc),
            "iteration": int(iteration), "source": source, "pair_sha256": pair_hash}


def read_decisions(run_dir: Path) -> list[dict]:
    """Every decision row of the run (none: an empty list). A file that is not a decisions table is a
    one-line error that says what to do."""
    path = Path(run_dir) / layout.REVIEW_DECISIONS
    if not path.exists():
        return []
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except (pa.ArrowException, OSError) as e:
        raise StoreError(f"{path}: not a readable decisions table ({_first_line(e)}); move it aside to start "
                         f"afresh, or restore it") from None
    missing = [c for c in COLUMNS if c not in table.column_names]
    if missing:
        raise StoreError(f"{path}: not a decisions table (no column {', '.join(missing)}); move it aside to start "
                         f"afresh, or restore it")
    rows = table.select(list(COLUMNS)).to_pylist()
    for n, r in enumerate(rows):
        if r["verdict"] not in VERDICTS or not r["candidate_id"] or not r["reviewer"]:
            raise StoreError(f"{path}: row {n} is not a decision (verdict {r['verdict']!r}, pair "
                             f"{r['candidate_id']!r}, reviewer {r['reviewer']!r}); move the file aside or fix it")
    return rows


def record(run_dir: Path, rows: Iterable[dict], remove: Iterable[tuple[str, str]] = ()) -> list[dict]:
    """Add or replace decisions (one per pair and reviewer) and drop ``remove``'s (pair, reviewer) ones,
    atomically under the decisions lock; returns the whole table as written."""
    new = list(rows)
    gone = set(remove)
    with _locked(Path(run_dir)):
        table = read_decisions(run_dir)
        replaced = {(r["candidate_id"], r["reviewer"]) for r in new} | gone
        table = [r for r in table if (r["candidate_id"], r["reviewer"]) not in replaced] + new
        write_table(Path(run_dir) / layout.REVIEW_DECISIONS, table, schema=decisions_schema())
    return table


def decisions_sha256(run_dir: Path) -> Optional[str]:
    """The decisions file's content hash (what a curated set that used them depends on); None: no file."""
    path = Path(run_dir) / layout.REVIEW_DECISIONS
    return hash_file(path) if path.exists() else None


def effective(rows: Iterable[dict]) -> dict[str, dict]:
    """Each reviewed pair's decision: the latest of its reviewers'. Decisions of the same time (an Argilla
    pull records all its responses at once) go to a reject, so that a pair one reviewer rejected is not
    trained on; among keeps, the reviewer's name decides."""
    out: dict[str, dict] = {}
    for r in sorted(rows, key=lambda r: (r["time"], not KEEPS[r["verdict"]], r["reviewer"])):
        out[r["candidate_id"]] = r
    return out


def disagreements(rows: Iterable[dict]) -> int:
    """Pairs decided by more than one reviewer whose verdicts disagree about keeping the pair."""
    keeps: dict[str, set] = {}
    for r in rows:
        keeps.setdefault(r["candidate_id"], set()).add(KEEPS[r["verdict"]])
    return sum(1 for k in keeps.values() if len(k) > 1)


def counts(decided: dict[str, dict]) -> dict:
    """How many pairs were reviewed, accepted, rejected and edited (effective decisions)."""
    verdicts = [r["verdict"] for r in decided.values()]
    return {"reviewed": len(verdicts), "accepted": verdicts.count("accept"), "rejected": verdicts.count("reject"),
            "edited": verdicts.count("edit"), "reviewers": sorted({r["reviewer"] for r in decided.values()})}


@contextlib.contextmanager
def _locked(run_dir: Path) -> Iterator[None]:
    lock = run_dir / layout.REVIEW_LOCK
    lock.parent.mkdir(parents=True, exist_ok=True)
    with open(lock, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _first_line(e: Exception) -> str:
    text = " ".join(str(e).split())
    return text if len(text) <= 160 else text[:157] + "..."
