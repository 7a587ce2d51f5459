"""The sharded-stage protocol: generation and scoring write their results in shards as they go.

A shard is done when its marker (``.progress/<stage>/part-NNNNN.json``) records the stage key and the
checksums of its files; on restart, done shards are kept and only missing or corrupt ones are
redone. Worker I of N does the shards with ``s % N == I``; the stage completes when all shards are
present, whichever worker gets there last.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

from .. import layout, progress
from ..errors import StoreError
from .io import hash_file, hash_json, write_json
from .manifest import start_line
from .workers import wait_until

if TYPE_CHECKING:
    from .manifest import RunStore

# Called as hook(stage, shard) after each shard's marker is written. Empty in normal use; the crash
# tests install one that pauses, so that a process can be killed between shards.
after_shard: list[Callable[[str, int], None]] = []


def shard_file(folder: str, shard: int) -> str:
    return f"{folder}/part-{shard:05d}.parquet"


def run_sharded(store: "RunStore", name: str, deps: dict, outputs: Sequence[str], n_items: int, shard_size: int,
                do_shard: Callable[[int, int, int], dict], finish: Callable[[list[dict]], dict],
                inputs: Sequence[str], force: bool, unit: str = "items") -> tuple[bool, str, dict]:
    """Run a sharded stage; returns (ran, reason, stats).

    ``outputs`` are folders; ``do_shard(shard, start, end)`` writes ``<folder>/part-NNNNN.parquet``
    into each (atomically) and returns that shard's statistics; ``finish`` aggregates them. The
    stage's bar counts this worker's items in ``unit``; the generation backends advance it as they go
    (:func:`humpback.progress.task`), and each finished shard sets it right.
    """
    store.refresh()
    full = store.depends_on({**deps, "shard_size": shard_size}, inputs)
    key = hash_json(full)
    prev = store.stage_entry(name)
    reason = store.why_run(prev, key, full, outputs, force)
    if reason is None:
        store.skipped(name, prev)
        return False, "up to date", prev.get("stats", {})
    if force and store.worker.count > 1:
        raise StoreError(f"--force {name} needs a single worker (another may be reading its shards)")

    n_shards = max(1, -(-n_items // shard_size))
    markers = store.path(layout.PROGRESS) / name.replace("/", "_")
    if force:
        shutil.rmtree(markers, ignore_errors=True)
    ok = lambda s: _shard_ok(store, markers, s, key, outputs)  # noqa: E731
    mine = [s for s in range(n_shards) if store.worker.owns(s)]
    todo = [s for s in mine if not ok(s)]
    store.log(start_line(name, reason, inputs, _shards_done(len(mine) - len(todo), len(mine), n_shards)))
    started = time.time()
    if store.worker.is_main:
        store.start(name, key, shards=n_shards)
    size = lambda s: min(n_items, (s + 1) * shard_size) - s * shard_size  # noqa: E731
    with store.failing(name, key), \
            progress.bar(sum(size(s) for s in mine), unit, layout.stage_kind(name),
                         initial=sum(size(s) for s in mine if s not in todo), show=store.progress) as bar:
        for s in todo:
            before = bar.n
            stats = do_shard(s, s * shard_size, min(n_items, (s + 1) * shard_size)) or {}
            bar.update(before + size(s) - bar.n)
            files = [shard_file(out, s) for out in outputs]
            write_json(markers / f"part-{s:05d}.json",
                       {"key": key, "files": {f: hash_file(store.path(f)) for f in files}, "stats": stats})
            for hook in after_shard:
                hook(name, s)

    pending = [s for s in range(n_shards) if not store.worker.owns(s) or not ok(s)]

    def all_present():
        pending[:] = [s for s in pending if not ok(s)]
        if not pending:
            return True
        store.refresh()
        entry = store.stage_entry(name)
        if entry and entry.get("key") != key:
            raise StoreError(f"stage {name} was restarted with another configuration by another worker")
        return None

    wait_until(all_present, lambda: store.log(f"[{name}] waiting for the other workers' shards"), store.poll_seconds)

    done = store.finished_entry(name, key)
    if done:
        return False, "finished by another worker", done.get("stats", {})
    shard_stats = [json.loads((markers / f"part-{s:05d}.json").read_text())["stats"] for s in range(n_shards)]
    keep = {Path(shard_file("", s)).name for s in range(n_shards)}
    for out in outputs:  # shards of an earlier, larger run of this stage
        for stale in store.path(out).glob("part-*.parquet"):
            if stale.name not in keep:
                stale.unlink()
    with store.failing(name, key):
        stats = {**(finish(shard_stats) or {}), "shards": n_shards}
    store.finish(name, key, full, outputs, stats, started)
    return True, reason, stats


def _shards_done(done: int, mine: int, n_shards: int) -> str:
    """What the start line says about shards: nothing for a fresh single worker."""
    if mine == n_shards:
        return f"{done} of {n_shards} shards done" if done else ""
    return f"{done} of this worker's {mine} shards done (of {n_shards})"


def _shard_ok(store: "RunStore", markers: Path, shard: int, key: str, outputs: Sequence[str]) -> bool:
    """A shard counts only if its marker has this key and every file matches its checksum."""
    try:
        marker = json.loads((markers / f"part-{shard:05d}.json").read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return False
    if marker.get("key") != key:
        return False
    for out in outputs:
        f = shard_file(out, shard)
        p = store.path(f)
        if not p.exists() or marker["files"].get(f) != hash_file(p):
            return False
    return True
