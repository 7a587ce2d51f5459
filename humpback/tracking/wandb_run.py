"""The wandb mirror: one pipeline run per humpback run, step runs for lineage, artifacts."""

from __future__ import annotations

import contextlib
import os
import re
from pathlib import Path
from typing import Any, Iterator, Optional

from .. import layout
from ..config import TrackingConfig
from ..store import StageResult, Step
from . import SCORE_BINS, Tracker, _is_number, _Logged, _score_counts, merge_steps, resolve_mode


class WandbTracker(Tracker):
    backend = "wandb"

    def __init__(self, cfg: TrackingConfig, store: Any, name: str, config: dict):
        import wandb
        from wandb.sdk.lib.runid import generate_id

        self.wandb, self.cfg, self.store, self.name, self.config = wandb, cfg, store, name, config
        self.logged = _Logged(store, "wandb")
        state = self.logged.state.setdefault("wandb", {})
        if not state.get("run_id") or (state.get("project"), state.get("entity")) != (cfg.project, cfg.entity):
            # A new wandb run (first time, or another project): everything is logged afresh.
            state.update(run_id=generate_id(), project=cfg.project, entity=cfg.entity)
            state["group"] = f"{_slug(name)}-{state['run_id']}"
            self.logged.logged.clear()
        self.mode = resolve_mode(cfg.mode)
        self.common = {"project": cfg.project, "entity": cfg.entity, "dir": str(store.root), "mode": self.mode,
                       "group": state["group"]}
        self.run = wandb.init(id=state["run_id"], resume="allow", name=name, job_type="pipeline", tags=list(cfg.tags),
                              config=config, reinit="finish_previous",
                              settings=wandb.Settings(quiet=not cfg.progress), **self.common)
        state["mode"] = self.mode
        self.logged.save()
        self._defined: set[str] = set()
        self._finished = False

    def metric(self, stage: str, name: str, value: Any, iteration: Optional[int] = None) -> None:
        # The attempt travels with every figure, as in metrics.jsonl: a resumed run's rows can be told apart.
        row = {f"{stage}/{name}": value, "attempt": self.store.attempt}
        if iteration is not None:
            row["iteration"] = iteration
        self.run.log(row)

    def log_iteration(self, k: int, figures: dict, distributions: dict[str, list], pairs: list[dict]) -> None:
        digest = self.logged.digest([], [figures, distributions, pairs])
        if not self.logged.once(f"iteration:{k}", digest):
            return
        wandb = self.wandb
        row: dict = {f"iter/{n}": v for n, v in figures.items() if _is_number(v)}
        scores = distributions.get("scores", [])
        row["iter/score_histogram"] = wandb.Histogram(np_histogram=(_score_counts(scores), SCORE_BINS))
        for n, values in distributions.items():
            if n != "scores" and values:
                row[f"iter/{n}"] = wandb.Histogram(values)
        if pairs:
            columns = list(pairs[0])
            row["iter/pairs"] = wandb.Table(columns=columns, data=[[p[c] for c in columns] for p in pairs])
        self._define(row, "iteration")
        self.run.log({"iteration": k, **row})
        self.logged.done(f"iteration:{k}", digest)

    def log_losses(self, model: str, losses: list[dict]) -> None:
        digest = self.logged.digest([], losses)
        if not losses or not self.logged.once(f"losses:{model}", digest):
            return
        key = f"loss/{model}"
        self._define({key: None}, "loss/step")
        for point in losses:
            self.run.log({"loss/step": point["step"], key: point["loss"]})
        self.logged.done(f"losses:{model}", digest)

    def log_steps(self, *results: StageResult) -> None:
        if self.cfg.artifacts == "none":
            return
        for step in merge_steps(results):
            self._log_step(step)

    def _log_step(self, step: Step) -> None:
        name = f"{step.job}-{layout.artifact(step.outputs[-1])[0]}"
        digest = self.logged.digest(list(step.inputs) + list(step.outputs), self.cfg.artifacts)
        if not self.logged.once(f"step:{name}", digest):
            return
        wandb = self.wandb
        run = wandb.init(job_type=step.job, name=f"{self.name}/{name}", reinit="create_new", config={"step": name},
                         settings=wandb.Settings(silent=True, console="off", x_disable_stats=True,
                                                 x_disable_machine_info=True, save_code=False, disable_git=True),
                         **self.common)
        try:
            for rel in step.inputs:
                _use_artifact(run, self._artifact(rel))
            for rel in step.outputs:
                run.log_artifact(self._artifact(rel))
        finally:
            run.finish()
        self.logged.done(f"step:{name}", digest)

    def log_report(self, path: Path) -> None:
        self.run.log({"report": self.wandb.Html(Path(path).read_text())})

    @contextlib.contextmanager
    def training(self, model_rel: str) -> Iterator[dict]:
        """TRL's own reporting goes to this run when training runs in this process (the Trainer's
        WandbCallback logs to the active run); under ``accelerate launch`` the worker's callback starts
        a run of its own, placed in this run's group by the environment."""
        run_name = f"{self.name}/{model_rel}"
        env = {"WANDB_PROJECT": self.cfg.project, "WANDB_ENTITY": self.cfg.entity,
               "WANDB_RUN_GROUP": self.common["group"],
               "WANDB_JOB_TYPE": "train", "WANDB_DIR": str(self.store.root), "WANDB_MODE": self.mode,
               "WANDB_NAME": run_name}
        try:
            with _environ(env):
                yield {"report_to": "wandb", "run_name": run_name}
        finally:
            # The callback adds the TrainingArguments to the config; the recipe's keys stay on top.
            self.run.config.update(self.config, allow_val_change=True)

    def where(self) -> Optional[str]:
        url = getattr(self.run, "url", None) if self.mode == "online" else None
        return f"wandb run {url}" if url else \
            f"wandb {self.mode} run in {self.store.path(layout.WANDB)} (wandb sync its offline-run-* folder)"

    def finish(self, failed: bool = False) -> None:
        if not self._finished:
            self._finished = True
            self.run.finish(exit_code=1 if failed else 0)

    # ------------------------------------------------------------------- helpers

    def _define(self, row: dict, step_metric: str) -> None:
        """Plot per-iteration keys against the iteration, loss curves against their step."""
        if step_metric not in self._defined:
            self.run.define_metric(step_metric)
            self._defined.add(step_metric)
        for key in row:
            if key not in self._defined:
                self.run.define_metric(key, step_metric=step_metric)
                self._defined.add(key)

    def _artifact(self, rel: str):
        """The artifact of a run-folder path. The same content gives the same digest, so an input
        declared by a later step resolves to the version its producer logged."""
        path = self.store.path(rel)
        name, kind = layout.artifact(rel)
        art = self.wandb.Artifact(f"{_slug(self.name)}-{name}", type=kind,
                                  metadata={"path": rel, "sha256": self.store.output_hash(rel)})
        if self.cfg.artifacts == "reference":
            art.add_reference(path.resolve().as_uri())
        elif path.is_dir():
            art.add_dir(str(path))
        else:
            art.add_file(str(path))
        return art


def _use_artifact(run: Any, artifact: Any) -> None:
    """Declare ``artifact`` an input of ``run``. ``use_artifact`` refuses offline runs; offline, the
    artifact is recorded the way ``use_artifact`` records a new artifact (logged with
    ``use_after_commit``), which ``wandb sync`` turns into a use of the committed version."""
    if run.offline:
        run._log_artifact(artifact, is_user_created=True, use_after_commit=True)
    else:
        run.use_artifact(artifact)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-") or "run"


@contextlib.contextmanager
def _environ(values: dict[str, Optional[str]]) -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in values}
    for k, v in values.items():
        if v is not None:
            os.environ[k] = v
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


