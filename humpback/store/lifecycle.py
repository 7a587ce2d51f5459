"""One stage lifecycle, the same for plain, sharded and round stages: declare -> skip or run -> finish.

1. **Declare** (:func:`open_stage`): the stage's name, inputs, outputs and the key they hash to; then the
   one decision: skip it (up to date, or left to worker 0 while a helper worker waits for it) or run it,
   with the reason why (new, forced, changed, unfinished, an output missing).
2. **Run**: :meth:`Stage.begin` prints the start line and records the stage as running; the work runs
   under :meth:`Stage.failing` (a raise is recorded as failed or interrupted). A plain stage's work runs
   in :meth:`Stage.running`, which does both and then checks that every output was written.
3. **Finish** (:meth:`Stage.finish`): the outputs' hashes, the stats and the result lines go to the
   manifest, and the stage gives back its :class:`StageResult` (:meth:`Stage.result` when skipped).

A plain stage reads top to bottom (see docs/architecture.md, "How a stage is written")::

    stage = rt.store.stage("seed", deps, [SEED, HELDOUT], force=rt.forced("seed"), job="prepare")
    if not stage.runs:
        return stage.result()
    with stage.running():
        ...  # the work: writes the outputs
        stats = {...}
    return stage.finish(stats)

:mod:`.shards` runs sharded and round stages through the same steps.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from typing import Iterable, Iterator, Optional, Sequence

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
    """A declared stage: its name, inputs and outputs, and ``full`` (what its key hashes) and ``key``; its
    lineage (one step of kind ``job``, default the stage's kind, unless ``lineage`` says more) and what it
    ``reads`` from outside the run folder (for its start line); then whether it ``runs`` and the ``reason``
    (why it runs, or why it was skipped: up to date, done by another worker), and its ``stats`` (from its
    run, or those recorded when it was skipped)."""

    store: Manifest
    name: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    full: dict
    key: str
    job: Optional[str] = None
    lineage: Optional[tuple[Step, ...]] = None
    reads: tuple[str, ...] = ()
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

    @contextlib.contextmanager
    def running(self) -> Iterator["Stage"]:
        """A plain stage's work: its start line (why it runs, what it reads), the stage recorded as running,
        a raise recorded as failed or interrupted; when the work is done, every output must exist."""
        self.begin(start_line(self.name, self.reason, [*self.inputs, *self.reads]))
        with self.failing():
            yield self
        missing = [rel for rel in self.outputs if not self.store.exists(rel)]
        if missing:
            raise StoreError(f"stage {self.name} finished without writing {', '.join(missing)}")

    def finish(self, stats: dict) -> StageResult:
        """Record the stage as done: its outputs' hashes, ``stats`` and result lines; its result."""
        self.store.finish(self.name, self.key, self.full, self.outputs, stats, self.started)
        self.stats = stats
        return self.result()

    def result(self) -> StageResult:
        """What the stage gives back: its stats, inputs, outputs and lineage."""
        steps = self.lineage if self.lineage is not None else \
            (Step(self.job or layout.stage_kind(self.name), self.inputs, self.outputs),)
        return StageResult(self.name, self.runs, self.reason, self.stats, self.inputs, self.outputs, steps)


def open_stage(store: Manifest, name: str, deps: dict, inputs: Iterable[str], outputs: Iterable[str],
               force: bool, wait: Optional[str] = None, job: Optional[str] = None,
               lineage: Optional[Sequence[Step]] = None, reads: Sequence[str] = ()) -> Stage:
    """Declare a stage and decide whether it runs.

    ``deps`` is plain data the output depends on; ``inputs`` are run-folder paths written by earlier
    stages, whose recorded content hashes join the key. A stage up to date is skipped (its lines are
    shown again). With ``wait`` (its waiting line), a helper worker leaves the stage to worker 0 and
    waits until it is done; without, every worker takes part (a sharded stage). ``job``, ``lineage``
    and ``reads``: see :class:`Stage`.
    """
    inputs, outputs = tuple(inputs), tuple(outputs)
    store.refresh()
    full = store.depends_on(deps, inputs)
    stage = Stage(store, name, inputs, outputs, full, hash_json(full), job,
                  tuple(lineage) if lineage is not None else None, tuple(reads))
    if wait is not None and not store.worker.is_main:
        return stage.skip("done by another worker", store.wait_for(name, stage.key, wait))
    prev = store.stage_entry(name)
    reason = store.why_run(prev, stage.key, full, stage.outputs, force)
    if reason is None:
        store.skipped(name, prev)
        return stage.skip("up to date", prev.get("stats", {}))
    stage.runs, stage.reason = True, reason
    return stage


def start_line(name: str, reason: str, reads: Sequence[str], shards: str = "") -> str:
    """``[augment] running (new); reads data/segments.parquet, models/backward``."""
    line = f"[{name}] running ({reason})"
    if reads:
        line += "; reads " + ", ".join(reads)
    return line + (f"; {shards}" if shards else "")
