"""One run folder: its tables, its manifest (:mod:`.manifest`) and its stages, plain, sharded or in rounds,
all declared, opened and finished one way (:mod:`.lifecycle`, :mod:`.shards`). Inside ``store/`` imports run one way:
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
from .lifecycle import Stage, Step, open_stage
from .manifest import Manifest
from .shards import RoundStage, ShardedStage, open_rounds, open_sharded
from .workers import Worker


class RunStore(Manifest):
    """One run folder. Paths are relative to ``root`` (see :mod:`humpback.layout`); the manifest records
    each stage. Every stage is declared by :meth:`stage`, :meth:`sharded_stage` or :meth:`round_stage`."""

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
    def stage(self, name: str, deps: dict, outputs: Iterable[str], inputs: Iterable[str] = (), force: bool = False,
              job: Optional[str] = None, lineage: Optional[Sequence[Step]] = None,
              reads: Sequence[str] = ()) -> Stage:
        """Declare a plain stage: skipped if a finished stage with the same key and intact outputs exists
        (a helper worker waits for worker 0 to do it); else its work runs in :meth:`Stage.running` and
        ends with :meth:`Stage.finish` (see :mod:`.lifecycle`).

        ``deps`` is plain data the outputs depend on; ``inputs`` are run-folder paths written by earlier
        stages, whose recorded content hashes join the key. The lineage is one step of kind ``job``
        (default: the stage's kind) from the inputs to the outputs, unless ``lineage`` says more.
        ``reads`` names what the stage reads from outside the run folder, for its start line.
        """
        return open_stage(self, name, deps, inputs, outputs, force, wait=f"[{name}] waiting for worker 0", job=job,
                          lineage=lineage, reads=reads)

    def sharded_stage(self, name: str, deps: dict, outputs: Sequence[str], shard_size: int,
                      inputs: Iterable[str] = (), force: bool = False, job: Optional[str] = None,
                      unit: str = "items") -> ShardedStage:
        """Declare a stage whose work splits into shards, written as they finish; its ``run(n_items,
        do_shard, finish)`` does them (see :mod:`.shards`). Its bar counts items in ``unit`` (plural)."""
        return open_sharded(self, name, deps, tuple(outputs), shard_size, tuple(inputs), force, job, unit,
                            self.concurrency, self.progress)

    def round_stage(self, name: str, deps: dict, outputs: Sequence[str], inputs: Iterable[str] = (),
                    force: bool = False, job: Optional[str] = None) -> RoundStage:
        """Declare a stage of sequential rounds, each written as it finishes; its ``run(load_round,
        do_round, more, finish)`` does them (see :mod:`.shards`)."""
        return open_rounds(self, name, deps, tuple(outputs), tuple(inputs), force, job)

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
