"""The proof that the loop works, in the controlled world where the right answer is known, over seeds.

    python scripts/proof.py --output runs/proof               # 3 worlds (seeds 0, 1, 2)
    python scripts/proof.py --seeds 1 --output runs/proof     # the default world alone (about 5.5 minutes on 2 cores)
    python scripts/proof.py --output runs/noisier --world bad_fraction=0.7 curate.top_fraction=0.25
                            # worlds with other WorldSpec fields, recipe overrides for every arm (their base
                            # models are the default worlds' where the pretraining text is the same)

There is no smaller variant: a quarter of the pool took as long (training steps dominate) and showed
none of the orderings (its backward model's instructions were too rarely right for curation to pay).

Arms, side by side on each world (the same pool, base model and eval prompts):

- ``seed only``: M0, trained on the seed pairs alone;
- ``uncurated``: M1 trained on seed + every backtranslated pair of the pool;
- ``verifier``: M1 trained on seed + the pairs the world's verifier accepts (the best curation can do);
- ``M1 + DPO``: M1's own answers to iteration 1's curated instructions, judged by the world's verifier,
  paired best against worst, and DPO from M1 (``scripts/world_dpo.py``'s arm, the RLAIF step of issue 22).
- ``self-curated``: the recipe ``recipes/world-cpu.yaml`` itself: M0 scores the pool by its own
  likelihood, M1 is trained on the best part, M1 re-scores the same pool, M2 on its best part.

The self-curated run is a normal ``humpback run``; the other arms are replays of its iteration 1 (the
same candidates, re-scored or re-selected), so no arm differs from another in anything but curation.
Each seed S is a world of its own (``builtin:world-*@S``: its pool, seed set, eval prompts, dev set and
a base model pretrained from weights initialised with S); the recipe's training seed stays. Every model's
held-out exact match comes from the run's own eval stage; curation's precision and recall are measured on
the labelled dev set (the run's own figures) and on the candidate pool (the world's verifier labels every
backtranslated pair).

Across seeds: per arm and model the mean exact match with a Student t 95% interval over the seeds' figures,
and the paired differences the claims rest on (M1 - M0, M2 - M1, verifier - uncurated, self-curated M1 -
uncurated), computed on the paired per-prompt outcomes pooled over seeds (a bootstrap that resamples
prompts within each seed; :mod:`humpback.evaluation.replicates`).

Writes ``proof.json`` (every seed's rows, the summary, the targets, the machine: CPU, library versions,
torch's threads), ``proof.md`` and ``proof.svg`` (the arms with their intervals) into ``--output`` (the
run folders live beside them, one folder per seed) and prints the table.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from humpback import layout  # noqa: E402
from humpback.config import load_config  # noqa: E402
from humpback.eval_command import evaluate_run  # noqa: E402
from humpback.evaluation.replicates import mean_interval, paired_difference  # noqa: E402
from humpback.judges.health import selection_quality  # noqa: E402
from humpback.loop import open_run, run  # noqa: E402
from humpback.replay import replay  # noqa: E402
from humpback.store import read_table, write_json, write_text  # noqa: E402
from humpback.worlds import VERIFIER, WorldSpec, materialize_world  # noqa: E402
from humpback.worlds.tasks import verify  # noqa: E402
from world_dpo import dpo_arm  # noqa: E402  (scripts/ is on sys.path when this script runs)

RECIPE = ROOT / "recipes" / "world-cpu.yaml"
ARMS = {  # replays of the self-curated run's iteration 1
    "uncurated": ["curate.select=top_fraction", "curate.top_fraction=1.0"],
    "verifier": ["curate.judge_kind=verifier", f"curate.verifier={VERIFIER}", "curate.select=threshold",
                 "curate.threshold=1"],
}
DPO_JUDGE = "verifier"  # the DPO arm: M1's own answers judged by the world's verifier (scripts/world_dpo.py)
MODELS = (("seed only", 0, "self-curated", "m0"), ("uncurated", 1, "uncurated", "iter_1"),
          ("verifier", 1, "verifier", "iter_1"), ("self-curated", 0, "self-curated", "m0"),
          ("self-curated", 1, "self-curated", "iter_1"), ("self-curated", 2, "self-curated", "iter_2"),
          ("M1 + DPO", 1, "dpo", "iter_1"))
# (name, model A, model B): the paired differences the claims rest on, A - B
DIFFERENCES = (("M1 - M0 (self-curated)", ("self-curated", "iter_1"), ("self-curated", "m0")),
               ("M2 - M1 (self-curated)", ("self-curated", "iter_2"), ("self-curated", "iter_1")),
               ("verifier - uncurated", ("verifier", "iter_1"), ("uncurated", "iter_1")),
               ("self-curated M1 - uncurated", ("self-curated", "iter_1"), ("uncurated", "iter_1")),
               ("M1 + DPO - M1", ("M1 + DPO", "iter_1"), ("self-curated", "iter_1")))


def world_overrides(seed: int, changes: dict | None = None) -> list[str]:
    """The recipe's world assets as the world of ``seed`` (``builtin:world-*@S``), or, with ``changes``
    (WorldSpec fields), the files of that world built with those fields changed."""
    if changes:
        w = materialize_world(WorldSpec(**{**changes, "random_seed": seed}))
        return [f"base_model={w.base}", f"seed.path={w.seed}", f"corpus.path={w.pool}", f"curate.dev_set={w.dev}",
                f"eval.prompts={w.eval}"]
    at = lambda name: f"builtin:{name}@{seed}"  # noqa: E731
    return [f"base_model={at('world-base')}", f"seed.path={at('world-seed')}", f"corpus.path={at('world-pool')}",
            f"curate.dev_set={at('world-dev')}", f"eval.prompts={at('world-eval')}"]


def world_changes(pairs: list[str]) -> dict:
    """``--world FIELD=VALUE`` options as WorldSpec fields of their own types; a ValueError names the bad one."""
    import dataclasses

    fields = {f.name: f for f in dataclasses.fields(WorldSpec) if f.name != "random_seed"}
    changes = {}
    for pair in pairs:
        name, eq, value = pair.partition("=")
        if not eq or name not in fields:
            raise ValueError(f"--world {pair!r}: expected FIELD=VALUE with FIELD one of {', '.join(fields)}")
        kind = type(getattr(WorldSpec(), name))
        try:
            changes[name] = kind(value)
        except ValueError:
            raise ValueError(f"--world {pair!r}: {name} takes a {kind.__name__}, got {value!r}") from None
    WorldSpec(**changes)  # its own range checks
    return changes


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


def outcomes(run_dir: Path, label: str) -> list[bool]:
    """The model's exact match on each held-out prompt, in prompt order (the pairing of two models)."""
    rows = sorted(read_table(run_dir / layout.evaluation(label).answers), key=lambda r: r["prompt_id"])
    return [bool(r["exact_match"]) for r in rows if r["exact_match"] is not None]  # prompts with an answer key


def model_row(seed: int, arm: str, iteration: int, run_dir: Path, label: str, curation: Path | None = None) -> dict:
    """One model's line: its exact match from the run's eval stage (``stats.json`` of its evaluation),
    the curation that made it, on the pool and on the dev set (read from ``curation`` where that is
    another run: the DPO arm's SFT data is the self-curated run's iteration 1)."""
    em = json.loads((run_dir / layout.evaluation(label).stats).read_text())
    row = {"seed": seed, "arm": arm, "iteration": iteration, "model": label, "exact_match": em["exact_match"],
           "exact_match_ci": em["exact_match_ci"], "exact_match_n": em["exact_match_n"],
           "precision": None, "recall": None, "dev_precision": None, "dev_recall": None, "curated": None}
    if iteration > 0:
        stats = json.loads(((curation or run_dir) / layout.iteration(iteration).stats).read_text())
        pool = pool_quality(curation or run_dir, iteration)
        row.update(precision=pool["precision"], recall=pool["recall"], curated=stats.get("curated"),
                   dev_precision=stats.get("dev/precision"), dev_recall=stats.get("dev/recall"),
                   judge_warnings=stats.get("judge_warnings") or [])
    return row


def run_seed(seed: int, out: Path, clock: Clock, changes: dict | None = None, extra: tuple = ()) -> dict:
    """Every arm on the world of ``seed`` (with ``changes`` to its WorldSpec; ``extra`` recipe overrides
    for every arm): its rows and each model's per-prompt outcomes."""
    log = lambda line: None  # noqa: E731 - the stages' lines; the proof prints its own
    clock.time(f"seed {seed}: world (build or cache)",
               lambda: materialize_world(WorldSpec(**{**(changes or {}), "random_seed": seed})))
    overrides = ["tracking.progress=false", *world_overrides(seed, changes), *extra]
    dirs = {"self-curated": out / "self-curated", "dpo": out / "dpo"} | {arm: out / arm for arm in ARMS}
    cfg = load_config(RECIPE, overrides)
    clock.time(f"seed {seed}: self-curated run (backward, M0, augment, M1, M2, evals)",
               lambda: run(open_run(cfg, dirs["self-curated"], log=log)))
    for arm, extra in ARMS.items():
        def replayed(extra=extra, arm=arm):
            replay(dirs["self-curated"], dirs[arm], 1, overrides=overrides + extra, log=log)
            evaluate_run(dirs[arm], iteration=1, log=log)  # the same eval stage, on the replay's model

        clock.time(f"seed {seed}: {arm} arm (replay of iteration 1, eval)", replayed)
    clock.time(f"seed {seed}: DPO arm (M1's answers judged by the {DPO_JUDGE}, DPO from M1, eval)",
               lambda: dpo_arm(dirs["self-curated"], out / "dpo", DPO_JUDGE, log=log))
    rows = [model_row(seed, arm, k, dirs[folder], label, dirs["self-curated"] if folder == "dpo" else None)
            for arm, k, folder, label in MODELS]
    return {"rows": rows, "outcomes": {f"{arm}/{label}": outcomes(dirs[folder], label)
                                       for arm, _, folder, label in MODELS}}


def summarize(seeds: dict[int, dict]) -> dict:
    """Across seeds (``{seed: run_seed's result}``): each model's mean exact match with its t interval
    over seeds, the paired differences pooled over seeds, and the targets."""
    models = []
    for arm, k, _, label in MODELS:
        per_seed = [next(r for r in s["rows"] if r["arm"] == arm and r["model"] == label) for s in seeds.values()]
        models.append({"arm": arm, "model": label, **mean_interval([r["exact_match"] for r in per_seed]),
                       "per_seed": {r["seed"]: r["exact_match"] for r in per_seed},
                       "precision": mean_interval([r["precision"] for r in per_seed if r["precision"] is not None])})
    differences = []
    for name, (arm_a, a), (arm_b, b) in DIFFERENCES:
        xa, xb, strata = [], [], []
        for seed, s in seeds.items():
            oa, ob = s["outcomes"][f"{arm_a}/{a}"], s["outcomes"][f"{arm_b}/{b}"]
            xa += oa
            xb += ob
            strata += [seed] * len(oa)
        d = paired_difference(xa, xb, strata)
        differences.append({"name": name, "a": f"{arm_a}/{a}", "b": f"{arm_b}/{b}", **d,
                            "across_seeds": mean_interval(list(d["per_stratum"].values()))})
    return {"seeds": list(seeds), "models": models, "differences": differences, "targets": targets(seeds, differences)}


def targets(seeds: dict[int, dict], differences: list[dict]) -> dict:
    """issue 20's targets: verifier-curated >= 0.8 and uncurated at least 0.3 below it on every seed;
    self-curated M1 > M0 with the paired interval above 0; precision rising from M0's judge to M1's on
    every seed (M2 - M1 is reported, not a target)."""
    checks = {"verifier_at_least_0.8_every_seed": True, "uncurated_0.3_below_verifier_every_seed": True,
              "precision_rises_every_seed": True}
    for s in seeds.values():
        by = {(r["arm"], r["model"]): r for r in s["rows"]}
        verified, uncurated = by[("verifier", "iter_1")]["exact_match"], by[("uncurated", "iter_1")]["exact_match"]
        checks["verifier_at_least_0.8_every_seed"] &= verified >= 0.8
        checks["uncurated_0.3_below_verifier_every_seed"] &= uncurated <= verified - 0.3
        checks["precision_rises_every_seed"] &= \
            by[("self-curated", "iter_2")]["precision"] > by[("self-curated", "iter_1")]["precision"]
    m1_m0 = next(d for d in differences if d["name"].startswith("M1 - M0"))
    checks["m1_beats_m0_paired_interval_above_0"] = m1_m0["ci"][0] is not None and m1_m0["ci"][0] > 0
    return checks


def _f(x, digits=3) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def _ci(ci) -> str:
    return "-" if ci[0] is None else f"[{_f(ci[0])}, {_f(ci[1])}]"


def markdown(summary: dict, seeds: dict[int, dict], timings: dict, meta: dict) -> str:
    n = len(summary["seeds"])
    lines = ["# The loop works: a controlled world, over seeds", "",
             f"Worlds: seeds {', '.join(map(str, summary['seeds']))} (`builtin:world-*@S`"
             + "".join(f", {k}={v}" for k, v in meta.get("world_changes", {}).items()) + "). "
             f"Command: `{meta['command']}`.",
             f"Machine: {meta['machine']['cpu']} ({meta['machine']['cpu_count']} cores), torch "
             f"{meta['machine']['torch']} with {meta['torch_threads']} threads, "
             f"transformers {meta['machine']['transformers']}.",
             "", "![arms](proof.svg)", "", f"## Exact match, mean over {n} seeds", "",
             "| arm | model | mean | 95% interval (t, over seeds) | per seed | pool precision (mean) |",
             "|---|---|---:|---|---|---:|"]
    for m in summary["models"]:
        per = ", ".join(_f(v) for v in m["per_seed"].values())
        lines.append(f"| {m['arm']} | {m['model']} | {_f(m['mean'])} | {_ci(m['ci'])} | {per} "
                     f"| {_f(m['precision']['mean'])} |")
    lines += ["", "## Paired differences (per-prompt outcomes pooled over seeds)", "",
              "| difference | mean | 95% interval (paired bootstrap, prompts within seeds) | per seed "
              "| 95% interval (t, over seeds) |", "|---|---:|---|---|---|"]
    for d in summary["differences"]:
        per = ", ".join(_f(v) for v in d["per_stratum"].values())
        lines.append(f"| {d['name']} | {_f(d['difference'])} | {_ci(d['ci'])} | {per} "
                     f"| {_ci(d['across_seeds']['ci'])} |")
    lines += ["", "Targets: " + "; ".join(f"{k}: {'yes' if v else 'NO'}" for k, v in summary["targets"].items()) + ".",
              "", "## Every seed", "",
              "| seed | arm | model | curated | precision (pool) | recall (pool) | precision (dev) | recall (dev) "
              "| exact match | 95% interval |", "|---|---|---|---|---|---|---|---|---|---|"]
    for s in seeds.values():
        for r in s["rows"]:
            curated = r["curated"] if r["curated"] is not None else "-"
            lines.append(f"| {r['seed']} | {r['arm']} | {r['model']} | {curated} | "
                         f"{_f(r['precision'])} | {_f(r['recall'])} | {_f(r['dev_precision'])} | "
                         f"{_f(r['dev_recall'])} | "
                         f"{_f(r['exact_match'])} | {_ci(r['exact_match_ci'])} |")
    lines += ["", "| step | wall s | CPU s |", "|---|---|---|"]
    lines += [f"| {name} | {t['wall_s']} | {t['cpu_s']} |" for name, t in timings.items()]
    return "\n".join(lines) + "\n"


def chart(summary: dict, path: Path) -> None:
    """Each arm's mean exact match with its interval over seeds, and every seed's figure as a dot."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = summary["models"]
    fig, ax = plt.subplots(figsize=(8, 3.6), dpi=100)
    for i, m in enumerate(models):
        lo, hi = m["ci"]
        if lo is not None:
            ax.errorbar(i, m["mean"], yerr=[[m["mean"] - lo], [hi - m["mean"]]], fmt="o", color="C0", capsize=4)
        else:
            ax.plot(i, m["mean"], "o", color="C0")
        ax.plot([i] * len(m["per_seed"]), list(m["per_seed"].values()), ".", color="C1", alpha=0.7)
    ax.set_xticks(range(len(models)), [f"{m['arm']}\n{m['model']}" for m in models], fontsize=8)
    ax.set_ylim(0, 1)
    ax.set_ylabel("exact match")
    ax.set_title(f"Mean over {len(summary['seeds'])} seeds with its 95% interval (t); dots: each seed", fontsize=9)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, format="svg")
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--output", required=True, type=Path, help="folder for proof.json, proof.md and the run folders")
    p.add_argument("--seeds", type=int, default=3, help="how many worlds (seeds 0 .. N-1); default 3")
    p.add_argument("--world", action="append", default=[], metavar="FIELD=VALUE",
                   help="a WorldSpec field changed in every seed's world (e.g. bad_fraction=0.7); repeatable")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                   help="recipe overrides for every arm (e.g. curate.top_fraction=0.25)")
    args = p.parse_args(argv)
    if args.seeds < 1:
        p.error(f"--seeds must be at least 1, got {args.seeds}")
    try:
        changes = world_changes(args.world)
        load_config(RECIPE, args.overrides)  # a bad override stops here, before any world is built
    except Exception as e:  # ValueError from --world, ConfigError from the recipe
        p.error(str(e))
    out: Path = args.output
    out.mkdir(parents=True, exist_ok=True)
    import torch

    import harness

    clock = Clock()
    started, cpu0 = time.time(), cpu_seconds()
    seeds = {seed: run_seed(seed, out / f"seed-{seed}", clock, changes, tuple(args.overrides))
             for seed in range(args.seeds)}
    total = {"wall_s": round(time.time() - started, 1), "cpu_s": round(cpu_seconds() - cpu0, 1)}
    meta = {"command": " ".join(["python scripts/proof.py", *(sys.argv[1:] if argv is None else argv)]),
            "recipe": str(RECIPE.relative_to(ROOT)), "world_changes": changes, "overrides": args.overrides,
            "machine": harness.machine(),
            "torch_threads": torch.get_num_threads()}
    summary = summarize(seeds)
    timings = {**clock.marks, "total": total}
    write_json(out / "proof.json", {"summary": summary, "targets": summary["targets"],
                                    "seeds": {s: {"rows": r["rows"], "outcomes": r["outcomes"]}
                                              for s, r in seeds.items()},
                                    "timings": timings, **meta})
    chart(summary, out / "proof.svg")
    text = markdown(summary, seeds, timings, meta)
    write_text(out / "proof.md", text)
    print(text)
    print("targets:", json.dumps(summary["targets"]))
    return 0 if all(summary["targets"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
