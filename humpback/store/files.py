"""Hashing and atomic writes of a run folder's files: JSON, text and Parquet tables.

Every write goes to a temporary file beside its target, is fsynced and renamed into place, so a
crash never leaves half a file under the real name. Files get the permissions the process umask
allows (``tempfile.mkstemp`` alone would make them owner-only).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterable, Sequence

from .. import __version__
from ..errors import StoreError

# --------------------------------------------------------------------------- hashing


def hash_json(obj: Any) -> str:
    """A stable hash of plain data (sorted keys, no whitespace)."""
    blob = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str).encode()
    return hashlib.sha256(blob).hexdigest()


def hash_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def hash_path(path: Path) -> str:
    """Hash of a file, or of a folder's files (relative names and contents)."""
    if path.is_file():
        return hash_file(path)
    h = hashlib.sha256()
    for p in sorted(q for q in path.rglob("*") if q.is_file()):
        h.update(str(p.relative_to(path)).encode() + b"\0" + hash_file(p).encode())
    return h.hexdigest()


# --------------------------------------------------------------------------- atomic writes


@contextlib.contextmanager
def atomic_path(target: Path):
    """Yield a temporary path beside ``target``; on success fsync it and rename it into place."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.fchmod(fd, 0o666 & ~_umask())  # what open() would have given: shared cluster folders stay shared
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        with open(tmp_path, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp_path, target)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_text(target: Path, text: str) -> None:
    with atomic_path(target) as tmp:
        tmp.write_text(text)


def write_json(target: Path, obj: Any) -> None:
    write_text(target, json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n")


def write_table(target: Path, rows: Sequence[dict] | Any, schema: Any = None) -> None:
    """Write rows (a list of dicts, or a pyarrow Table) as one Parquet file, atomically."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = rows if isinstance(rows, pa.Table) else pa.Table.from_pylist(list(rows), schema=schema)
    with atomic_path(target) as tmp:
        pq.write_table(table, tmp)


def write_table_stream(target: Path, rows: Iterable[dict], schema: Any, batch_size: int = 10_000) -> int:
    """Write an iterable of rows to one Parquet file in batches (bounded memory), atomically.

    Returns the number of rows written."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    n = 0
    with atomic_path(target) as tmp:
        with pq.ParquetWriter(tmp, schema) as writer:
            batch: list[dict] = []
            for row in rows:
                batch.append(row)
                if len(batch) >= batch_size:
                    writer.write_table(pa.Table.from_pylist(batch, schema=schema))
                    n += len(batch)
                    batch = []
            if batch or n == 0:
                writer.write_table(pa.Table.from_pylist(batch, schema=schema))
                n += len(batch)
    return n


def read_table(path: Path) -> list[dict]:
    """Rows of a Parquet file, or of a folder of Parquet shards (in name order)."""
    import pyarrow.parquet as pq

    files = [path] if path.is_file() else sorted(path.glob("*.parquet"))
    if not files:
        raise StoreError(f"{path}: no Parquet data")
    rows: list[dict] = []
    for f in files:
        rows.extend(pq.read_table(f).to_pylist())
    return rows


def count_rows(path: Path) -> int:
    """Rows of a Parquet file or shard folder, from the files' metadata (nothing is read)."""
    import pyarrow.parquet as pq

    files = [path] if path.is_file() else sorted(path.glob("*.parquet"))
    return sum(pq.ParquetFile(f).metadata.num_rows for f in files)


# --------------------------------------------------------------------------- versions


def package_versions() -> dict[str, str]:
    from importlib import metadata

    out = {"humpback": __version__}
    for name in ("torch", "transformers", "trl", "peft", "datasets", "accelerate", "deepspeed", "wandb"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


