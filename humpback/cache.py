"""The cache of built assets: where it is, and how a folder or file is built into it once.

Built-in assets (the tiny model and the docs corpus, the controlled world, models converted from GGUF
files) are built on first use into ``$HUMPBACK_CACHE`` (default ``~/.cache/humpback``), under names that
carry a hash of what they were built from; a build goes to a scratch name first and is moved into place
whole, so a killed build leaves nothing half-written and two processes building the same asset at once
both end with the same complete result.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable


def cache_root(cache_dir: str | Path | None = None) -> Path:
    """``cache_dir`` if given, else ``$HUMPBACK_CACHE``, else ``~/.cache/humpback``."""
    if cache_dir is not None:
        return Path(cache_dir)
    env = os.environ.get("HUMPBACK_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "humpback"


def build_dir(final: Path, fill: Callable[[Path], None]) -> Path:
    """Run ``fill`` on a scratch folder beside ``final``, then move it to ``final`` (a concurrent build of
    the same key may win the move: its result is the same). Returns ``final``."""
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}-", dir=final.parent))
    try:
        fill(tmp)
        try:
            os.replace(tmp, final)
        except OSError:
            if not final.exists():  # not a lost race: a real failure
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final


def build_file(final: Path, fill: Callable[[Path], None]) -> Path:
    """Like :func:`build_dir` for a single file."""
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{final.name}-", dir=final.parent)
    os.close(fd)
    try:
        fill(Path(tmp_name))
        os.replace(tmp_name, final)
    finally:
        if os.path.exists(tmp_name):
            os.unlink(tmp_name)
    return final
