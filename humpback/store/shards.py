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
    def mark(s: int, stats: dict) -> None:
        files = [shard_file(out, s) for out in outputs]
        write_json(markers / f"part-{s:05d}.json",
                   {"key": key, "files": {f: hash_file(store.path(f)) for f in files}, "stats": stats})
        for hook in after_shard:
            hook(name, s)

    with store.failing(name, key), \
            progress.bar(sum(size(s) for s in mine), unit, layout.stage_kind(name),
                         initial=sum(size(s) for s in mine if s not in todo), show=store.progress) as bar:
        if store.concurrency > 1 and len(todo) > 1:
            _run_concurrently(todo, lambda s: do_shard(s, s * shard_size, min(n_items, (s + 1) * shard_size)),
                              mark, lambda s: bar.update(size(s)), store.concurrency)
        else:
            for s in todo:
                before = bar.n
                stats = do_shard(s, s * shard_size, min(n_items, (s + 1) * shard_size)) or {}
                bar.update(before + size(s) - bar.n)
                mark(s, stats)

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


def _run_concurrently(todo: Sequence[int], do: Callable[[int], dict], mark: Callable[[int, dict], None],
                      advance: Callable[[int], None], threads: int) -> None:
    """Up to ``threads`` shards in flight (their model calls on remote workers; their own code takes turns,
    see :mod:`humpback.turns`). Each shard is marked done as it finishes, in any order. On a failure no
    new shard starts; those already in flight finish and are marked, then the first error is raised."""
    from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait

    from ..turns import turn

    def one(s: int) -> dict:
        with turn():
            return do(s) or {}

    queue, error = list(todo), None
    with ThreadPoolExecutor(threads) as pool:
        running = {pool.submit(one, s): s for s in queue[:threads]}
        del queue[:threads]
        while running:
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for f in finished:
                s = running.pop(f)
                if f.exception() is not None:
                    error = error or f.exception()
                    continue
                mark(s, f.result())
                advance(s)
                if queue and error is None:
                    nxt = queue.pop(0)
                    running[pool.submit(one, nxt)] = nxt
    if error is not None:
        raise error


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


def run_rounds(store: "RunStore", name: str, deps: dict, outputs: Sequence[str], load_round: Callable[[int], None],
               do_round: Callable[[int], dict], more: Callable[[list[dict]], bool],
               finish: Callable[[list[dict]], dict], inputs: Sequence[str], force: bool) -> tuple[bool, str, dict]:
    """Run a stage of sequential rounds (each depends on the ones before it); returns (ran, reason, stats).

    Round R writes ``<folder>/part-R.parquet`` into each of ``outputs`` and returns its statistics; a
    marker like a shard's records it. On restart the unbroken run of done rounds from round 0 is kept:
    ``load_round(r)`` is called for each, in order, so the stage rebuilds its state from them, and the
    rounds after a missing or corrupt one are deleted (they were built on it). Rounds go on while
    ``more(stats of every round so far)``. Only the main worker runs rounds; the others wait for it.
    """
    store.refresh()
    full = store.depends_on(deps, inputs)
    key = hash_json(full)
    if not store.worker.is_main:
        done = wait_until(lambda: store.finished_entry(name, key),
                          lambda: store.log(f"[{name}] waiting for worker 0 (its rounds run in order)"),
                          store.poll_seconds)
        return False, "done by another worker", done.get("stats", {})
    prev = store.stage_entry(name)
    reason = store.why_run(prev, key, full, outputs, force)
    if reason is None:
        store.skipped(name, prev)
        return False, "up to date", prev.get("stats", {})
    markers = store.path(layout.PROGRESS) / name.replace("/", "_")
    if force:
        shutil.rmtree(markers, ignore_errors=True)
    kept = 0
    while _shard_ok(store, markers, kept, key, outputs):
        kept += 1
    _drop_rounds_from(store, markers, kept, outputs)
    store.log(f"[{name}] running ({reason}): {kept} rounds already done")
    started = time.time()
    store.start(name, key)
    with store.failing(name, key):
        rounds = []
        for r in range(kept):
            load_round(r)
            rounds.append(json.loads((markers / f"part-{r:05d}.json").read_text())["stats"])
        while more(rounds):
            r = len(rounds)
            stats = do_round(r) or {}
            files = [shard_file(out, r) for out in outputs]
            write_json(markers / f"part-{r:05d}.json",
                       {"key": key, "files": {f: hash_file(store.path(f)) for f in files}, "stats": stats})
            rounds.append(stats)
            for hook in after_shard:
                hook(name, r)
        stats = {**(finish(rounds) or {}), "rounds": len(rounds)}
    store.finish(name, key, full, outputs, stats, started)
    return True, reason, stats


def _drop_rounds_from(store: "RunStore", markers: Path, first: int, outputs: Sequence[str]) -> None:
    """Delete the markers and files of rounds ``first`` and after."""
    for out in outputs:
        for part in store.path(out).glob("part-*.parquet"):
            if int(part.stem.split("-")[1]) >= first:
                part.unlink()
    for marker in markers.glob("part-*.json") if markers.exists() else ():
        if int(marker.stem.split("-")[1]) >= first:
            marker.unlink()
