"""Mirrors of a run's figures: wandb, TensorBoard, or nothing (``tracking.backend``).

``RUN_DIR/metrics.jsonl`` (written by :meth:`humpback.run.RunContext.metric`) is the source of truth whatever the
backend; a tracker mirrors every figure and adds what a dashboard shows best: one summary row per
iteration (funnel, rates, score and length histograms), a table of sampled pairs, loss curves, and,
with wandb, the corpora and models as Artifacts with their lineage.

wandb layout: one *pipeline* run per humpback run, its id kept in ``RUN_DIR/tracking.json`` so that a
resumed humpback run resumes the same wandb run. wandb draws lineage between runs and artifacts, so
each step of the loop (prepare, augment, curate K, mix K, train K) is also recorded as a short run of
its own in the same group, using its inputs and logging its outputs, as the stages' results declare
them (:class:`humpback.store.StageResult`): curated K uses the candidates and model K-1; model K uses
mixture K. In offline mode (the default without ``WANDB_API_KEY``) all of
them live under ``RUN_DIR/wandb/`` until ``wandb sync RUN_DIR/wandb/offline-run-*``.

The mirrors live in ``wandb_run`` and ``tensorboard_run``; nothing imports wandb, TensorBoard or torch
unless that backend is chosen.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import sys
from pathlib import Path
from typing import Any, Iterator, Optional, Sequence

from .. import layout
from ..config import TrackingConfig
from ..errors import StoreError
from ..scoring import SCORES, histogram
from ..store import StageResult, Step, hash_json, write_json

SCORE_BINS = [0.5, 1.5, 2.5, 3.5, 4.5, 5.5]


# --------------------------------------------------------------------------- the null tracker


class Tracker:
    """No mirror (``tracking.backend: none``): metrics.jsonl alone. The others extend it."""

    backend = "none"

    def metric(self, stage: str, name: str, value: Any, iteration: Optional[int] = None) -> None:
        """One figure, as appended to metrics.jsonl."""

    def log_iteration(self, k: int, figures: dict, distributions: dict[str, list], pairs: list[dict]) -> None:
        """Iteration K's summary: scalar ``figures``, ``distributions`` (scores, lengths), sampled ``pairs``."""

    def log_losses(self, model: str, losses: list[dict]) -> None:
        """A model's training loss curve: ``[{"step", "loss"}]``."""

    def log_steps(self, *results: StageResult) -> None:
        """Lineage of the stages' ``results`` (steps of one job merged, see :func:`merge_steps`)."""

    def log_report(self, path: Path) -> None:
        """The finished HTML report."""

    @contextlib.contextmanager
    def training(self, model_rel: str) -> Iterator[dict]:
        """Around one training: yields the reporting arguments for :func:`humpback.training.train_sft`."""
        yield {}

    def finish(self, failed: bool = False) -> None:
        """Flush and close (idempotent)."""

    def where(self) -> Optional[str]:
        """Where a person watches this mirror (a URL, or a folder and how to open it), for the console."""
        return None


def open_tracker(cfg: TrackingConfig, store: Any, name: str, config: dict) -> Tracker:
    """The tracker of ``cfg.backend`` for the run folder of ``store``; ``config`` is the resolved config
    (as :func:`humpback.config.to_dict` gives it: secrets already removed)."""
    if cfg.backend == "wandb":
        from .wandb_run import WandbTracker

        return WandbTracker(cfg, store, name, config)
    if cfg.backend == "tensorboard":
        from .tensorboard_run import TensorBoardTracker

        return TensorBoardTracker(cfg, store, name, config)
    return Tracker()


def resolve_mode(mode: str, environ: Optional[dict] = None) -> str:
    """wandb mode for ``tracking.mode``: ``auto`` is WANDB_MODE when set, else online only with an API key."""
    env = os.environ if environ is None else environ
    if mode != "auto":
        return mode
    if env.get("WANDB_MODE") in ("online", "offline", "disabled"):
        return env["WANDB_MODE"]
    return "online" if env.get("WANDB_API_KEY") else "offline"


# --------------------------------------------------------------------------- shared bookkeeping


class _Logged:
    """What was already mirrored, per backend (in RUN_DIR/tracking.json), so a resumed run logs nothing twice."""

    def __init__(self, store: Any, backend: str):
        self.store = store
        self.path = store.path(layout.TRACKING)
        self.state: dict = json.loads(self.path.read_text()) if self.path.exists() else {}
        self.logged: dict = self.state.setdefault("logged", {}).setdefault(backend, {})

    def save(self) -> None:
        write_json(self.path, self.state)

    def digest(self, rels: Sequence[str], extra: Any = None) -> Optional[str]:
        """A digest of run-folder outputs by their recorded hashes (None: one is not recorded)."""
        try:
            return hash_json([[rel, self.store.output_hash(rel)] for rel in rels] + [extra])
        except StoreError:  # an output no finished stage recorded: nothing to log yet
            return None

    def once(self, key: str, digest: Optional[str]) -> bool:
        """True (and remembered by :meth:`done`) when ``key`` was not yet logged with ``digest``."""
        return digest is not None and self.logged.get(key) != digest

    def done(self, key: str, digest: str) -> None:
        self.logged[key] = digest
        self.save()


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _score_counts(scores: list) -> list[int]:
    counts = histogram(scores)
    return [counts[str(s)] for s in SCORES]


def merge_steps(results: Sequence[StageResult]) -> list[Step]:
    """The lineage steps of ``results``, those of one job merged into one step: its outputs are all
    of theirs, its inputs all of theirs that none of them wrote (score + select = one curate step
    from the candidates and the judge to the scores and the curated set)."""
    jobs: dict[str, tuple[list[str], list[str]]] = {}
    for step in (s for r in results for s in r.lineage):
        inputs, outputs = jobs.setdefault(step.job, ([], []))
        inputs += [i for i in step.inputs if i not in inputs]
        outputs += [o for o in step.outputs if o not in outputs]
    return [Step(job, tuple(i for i in inputs if i not in outputs), tuple(outputs))
            for job, (inputs, outputs) in jobs.items()]


_WANDB_KEPT_OUT = False


def keep_wandb_out() -> None:
    """Keep wandb out of this process while one ``humpback`` command runs with tracking other than wandb.

    transformers' ``is_wandb_available()`` imports wandb whenever it is installed, and TRL calls it at
    import time; a ``None`` entry in ``sys.modules`` makes it (and accelerate's check) answer no. An
    already imported wandb stays. :func:`let_wandb_in` undoes it when the command is over."""
    global _WANDB_KEPT_OUT
    if "wandb" not in sys.modules:
        sys.modules["wandb"] = None  # type: ignore[assignment]
        _WANDB_KEPT_OUT = True


def let_wandb_in() -> None:
    global _WANDB_KEPT_OUT
    if _WANDB_KEPT_OUT and "wandb" in sys.modules and sys.modules["wandb"] is None:
        del sys.modules["wandb"]
    _WANDB_KEPT_OUT = False
