"""One stage lifecycle, the same for plain, sharded and round stages: declare -> skip or run -> finish.

1. **Declare** (:func:`open_stage`): the stage's name, inputs, outputs and the key they hash to; then the
   one decision: skip it (up to date, or left to worker 0 while a helper worker waits for it) or run it,
   with the reason why (new, forced, changed, unfinished, an output missing).
2. **Run**: :meth:`Stage.begin` prints the start line and records the stage as running; the work runs
   under :meth:`Stage.failing` (a raise is recorded as failed or interrupted).
3. **Finish** (:meth:`Stage.finish`): the outputs' hashes, the stats and the result lines go to the
   manifest; :meth:`Stage.result` is what the stage gives back (:class:`StageResult`).

:func:`run_stage` is a plain stage; :mod:`.shards` runs sharded and round stages through the same steps.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Iterable, Optional, Sequence

from .. import layout
from ..errors import StoreError
from .files import hash_json
from .manifest import Manifest


@dataclass(frozen=True)
class Step:
    """One step of lineage: ``job`` read run-folder paths ``inputs`` and wrote ``outputs``."""

    job: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]


@dataclass
class StageResult:
    """What a stage gave the store: its statistics, inputs and outputs, and the lineage they form."""

    name: str
    ran: bool
    reason: str
    stats: dict = field(default_factory=dict)
    inputs: tuple[str, ...] = ()
    outputs: tuple[str, ...] = ()
    lineage: tuple[Step, ...] = ()


@dataclass
class Stage:
    """A declared stage: its name, inputs and outputs, and ``full`` (what its key hashes) and ``key``;
    then whether it ``runs`` and the ``reason`` (why it runs, or why it was skipped: up to date, done by
    another worker), and its ``stats`` (from its run, or those recorded when it was skipped)."""

    store: Manifest
    name: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    full: dict
    key: str
    runs: bool = False
    reason: str = ""
    stats: dict = field(default_factory=dict)
    started: float = 0.0

    def skip(self, reason: str, stats: dict) -> "Stage":
        self.runs, self.reason, self.stats = False, reason, stats
        return self

    def begin(self, line: str, **entry: object) -> None:
        """Print the start ``line``; the main worker records the stage as running (``entry``: more fields
        of its manifest entry)."""
        self.store.log(line)
        self.started = time.time()
        if self.store.worker.is_main:
            self.store.start(self.name, self.key, **entry)

    def failing(self):
        """The context the work runs in: a raise records the stage as failed or interrupted."""
        return self.store.failing(self.name, self.key)

    def require_outputs(self) -> None:
        missing = [rel for rel in self.outputs if not self.store.exists(rel)]
        if missing:
            raise StoreError(f"stage {self.name} finished without writing {', '.join(missing)}")

    def finish(self, stats: dict) -> "Stage":
        """Record the stage as done: its outputs' hashes, ``stats`` and result lines."""
        self.store.finish(self.name, self.key, self.full, self.outputs, stats, self.started)
        self.stats = stats
        return self

    def result(self, job: Optional[str] = None, lineage: Optional[Sequence[Step]] = None) -> StageResult:
        """The :class:`StageResult`; its lineage is one step of kind ``job`` (default: the stage's kind)
        from the inputs to the outputs, unless ``lineage`` says more."""
        steps = tuple(lineage) if lineage is not None else \
            (Step(job or layout.stage_kind(self.name), self.inputs, self.outputs),)
        return StageResult(self.name, self.runs, self.reason, self.stats, self.inputs, self.outputs, steps)


def open_stage(store: Manifest, name: str, deps: dict, inputs: Iterable[str], outputs: Iterable[str],
               force: bool, wait: Optional[str] = None) -> Stage:
    """Declare a stage and decide whether it runs.

    ``deps`` is plain data the output depends on; ``inputs`` are run-folder paths written by earlier
    stages, whose recorded content hashes join the key. A stage up to date is skipped (its lines are
    shown again). With ``wait`` (its waiting line), a helper worker leaves the stage to worker 0 and
    waits until it is done; without, every worker takes part (a sharded stage).
    """
    inputs, outputs = tuple(inputs), tuple(outputs)
    store.refresh()
    full = store.depends_on(deps, inputs)
    stage = Stage(store, name, inputs, outputs, full, hash_json(full))
    if wait is not None and not store.worker.is_main:
        return stage.skip("done by another worker", store.wait_for(name, stage.key, wait))
    prev = store.stage_entry(name)
    reason = store.why_run(prev, stage.key, full, stage.outputs, force)
    if reason is None:
        store.skipped(name, prev)
        return stage.skip("up to date", prev.get("stats", {}))
    stage.runs, stage.reason = True, reason
    return stage


def run_stage(store: Manifest, name: str, deps: dict, outputs: Iterable[str], fn: Callable[[], dict | None],
              inputs: Iterable[str] = (), force: bool = False, reads: Sequence[str] = ()) -> Stage:
    """A plain stage: ``fn`` writes ``outputs`` (atomically) and returns the stage's statistics.
    ``reads`` names what it reads from outside the run folder, for its start line."""
    stage = open_stage(store, name, deps, inputs, outputs, force, wait=f"[{name}] waiting for worker 0")
    if not stage.runs:
        return stage
    stage.begin(start_line(name, stage.reason, [*stage.inputs, *reads]))
    with stage.failing():
        stats = fn() or {}
    stage.require_outputs()
    return stage.finish(stats)


def start_line(name: str, reason: str, reads: Sequence[str], shards: str = "") -> str:
    """``[augment] running (new); reads data/segments.parquet, models/backward``."""
    line = f"[{name}] running ({reason})"
    if reads:
        line += "; reads " + ", ".join(reads)
    return line + (f"; {shards}" if shards else "")
