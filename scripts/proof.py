"""The proof that the loop works, in the controlled world where the right answer is known.

    python scripts/proof.py --output runs/proof    # about 5.5 minutes on 2 cores, 2 of them the base model's build

There is no smaller variant: a quarter of the pool took as long (training steps dominate) and showed
none of the orderings (its backward model's instructions were too rarely right for curation to pay).

Arms, side by side on one world (the same seed, pool, base model and eval prompts):

- ``seed only``: M0, trained on the seed pairs alone;
- ``uncurated``: M1 trained on seed + every backtranslated pair of the pool;
- ``verifier``: M1 trained on seed + the pairs the world's verifier accepts (the best curation can do);
- ``self-curated``: the recipe ``recipes/world-cpu.yaml`` itself: M0 scores the pool by its own
  likelihood, M1 is trained on the best part, M1 re-scores the same pool, M2 on its best part.

The self-curated run is a normal ``humpback run``; the other arms are replays of its iteration 1 (the
same candidates, re-scored or re-selected), so no arm differs from another in anything but curation.
Every model's held-out exact match (with its 95% interval) comes from the run's own eval stage; the
curation's precision and recall are measured twice: on the labelled dev set (the run's own figures)
and on the candidate pool itself (the world's verifier labels every backtranslated pair).

Writes ``proof.json`` and ``proof.md`` into ``--output`` (the run folders live beside them) and
prints the table. Timings: wall clock and CPU seconds (this process and its children), per arm.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from humpback import layout  # noqa: E402
from humpback.config import load_config  # noqa: E402
from humpback.eval_command import evaluate_run  # noqa: E402
from humpback.judges.health import selection_quality  # noqa: E402
from humpback.loop import open_run, run  # noqa: E402
from humpback.replay import replay  # noqa: E402
from humpback.store import read_table, write_json, write_text  # noqa: E402
from humpback.worlds import VERIFIER, materialize_world  # noqa: E402
from humpback.worlds.tasks import verify  # noqa: E402

RECIPE = ROOT / "recipes" / "world-cpu.yaml"
ARMS = {  # replays of the self-curated run's iteration 1
    "uncurated": ["curate.select=top_fraction", "curate.top_fraction=1.0"],
    "verifier": ["curate.judge_kind=verifier", f"curate.verifier={VERIFIER}", "curate.select=threshold",
                 "curate.threshold=1"],
}


def cpu_seconds() -> float:
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


class Clock:
    def __init__(self) -> None:
        self.marks: dict[str, dict] = {}

    def time(self, name: str, fn):
        wall, cpu = time.time(), cpu_seconds()
        out = fn()
        self.marks[name] = {"wall_s": round(time.time() - wall, 1), "cpu_s": round(cpu_seconds() - cpu, 1)}
        print(f"[proof] {name}: {self.marks[name]['wall_s']} s wall, {self.marks[name]['cpu_s']} s CPU", flush=True)
        return out


def pool_quality(run_dir: Path, k: int) -> dict:
    """Precision and recall of iteration K's curated set against the world's verifier, over every
    backtranslated candidate of the pool (which the pipeline itself never labels)."""
    candidates = read_table(run_dir / layout.CANDIDATES)
    kept = {c["candidate_id"] for c in read_table(run_dir / layout.iteration(k).curated)}
    good = [verify(c) == 1.0 for c in candidates]
    return selection_quality(good, [c["candidate_id"] in kept for c in candidates])


def model_row(arm: str, iteration: int, run_dir: Path, label: str) -> dict:
    """One model's line: its exact match from the run's eval stage (``stats.json`` of its evaluation),
    the curation that made it, on the pool and on the dev set."""
    em = json.loads((run_dir / layout.evaluation(label).stats).read_text())
    row = {"arm": arm, "iteration": iteration, "model": label, "exact_match": em["exact_match"],
           "exact_match_ci": em["exact_match_ci"], "exact_match_n": em["exact_match_n"],
           "precision": None, "recall": None, "dev_precision": None, "dev_recall": None, "curated": None}
    if iteration > 0:
        stats = json.loads((run_dir / layout.iteration(iteration).stats).read_text())
        pool = pool_quality(run_dir, iteration)
        row.update(precision=pool["precision"], recall=pool["recall"], curated=stats.get("curated"),
                   dev_precision=stats.get("dev/precision"), dev_recall=stats.get("dev/recall"),
                   judge_warnings=stats.get("judge_warnings") or [])
    return row


def markdown(rows: list[dict], timings: dict, meta: dict) -> str:
    def f(x, digits=3):
        return "-" if x is None else f"{x:.{digits}f}"

    lines = ["# The loop works: a controlled world", "",
             f"World: {meta['world']}. Base model: {meta['base_model']}. Command: `{meta['command']}`.", "",
             "| arm | model | curated | precision (pool) | recall (pool) | precision (dev) | recall (dev) "
             "| exact match | 95% interval |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        ci = r["exact_match_ci"]
        lines.append(f"| {r['arm']} | {r['model']} | {r['curated'] if r['curated'] is not None else '-'} | "
                     f"{f(r['precision'])} | {f(r['recall'])} | {f(r['dev_precision'])} | {f(r['dev_recall'])} | "
                     f"{f(r['exact_match'])} | {f(ci[0])}-{f(ci[1])} |")
    lines += ["", "Targets: verifier-curated exact match >= 0.8; uncurated at least 0.3 below it; self-curated "
              "M2 > M1 > M0 with precision rising.", "", "| step | wall s | CPU s |", "|---|---|---|"]
    lines += [f"| {name} | {t['wall_s']} | {t['cpu_s']} |" for name, t in timings.items()]
    return "\n".join(lines) + "\n"


def check_targets(rows: list[dict]) -> dict:
    by = {(r["arm"], r["model"]): r for r in rows}
    m0, m1, m2 = (by[("self-curated", m)]["exact_match"] for m in ("m0", "iter_1", "iter_2"))
    verified, uncurated = by[("verifier", "iter_1")]["exact_match"], by[("uncurated", "iter_1")]["exact_match"]
    p1, p2 = by[("self-curated", "iter_1")]["precision"], by[("self-curated", "iter_2")]["precision"]
    return {"verifier_at_least_0.8": verified >= 0.8, "uncurated_0.3_below_verifier": uncurated <= verified - 0.3,
            "self_curated_m2_gt_m1_gt_m0": m2 > m1 > m0, "precision_rises": p2 > p1}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--output", required=True, type=Path, help="folder for proof.json, proof.md and the run folders")
    args = p.parse_args(argv)
    out: Path = args.output
    out.mkdir(parents=True, exist_ok=True)
    clock = Clock()
    started, cpu0 = time.time(), cpu_seconds()
    overrides = ["tracking.progress=false"]
    world = "the default world (builtin:world-*)"
    clock.time("world (build or cache)", lambda: materialize_world())
    log = lambda line: None  # noqa: E731 - the stages' lines; the proof prints its own
    cfg = load_config(RECIPE, overrides)
    self_dir = out / "self-curated"
    clock.time("self-curated run (backward, M0, augment, M1, M2, evals)",
               lambda: run(open_run(cfg, self_dir, log=log)))
    for arm, extra in ARMS.items():
        def replayed(extra=extra, arm=arm):
            replay(self_dir, out / arm, 1, overrides=overrides + extra, log=log)
            evaluate_run(out / arm, iteration=1, log=log)  # the same eval stage, on the replay's model

        clock.time(f"{arm} arm (replay of iteration 1, eval)", replayed)
    rows = [model_row("seed only", 0, self_dir, "m0"),
            model_row("uncurated", 1, out / "uncurated", "iter_1"),
            model_row("verifier", 1, out / "verifier", "iter_1"),
            model_row("self-curated", 1, self_dir, "iter_1"),
            model_row("self-curated", 2, self_dir, "iter_2")]
    rows.insert(3, {**rows[0], "arm": "self-curated"})  # M0 is the self-curated arm's start
    total = {"wall_s": round(time.time() - started, 1), "cpu_s": round(cpu_seconds() - cpu0, 1)}
    meta = {"world": world, "base_model": cfg.base_model, "command": " ".join(["python scripts/proof.py", *sys.argv[1:]]),
            "threads": os.environ.get("OMP_NUM_THREADS"), "cpus": os.cpu_count()}
    targets = check_targets(rows)
    result = {"rows": rows, "targets": targets, "timings": {**clock.marks, "total": total}, **meta}
    write_json(out / "proof.json", result)
    text = markdown(rows, {**clock.marks, "total": total}, meta)
    write_text(out / "proof.md", text)
    print(text)
    print("targets:", json.dumps(targets))
    return 0 if all(targets.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
