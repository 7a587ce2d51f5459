"""What identifies a model or a data source in stage keys: a hub id with its revision, or the
content of local files. A changed local model or seed file changes the key of every stage built on it."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Optional

from .files import hash_file

# Small files are hashed by content; larger ones (weights) by name and size: hashing gigabytes on
# every run is too slow, and a retrained checkpoint changes its small files (config, index) too.
CONTENT_LIMIT = 8 << 20


def model_identity(model: str, revision: Optional[str]) -> dict:
    path = Path(model)
    if not path.exists():
        return {"id": model, "revision": revision}
    h = hashlib.sha256()
    for p in sorted(q for q in path.rglob("*") if q.is_file()):
        rel = str(p.relative_to(path))
        sig = hash_file(p) if p.stat().st_size < CONTENT_LIMIT else f"size={p.stat().st_size}"
        h.update(f"{rel}\0{sig}\n".encode())
    return {"path": str(path.resolve()), "content": h.hexdigest()}


def source_identity(path: Optional[str], dataset: Optional[str], full: bool) -> dict:
    """A hub dataset by its id, a URL by itself; local files by name and size, plus their full content
    when ``full`` (seed files are small) or their first megabyte otherwise (a corpus can be terabytes)."""
    if dataset is not None:
        return {"dataset": dataset}
    if "://" in path:  # a URL (fsspec): named, not read (a crawl's files do not change under their names)
        return {"url": path}
    root = Path(path)
    files = [root] if root.is_file() else sorted(q for q in root.rglob("*") if q.is_file()) if root.exists() else []
    h = hashlib.sha256()
    for p in files:
        h.update(f"{p}\0{p.stat().st_size}\0".encode())
        if full:
            h.update(hash_file(p).encode())
        else:
            with open(p, "rb") as f:
                h.update(f.read(1 << 20))
    return {"path": str(root), "content": h.hexdigest()}
