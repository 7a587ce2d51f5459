"""Sharded and round stages: generation and scoring write their results in shards as they go. Both go
through the one stage lifecycle (:mod:`.lifecycle`): declare -> skip or run (here: shard by shard) -> finish.
A stage declares itself first (:class:`ShardedStage`, :class:`RoundStage`: its name, inputs, outputs and key;
skip or run), then defines its per-shard work and runs it with ``.run(...)``, which gives back its result.

A shard is done when its marker (:func:`humpback.layout.shard_marker`) records the stage key and the
checksums of its files; on restart, done shards are kept and only missing or corrupt ones are
redone. Worker I of N does the shards with ``s % N == I``; the stage completes when all shards are
present, whichever worker gets there last.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from dataclasses import dataclass
from typing import Callable, Sequence

from .. import layout, progress
from ..errors import StoreError
from ..layout import shard_file
from .files import hash_file, write_json
from .lifecycle import Stage, StageResult, open_stage, start_line
from .manifest import Manifest
from .workers import wait_until

# Called as hook(stage, shard) after each shard's marker is written. Empty in normal use; the crash
# tests install one that pauses, so that a process can be killed between shards.
after_shard: list[Callable[[str, int], None]] = []


@dataclass
class ShardedStage:
    """A declared sharded stage (every worker takes part; ``shard_size`` joins its key): :attr:`runs` says
    whether it runs, :meth:`run` does this worker's shards and gives back the result."""

    stage: Stage
    shard_size: int
    unit: str = "items"  # what its bar counts (plural: "segments")
    concurrency: int = 1
    show: bool = True

    @property
    def runs(self) -> bool:
        return self.stage.runs

    def run(self, n_items: int, do_shard: Callable[[int, int, int], dict],
            finish: Callable[[list[dict]], dict]) -> StageResult:
        """``do_shard(shard, start, end)`` writes its :func:`~humpback.layout.shard_file` into each output
        folder (atomically) and returns that shard's statistics; ``finish`` aggregates them (see
        :func:`run_sharded`). A stage that does not run gives back its result at once."""
        if not self.stage.runs:
            return self.stage.result()
        return run_sharded(self.stage, n_items, self.shard_size, do_shard, finish, self.unit, self.concurrency,
                           self.show)


def open_sharded(store: Manifest, name: str, deps: dict, outputs: Sequence[str], shard_size: int,
                 inputs: Sequence[str], force: bool, job: str | None = None, unit: str = "items",
                 concurrency: int = 1, show: bool = True) -> ShardedStage:
    """Declare a sharded stage: its key is ``deps`` with the shard size."""
    stage = open_stage(store, name, {**deps, "shard_size": shard_size}, inputs, outputs, force, job=job)
    return ShardedStage(stage, shard_size, unit, concurrency, show)


def run_sharded(stage: Stage, n_items: int, shard_size: int, do_shard: Callable[[int, int, int], dict],
                finish: Callable[[list[dict]], dict], unit: str = "items", concurrency: int = 1,
                show: bool = True) -> StageResult:
    """Run a declared sharded stage that runs.

    Its outputs are folders; ``do_shard(shard, start, end)`` writes its :func:`~humpback.layout.shard_file`
    into each (atomically) and returns that shard's statistics; ``finish`` aggregates them. Every worker
    takes part. The stage's bar (``show``) counts this worker's items in ``unit``; the generation backends
    advance it as they go (:func:`humpback.progress.task`), and each finished shard sets it right. Up to
    ``concurrency`` shards are in flight at once.
    """
    store, name, inputs, outputs = stage.store, stage.name, stage.inputs, stage.outputs
    force = stage.reason == "forced"  # --force: done shards are redone too
    if force and store.worker.count > 1:
        raise StoreError(f"--force {name} needs a single worker (another may be reading its shards)")

    n_shards = max(1, -(-n_items // shard_size))
    if force:
        shutil.rmtree(store.path(layout.progress_dir(name)), ignore_errors=True)
    ok = lambda s: _shard_ok(store, name, s, stage.key, outputs)  # noqa: E731
    mine = [s for s in range(n_shards) if store.worker.owns(s)]
    todo = [s for s in mine if not ok(s)]
    stage.begin(start_line(name, stage.reason, inputs, _shards_done(len(mine) - len(todo), len(mine), n_shards)),
                shards=n_shards)
    size = lambda s: min(n_items, (s + 1) * shard_size) - s * shard_size  # noqa: E731
    mark = lambda s, stats: _mark(store, name, s, stage.key, outputs, stats)  # noqa: E731

    with stage.failing(), \
            progress.bar(sum(size(s) for s in mine), unit, layout.stage_kind(name),
                         initial=sum(size(s) for s in mine if s not in todo), show=show) as bar:
        if concurrency > 1 and len(todo) > 1:
            _run_concurrently(todo, lambda s: do_shard(s, s * shard_size, min(n_items, (s + 1) * shard_size)),
                              mark, lambda s: bar.update(size(s)), concurrency)
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
        if entry and entry.get("key") != stage.key:
            raise StoreError(f"stage {name} was restarted with another configuration by another worker")
        return None

    wait_until(all_present, lambda: store.log(f"[{name}] waiting for the other workers' shards"), store.poll_seconds)

    done = store.finished_entry(name, stage.key)
    if done:
        return stage.skip("finished by another worker", done.get("stats", {})).result()
    shard_stats = [_marker(store, name, s)["stats"] for s in range(n_shards)]
    keep = {Path(shard_file("", s)).name for s in range(n_shards)}
    for out in outputs:  # shards of an earlier, larger run of this stage
        for stale in store.path(out).glob(layout.SHARD_FILES):
            if stale.name not in keep:
                stale.unlink()
    with stage.failing():
        stats = {**(finish(shard_stats) or {}), "shards": n_shards}
    return stage.finish(stats)


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


def _mark(store: Manifest, name: str, shard: int, key: str, outputs: Sequence[str], stats: dict) -> None:
    """Write the marker of a finished shard: the stage key, its files' checksums and its statistics."""
    files = [shard_file(out, shard) for out in outputs]
    write_json(store.path(layout.shard_marker(name, shard)),
               {"key": key, "files": {f: hash_file(store.path(f)) for f in files}, "stats": stats})
    for hook in after_shard:
        hook(name, shard)


def _marker(store: Manifest, name: str, shard: int) -> dict:
    return json.loads(store.path(layout.shard_marker(name, shard)).read_text())


def _shard_ok(store: Manifest, name: str, shard: int, key: str, outputs: Sequence[str]) -> bool:
    """A shard counts only if its marker has this key and every file matches its checksum."""
    try:
        marker = _marker(store, name, shard)
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


@dataclass
class RoundStage:
    """A declared stage of sequential rounds (only the main worker runs them; the others wait for it):
    :attr:`runs` says whether it runs, :meth:`run` does its rounds and gives back the result."""

    stage: Stage

    @property
    def runs(self) -> bool:
        return self.stage.runs

    def run(self, load_round: Callable[[int], None], do_round: Callable[[int], dict],
            more: Callable[[list[dict]], bool], finish: Callable[[list[dict]], dict]) -> StageResult:
        """See :func:`run_rounds`; a stage that does not run gives back its result at once."""
        if not self.stage.runs:
            return self.stage.result()
        return run_rounds(self.stage, load_round, do_round, more, finish)


def open_rounds(store: Manifest, name: str, deps: dict, outputs: Sequence[str], inputs: Sequence[str],
                force: bool, job: str | None = None) -> RoundStage:
    """Declare a stage of rounds: a helper worker waits until worker 0 has done it."""
    return RoundStage(open_stage(store, name, deps, inputs, outputs, force, job=job,
                                 wait=f"[{name}] waiting for worker 0 (its rounds run in order)"))


def run_rounds(stage: Stage, load_round: Callable[[int], None], do_round: Callable[[int], dict],
               more: Callable[[list[dict]], bool], finish: Callable[[list[dict]], dict]) -> StageResult:
    """Run a declared stage of sequential rounds (each depends on the ones before it) that runs.

    Round R writes its :func:`~humpback.layout.shard_file` into each of the stage's outputs and returns its
    statistics; a marker like a shard's records it. On restart the unbroken run of done rounds from round 0
    is kept: ``load_round(r)`` is called for each, in order, so the stage rebuilds its state from them, and
    the rounds after a missing or corrupt one are deleted (they were built on it). Rounds go on while
    ``more(stats of every round so far)``.
    """
    store, name, outputs = stage.store, stage.name, stage.outputs
    if stage.reason == "forced":
        shutil.rmtree(store.path(layout.progress_dir(name)), ignore_errors=True)
    kept = 0
    while _shard_ok(store, name, kept, stage.key, outputs):
        kept += 1
    _drop_rounds_from(store, name, kept, outputs)
    stage.begin(f"[{name}] running ({stage.reason}): {kept} rounds already done")
    with stage.failing():
        rounds = []
        for r in range(kept):
            load_round(r)
            rounds.append(_marker(store, name, r)["stats"])
        while more(rounds):
            r = len(rounds)
            stats = do_round(r) or {}
            _mark(store, name, r, stage.key, outputs, stats)
            rounds.append(stats)
        stats = {**(finish(rounds) or {}), "rounds": len(rounds)}
    return stage.finish(stats)


def _drop_rounds_from(store: Manifest, name: str, first: int, outputs: Sequence[str]) -> None:
    """Delete the markers and files of rounds ``first`` and after."""
    for out in outputs:
        for part in store.path(out).glob(layout.SHARD_FILES):
            if layout.shard_number(part) >= first:
                part.unlink()
    markers = store.path(layout.progress_dir(name))
    for marker in markers.glob(layout.SHARD_MARKERS) if markers.exists() else ():
        if layout.shard_number(marker) >= first:
            marker.unlink()
