"""What a run folder says about each iteration: funnel, scores, curated set, losses, scored pairs.

Read only from the run folder (config.yaml, manifest.json, metrics.jsonl, data/funnel.json, the Parquet
tables); a run still in progress reads as far as it got, and what is missing is listed, never an
error. Counts and rates come from the stages' statistics (:mod:`.figures`); the tables give the
distributions and the sampled pairs. The report, ``humpback inspect`` and the trackers'
per-iteration rows (:func:`tracker_payload`) all take their figures from here.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from .. import layout
from ..store import read_table
from .figures import iteration_figures, judge_records


@dataclass
class IterationView:
    k: int
    figures: dict = field(default_factory=dict)  # flat numbers: the keys logged per iteration
    scores: list = field(default_factory=list)  # one per scored candidate (None: parse failure)
    values: list = field(default_factory=list)  # the judge's value per scored candidate (None: failure)
    lengths: dict = field(default_factory=dict)  # instruction_chars / output_chars of the curated set
    losses: list = field(default_factory=list)  # [{"step", "loss"}] of model K
    dpo_curve: list = field(default_factory=list)  # train.objective dpo: [{"step", "loss", "margin", "accuracy", ...}]
    pairs: list = field(default_factory=list)  # scored candidates joined with their score and verdict
    principles: list = field(default_factory=list)  # rubric judge: per principle, what it said and rejected
    judges: list = field(default_factory=list)  # the selecting judge and each compared one (figures.judge_records)
    missing: list = field(default_factory=list)


@dataclass
class RunView:
    run_dir: Path
    name: str
    config: dict
    funnel: Optional[dict]
    candidates: Optional[list]
    stages: dict  # manifest stages
    metrics: list
    seed_losses: dict  # model -> [{"step", "loss"}] for backward and m0
    iterations: list
    missing: list
    evals: list = field(default_factory=list)  # each evaluated model's eval stats.json (base, m0, iter_K)


def read_run(run_dir: Path) -> RunView:
    run_dir = Path(run_dir)
    missing: list[str] = []
    config = _yaml(run_dir / layout.CONFIG) or {}
    manifest = _json(run_dir / layout.MANIFEST) or {}
    stages = manifest.get("stages", {})
    funnel = _json(run_dir / layout.FUNNEL)
    if funnel is None and (config.get("augment") or {}).get("source") != "self_instruct":  # it reads no corpus
        missing.append(f"{layout.FUNNEL} (the data stages have not finished)")
    candidates = table(run_dir, layout.CANDIDATES)
    if candidates is None:
        missing.append(f"{layout.CANDIDATES} (augmentation has not finished)")
    metrics = []
    if (run_dir / layout.METRICS).exists():
        for line in (run_dir / layout.METRICS).read_text().splitlines():
            try:
                metrics.append(json.loads(line))
            except json.JSONDecodeError:
                continue  # a line cut short by a crash
    metrics = current_metrics(metrics)
    seed_losses = {layout.model_label(rel): stages.get(name, {}).get("stats", {}).get("losses") or []
                   for name, rel in (("backward", layout.BACKWARD), ("m0", layout.M0))}
    planned = int(config.get("iterations") or 0)
    ks = sorted(set(range(1, planned + 1)) | set(layout.iterations_on_disk(run_dir)))
    iterations = [read_iteration(run_dir, k, candidates, stages) for k in ks]
    from .scoreboard import read_evals

    return RunView(run_dir, config.get("name") or run_dir.name, config, funnel, candidates, stages, metrics,
                   seed_losses, iterations, missing, read_evals(run_dir))


def read_iteration(run_dir: Path, k: int, candidates: Optional[list] = None,
                   stages: Optional[dict] = None) -> IterationView:
    """Iteration K's figures, scores, curated lengths, losses and pairs, from whatever is on disk."""
    run_dir = Path(run_dir)
    if stages is None:
        stages = (_json(run_dir / layout.MANIFEST) or {}).get("stages", {})
    if candidates is None:
        candidates = table(run_dir, layout.CANDIDATES)
    paths = layout.iteration(k)
    it = IterationView(k)
    scores = table(run_dir, paths.scores)
    curated = table(run_dir, paths.curated)
    train = stages.get(paths.stage("train"), {})
    train = train.get("stats") if train.get("status") == "done" else None
    for what, value in (("scores", scores), ("curated set", curated), ("model", train)):
        if value is None:
            it.missing.append(f"{paths.dir} {what}")
    it.figures = iteration_figures(stages, k, len(candidates) if candidates is not None else None)
    it.judges = judge_records(stages, k)
    if scores is not None:
        it.scores = [s["score"] if s.get("parse_status") == "ok" else None for s in scores]
        it.values = [s.get("value") if s.get("parse_status") == "ok" else None for s in scores]
    if curated is not None:
        it.lengths = {"instruction_chars": [len(c["instruction"]) for c in curated],
                      "output_chars": [len(c["output"]) for c in curated]}
    if train is not None:
        it.losses = train.get("losses") or []
    dpo = stages.get(paths.stage("dpo"), {})
    it.dpo_curve = (dpo.get("stats") or {}).get("curve") or [] if dpo.get("status") == "done" else []
    rubric = (stages.get(paths.stage("score"), {}).get("stats") or {}).get("rubric")
    if rubric and scores is not None:
        from ..judges.rubric import principle_stats

        kept = {c["candidate_id"] for c in curated} if curated is not None else None
        it.principles = principle_stats(rubric["principles"], scores, kept)
    if scores is not None and candidates is not None:
        by_id = {c["candidate_id"]: c for c in candidates}
        kept = {c["candidate_id"] for c in curated} if curated is not None else set()
        for s in scores:
            c = by_id.get(s["candidate_id"], {})
            it.pairs.append({"candidate_id": s["candidate_id"], "accepted": s["candidate_id"] in kept,
                             "score": s.get("score"), "expected_score": s.get("expected_score"),
                             "value": s.get("value"),
                             "parse_status": s.get("parse_status"), "instruction": c.get("instruction", ""),
                             "output": c.get("output", ""), "judge": s.get("raw", ""),
                             # what the report's per-judge columns read (:mod:`.judged`); not sent to trackers
                             "judge_kind": s.get("judge_kind"), "mode": s.get("mode"), "probs": s.get("probs"),
                             "principles": s.get("principles")})
    return it


def current_metrics(rows: list[dict]) -> list[dict]:
    """The rows of metrics.jsonl that describe the run as it now is: for each (stage, name, iteration),
    only those of the latest attempt that logged it (a stage re-run by a resumed attempt replaces its
    earlier figures; a stage it skipped keeps them)."""
    key = lambda r: (r.get("stage"), r.get("name"), r.get("iteration"))  # noqa: E731
    latest: dict = {}
    for r in rows:
        latest[key(r)] = max(latest.get(key(r), 0), r.get("attempt") or 0)
    return [r for r in rows if (r.get("attempt") or 0) == latest[key(r)]]


def sample_pairs(pairs: list[dict], n: int, seed: int = 0, accepted: Optional[bool] = None,
                 min_score: Optional[float] = None) -> list[dict]:
    """Up to ``n`` pairs drawn at random (reproducibly), optionally only accepted/rejected ones and
    only those scoring at least ``min_score``; in candidate order."""
    chosen = [i for i, p in enumerate(pairs)
              if (accepted is None or p["accepted"] == accepted)
              and (min_score is None or (p["score"] is not None and p["score"] >= min_score))]
    if len(chosen) > n:
        chosen = sorted(random.Random(seed).sample(chosen, n))
    return [pairs[i] for i in chosen]


# The columns of the trackers' table of sampled pairs.
TRACKER_PAIR_KEYS = ("candidate_id", "accepted", "score", "expected_score", "value", "parse_status", "instruction",
                     "output", "judge")


def tracker_payload(it: IterationView, n_pairs: int, seed: int = 0) -> tuple[dict, dict, list]:
    """(figures, distributions, sampled pairs) of iteration K, as :meth:`Tracker.log_iteration` takes them."""
    half = max(1, n_pairs // 2)
    pairs = sample_pairs(it.pairs, half, seed, accepted=True) + sample_pairs(it.pairs, half, seed, accepted=False)
    pairs = [{k: p[k] for k in TRACKER_PAIR_KEYS} for p in pairs]
    return dict(it.figures), {"scores": list(it.scores), **it.lengths}, pairs


def table(run_dir: Path, rel: str) -> Optional[list[dict]]:
    """Rows of a run-folder table written as one file or as a folder of shards; None when absent."""
    path = Path(run_dir) / rel
    if path.is_file() or (path.is_dir() and any(path.glob("*.parquet"))):
        return read_table(path)
    return None


def _json(path: Path) -> Optional[dict]:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def _yaml(path: Path) -> Optional[dict]:
    import yaml

    try:
        return yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError):
        return None
