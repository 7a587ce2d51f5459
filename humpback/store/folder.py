"""One run folder: its tables, its manifest (:mod:`.manifest`) and its stages, plain, sharded or in rounds,
all opened and finished one way (:mod:`.lifecycle`, :mod:`.shards`). Inside ``store/`` imports run one way:
files -> manifest -> lifecycle -> shards -> folder."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Optional, Sequence

from .. import FORMAT_VERSION
from ..errors import StoreError
from .files import count_rows, hash_json, hash_path, read_table, write_table
from .lifecycle import StageResult, Step, run_stage
from .manifest import Manifest
from .shards import run_rounds, run_sharded
from .workers import Worker


class RunStore(Manifest):
    """One run folder. Paths are relative to ``root`` (see :mod:`humpback.layout`); the manifest records
    each stage. Every stage runs through :meth:`stage`, :meth:`sharded_stage` or :meth:`round_stage`."""

    def __init__(self, root: Path | str, log: Callable[[str], None] = print, worker: Worker = Worker(),
                 poll_seconds: float | None = None, progress: bool = True):
        super().__init__(root, log, worker, poll_seconds)
        self.progress = progress  # the sharded stages' bars
        self.concurrency = 1  # shards in flight at once (workers.engine ray: workers.count)

    # tables ----------------------------------------------------------------
    def read_rows(self, rel: str) -> list[dict]:
        return read_table(self.path(rel))

    def count_rows(self, rel: str) -> int:
        return count_rows(self.path(rel))

    def write_rows(self, rel: str, rows: Sequence[dict] | Any, schema: Any = None) -> None:
        write_table(self.path(rel), rows, schema)

    # stages ----------------------------------------------------------------
    def stage(self, name: str, deps: dict, outputs: Iterable[str], fn: Callable[[], dict | None],
              inputs: Iterable[str] = (), force: bool = False, job: Optional[str] = None,
              lineage: Optional[Sequence[Step]] = None, reads: Sequence[str] = ()) -> StageResult:
        """Run ``fn`` unless a finished stage with the same key and intact outputs exists.

        ``deps`` is plain data the output depends on; ``inputs`` are run-folder paths written by
        earlier stages, whose recorded content hashes join the key. ``fn`` writes ``outputs``
        (atomically) and returns the stage's statistics. The lineage is one step of kind ``job``
        (default: the stage's kind) from the inputs to the outputs, unless ``lineage`` says more.
        ``reads`` names what the stage reads from outside the run folder, for its start line.
        """
        return run_stage(self, name, deps, outputs, fn, inputs, force, reads).result(job, lineage)

    def sharded_stage(self, name: str, deps: dict, outputs: Sequence[str], n_items: int, shard_size: int,
                      do_shard: Callable[[int, int, int], dict], finish: Callable[[list[dict]], dict],
                      inputs: Iterable[str] = (), force: bool = False, job: Optional[str] = None,
                      unit: str = "items") -> StageResult:
        """A stage whose work splits into shards, written as they finish (see :func:`.shards.run_sharded`);
        its bar counts ``n_items`` in ``unit`` (plural: "segments")."""
        return run_sharded(self, name, deps, tuple(outputs), n_items, shard_size, do_shard, finish, tuple(inputs),
                           force, unit, self.concurrency, self.progress).result(job)

    def round_stage(self, name: str, deps: dict, outputs: Sequence[str], load_round: Callable[[int], None],
                    do_round: Callable[[int], dict], more: Callable[[list[dict]], bool],
                    finish: Callable[[list[dict]], dict], inputs: Iterable[str] = (), force: bool = False,
                    job: Optional[str] = None) -> StageResult:
        """A stage of sequential rounds, each written as it finishes (see :func:`.shards.run_rounds`)."""
        return run_rounds(self, name, deps, tuple(outputs), load_round, do_round, more, finish, tuple(inputs),
                          force).result(job)

    # replay ----------------------------------------------------------------
    def import_output(self, source: "RunStore", rel: str) -> str:
        """Bring a finished output of another run into this one (hard links where possible), after
        checking that it still has the content hash that run recorded. Returns the hash."""
        recorded = source.output_hash(rel)
        src = source.path(rel)
        actual = hash_path(src) if src.exists() else None
        if actual != recorded:
            state = "is missing" if actual is None else "does not match the hash its manifest recorded"
            raise StoreError(f"{src} {state}; it cannot be replayed")
        if self.worker.is_main:
            dst = self.path(rel)
            if not dst.exists() or hash_path(dst) != recorded:
                if dst.is_dir():
                    shutil.rmtree(dst)
                dst.parent.mkdir(parents=True, exist_ok=True)
                shutil.copytree(src, dst, copy_function=_link_or_copy) if src.is_dir() else _link_or_copy(src, dst)
            full = {"deps": {"source": str(source.root.resolve()), "path": rel}, "inputs": {},
                    "format_version": FORMAT_VERSION}
            self.finish(f"import/{rel}", hash_json({**full, "hash": recorded}), full, [rel],
                        {"source": str(source.root.resolve()), "hash": recorded}, time.time())
            self.refresh()
        return recorded


def _link_or_copy(src, dst) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)
