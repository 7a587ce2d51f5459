"""The Humpback loop as a short list of stage calls.

    seed, segments -> backward model, M0 -> candidates -> for K in 1..N: scores (+ dev scores) -> A(K) -> M_K
    seed, seed tasks -> M0, tasks -> candidates -> ...            (augment.source: self_instruct)
    ... -> A(K) -> M_K (sft) -> its answers, judged -> pairs -> M_K by DPO     (train.objective: dpo)

with every model (the base model, M0, each M_K) evaluated as it is trained when ``eval.enabled``.

The run store decides whether each stage must run (see :mod:`humpback.store`); each stage's result
says what it read and wrote, which is the lineage the tracker records.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable, Iterable

from . import layout
from .config import RunConfig, to_dict
from .run import RunContext, Sources, config_text, guard_recipe
from .stages.augment import augment_stage
from .stages.curate import compare_stages, score_stage, select_stage
from .stages.evaluate import evaluate, preflight, prompts_stage
from .stages.finetune import backward_stage, dpo_stage, m0_stage, next_model_stage
from .stages.preferences import preferences_stage, responses_stage
from .stages.prepare import segments_stage, seed_stage
from .stages.self_instruct import instances_stage, seed_tasks_stage, tasks_stage
from .store import RunStore, StageResult, Worker, write_json, write_text
from .store.lock import RunLock, describe as describe_holder
from .store.manifest import unfinished_reason
from .tracking import Tracker, open_tracker
from .view.figures import iteration_stats
from .view.read import read_iteration, tracker_payload
from .view.report import write_report


def open_run(cfg: RunConfig, run_dir: Path, force: Iterable[str] = (), log: Callable[[str], None] = print,
             worker: Worker = Worker(), overwrite: bool = False, command: str = "") -> RunContext:
    """Open (or create) the run folder for ``cfg``: the main worker takes the run lock, refuses a
    folder holding another recipe's run unless ``overwrite``, reports stages a previous attempt left
    unfinished, and records this attempt."""
    if cfg.workers.engine == "ray":
        from .errors import ConfigError
        from .generation.remote import import_ray

        import_ray()  # without Ray: the one line that says what to install, before anything runs
        if worker.count > 1:
            raise ConfigError("workers.engine 'ray' runs the sharded stages from one driver on the cluster's "
                              "workers; leave out --num-workers and the SLURM array")
    lock = RunLock(run_dir).acquire() if worker.is_main else None
    try:
        if worker.is_main:
            if lock.stale:
                log(f"[run] taking over the lock a killed run left ({describe_holder(lock.stale)})")
            guard_recipe(Path(run_dir), cfg, overwrite, log)
        store = RunStore(run_dir, log=log, worker=worker, progress=cfg.tracking.progress)
        if cfg.workers.engine == "ray":
            store.concurrency = cfg.workers.count  # one shard in flight per Ray worker
        sources = Sources.resolve(cfg)
        if worker.is_main:
            for name, entry in store.unfinished():
                log(f"[{name}] {unfinished_reason(entry)} (attempt {entry.get('attempt', '?')}, started "
                    f"{entry.get('started')}); it runs again")
            store.begin_attempt(command)
            write_text(store.path(layout.CONFIG), config_text(cfg, sources))
        else:
            store.attempt = store.latest_attempt()
        # One mirror per run: the main worker's (the others' figures still reach metrics.jsonl).
        tracker = open_tracker(cfg.tracking, store, cfg.name, to_dict(cfg)) if worker.is_main else Tracker()
        if tracker.where():
            log(f"tracking: {tracker.where()}")  # the tracker's own console lines go to the run's log
    except BaseException:
        if lock is not None:
            lock.release()
        raise
    return RunContext(cfg=cfg, store=store, sources=sources, force=frozenset(force), log=log, tracker=tracker,
                      lock=lock)


def prepare(rt: RunContext) -> dict:
    """The data stages only: seed selection (and the held-out split), corpus cleaning (Self-Instruct: the
    seed tasks), the eval prompt set. Returns the funnel (Self-Instruct: the seed tasks' statistics)."""
    self_instruct = rt.cfg.augment.source == "self_instruct"
    results = seed_stage(rt), (seed_tasks_stage(rt) if self_instruct else segments_stage(rt))
    if rt.cfg.eval.enabled:
        results += (prompts_stage(rt),)
    rt.tracker.log_steps(*results)
    return results[1].stats if self_instruct else json.loads(rt.store.path(layout.FUNNEL).read_text())


def run(rt: RunContext) -> list[dict]:
    """Every stage, every iteration, mirrored to the tracker, then RUN_DIR/report.html. Returns one
    summary row per iteration."""
    try:
        summaries = _stages(rt)
        if rt.store.worker.is_main:
            rt.tracker.log_report(write_report(rt.store.root))
    except BaseException:
        rt.close(failed=True)
        raise
    rt.close()
    return summaries


def _stages(rt: RunContext) -> list[dict]:
    prepare(rt)
    evaluating = rt.cfg.eval.enabled
    if evaluating:
        preflight(rt)  # before any model loads
    if rt.cfg.augment.source == "self_instruct":  # the base model writes tasks, then their instances
        _track_model(rt, m0_stage(rt), layout.M0)
        if evaluating:
            evaluate(rt, [layout.BASE, "m0"])
        rt.tracker.log_steps(tasks_stage(rt), instances_stage(rt))
    else:
        _track_model(rt, backward_stage(rt), layout.BACKWARD)
        _track_model(rt, m0_stage(rt), layout.M0)
        if evaluating:
            evaluate(rt, [layout.BASE, "m0"])
        rt.tracker.log_steps(augment_stage(rt))
    summaries = []
    for k in range(1, rt.cfg.iterations + 1):
        scores = score_stage(rt, k) + compare_stages(rt, k)
        selected = select_stage(rt, k)
        model = next_model_stage(rt, k)
        rt.tracker.log_steps(*scores, selected)
        if rt.cfg.train.objective == "dpo":  # model K answers, a judge scores, best vs worst, DPO from model K
            _track_model(rt, model, layout.iteration(k).sft_model)
            rt.tracker.log_steps(responses_stage(rt, k), preferences_stage(rt, k))
            model = dpo_stage(rt, k)
        _track_model(rt, model, layout.iteration(k).model)
        if evaluating:
            evaluate(rt, [layout.iteration(k).dir])
        stats = iteration_stats(rt.store.manifest["stages"], k)
        if rt.store.worker.is_main:
            write_json(rt.store.path(layout.iteration(k).stats), stats)
            _track_iteration(rt, k)
        summaries.append(stats)
    return summaries


def _track_model(rt: RunContext, result: StageResult, model_rel: str) -> None:
    """A model's lineage (its mixture from its sources, the model from its mixture) and loss curve."""
    rt.tracker.log_steps(result)
    rt.tracker.log_losses(layout.model_label(model_rel), result.stats.get("losses") or [])


def _track_iteration(rt: RunContext, k: int) -> None:
    """Iteration K's summary row, histograms and sampled pairs in the tracker."""
    if rt.tracker.backend == "none":
        return
    payload = tracker_payload(read_iteration(rt.store.root, k), rt.cfg.tracking.sample_pairs, rt.cfg.random_seed)
    rt.tracker.log_iteration(k, *payload)
