#!/usr/bin/env python
# python scripts/world_dpo.py --output runs/world-dpo
"""The controlled world's DPO arm: does DPO on M1's own answers raise exact match over M1?

    python scripts/world_dpo.py --output runs/world-dpo                                  # the verifier judges
    python scripts/world_dpo.py --output runs/world-dpo --judges verifier,likelihood,additive
    python scripts/world_dpo.py --source runs/proof/self-curated --output runs/world-dpo  # a finished world run
    python scripts/world_dpo.py --output runs/world-dpo-pooled --pool runs/dpo-s0,runs/dpo-s1,runs/dpo-s2

1. M1: ``recipes/world-cpu.yaml`` with one iteration (its M0, M1 and their evaluations), or ``--source``, a
   finished run of that recipe whose iteration 1 was evaluated.
2. Per judge, a replay of iteration 1 with ``train.objective=dpo``: M1 trained again from the saved mixture
   (on CPU the same weights: checked and reported), its answers to iteration 1's curated instructions sampled
   ``preferences.n`` times, judged (the world's verifier, M1's own likelihood, or the additive prompt read
   from M1's logits), paired best against worst, and DPO from M1; then the run's eval stage on the result.
3. Per judge: M1's and M1+DPO's exact match on the world's 200 held-out prompts, their paired difference
   with its 95% bootstrap interval over prompts, and the prompts each alone got right.

Writes OUTPUT/world_dpo.json and OUTPUT/world_dpo.md. ``--pool`` runs nothing: it reads several finished
outputs of this script (one per world seed), pairs M1's and M1+DPO's per-prompt exact match in each, and
writes OUTPUT/world_dpo_pooled.json and .md: per judge, the difference pooled over seeds with its stratified
paired bootstrap interval (``humpback.evaluation.replicates.paired_difference``, as ``scripts/proof.py``
pools its arms) and the t interval of the per-seed differences. ``dpo_arm`` is what ``scripts/proof.py`` can call
for its DPO arm. The settings below are this script's defaults (``--set key=value`` adds more).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

RECIPE = ROOT / "recipes" / "world-cpu.yaml"
# The world's M1 answers in a few tokens under the seed tag (the recipe's eval system prompt); eight samples
# at temperature 1 give the verifier right and wrong answers to tell apart. DPO with RPO's NLL term on the
# chosen answer (dpo.sft_weight 1), lr 1e-5, two passes over the pairs. Chosen on seed 0's M1 of the proof
# (docs/preferences.md): DPO alone at 1e-4 lowered exact match by 0.37, with the NLL term by 0.01; at 1e-5,
# +0.015 alone and +0.020 with it.
ARM = ["train.objective=dpo", "preferences.n=8", "preferences.temperature=1.0", "preferences.top_p=1.0",
       "preferences.max_new_tokens=40", "preferences.system_prompt=Answer in the style of an AI Assistant.",
       "dpo.learning_rate=1e-5", "dpo.sft_weight=1.0", "dpo.num_train_epochs=2", "tracking.progress=false"]
JUDGES = {"verifier": ["preferences.judge_kind=verifier", "curate.verifier=humpback.worlds.tasks:verify"],
          "likelihood": ["preferences.judge_kind=likelihood"],
          "additive": ["preferences.judge_kind=additive", "curate.mode=logits"]}


def exact_matches(run_dir: Path, label: str) -> dict:
    """Prompt id -> exact match of one evaluated model's answers (prompts with a reference only)."""
    from humpback import layout
    from humpback.store import read_table

    return {a["prompt_id"]: bool(a["exact_match"]) for a in read_table(run_dir / layout.evaluation(label).answers)
            if a["exact_match"] is not None}


def same_weights(a: Path, b: Path) -> bool:
    """Two saved models hold the same tensors (full models or adapters)."""
    import torch
    from safetensors.torch import load_file

    name = "model.safetensors" if (a / "model.safetensors").is_file() else "adapter_model.safetensors"
    x, y = load_file(a / name), load_file(b / name)
    return x.keys() == y.keys() and all(torch.equal(x[k], y[k]) for k in x)


def dpo_arm(source: Path, out: Path, judge: str, extra: list[str] = (), log=lambda line: None) -> dict:
    """Replay ``source``'s iteration 1 with DPO judged by ``judge``, evaluate it, and compare with M1."""
    from humpback import layout
    from humpback.eval_command import evaluate_run
    from humpback.evaluation.exact import exact_match_change
    from humpback.replay import replay

    started = time.time()
    result = replay(source, out, 1, overrides=[*ARM, *JUDGES[judge], *extra], log=log)
    evaluate_run(out, iteration=1, log=log)
    stages = json.loads((out / layout.MANIFEST).read_text())["stages"]
    it = layout.iteration(1)
    return {"judge": judge, "seconds": round(time.time() - started, 1),
            "sft_bit_identical": same_weights(source / it.model, out / it.sft_model),
            "responses": stages[it.stage("responses")]["stats"], "pairs": stages[it.stage("preferences")]["stats"],
            "dpo": {k: v for k, v in result["train"].items() if k not in ("losses",)},
            "exact_match": exact_match_change(exact_matches(source, "iter_1"), exact_matches(out, "iter_1"))}


def pool(per_seed: dict[str, tuple[dict, dict]]) -> dict:
    """``{seed: (M1's exact matches, M1+DPO's)}`` (prompt id -> bool, as :func:`exact_matches` reads them)
    -> the difference pooled over seeds (prompts paired by id within each seed), its stratified paired
    bootstrap interval, and the per-seed differences with their t interval."""
    from humpback.evaluation.replicates import mean_interval, paired_difference

    before, after, strata = [], [], []
    for seed, (b, a) in per_seed.items():
        if set(b) != set(a):
            raise ValueError(f"seed {seed}: M1 and M1+DPO were evaluated on different prompts")
        ids = sorted(b)
        before += [float(b[i]) for i in ids]
        after += [float(a[i]) for i in ids]
        strata += [seed] * len(ids)
    d = paired_difference(after, before, strata)
    return {**d, "across_seeds": mean_interval(list(d["per_stratum"].values()))}


def pooled(outputs: list[Path]) -> dict:
    """:func:`pool` per judge over finished outputs of this script (a judge pooled only where every output
    ran it)."""
    metas = {}
    for out in outputs:
        path = out / "world_dpo.json"
        if not path.is_file():
            raise SystemExit(f"world_dpo.py --pool: {path} does not exist (is {out} an --output of this script?)")
        metas[str(out)] = json.loads(path.read_text())
    ran = [{a["judge"] for a in m["arms"]} for m in metas.values()]
    judges = [j for j in JUDGES if all(j in r for r in ran)]
    if not judges:
        raise SystemExit("world_dpo.py --pool: no judge was run by every output")
    m1 = {o: exact_matches(Path(m["source"]), "iter_1") for o, m in metas.items()}  # read once, for every judge
    try:
        by_judge = {j: pool({o: (m1[o], exact_matches(Path(o) / j, "iter_1")) for o in metas}) for j in judges}
    except ValueError as e:  # the seed named in it is the output folder
        raise SystemExit(f"world_dpo.py --pool: {e}") from None
    return {"outputs": {o: {"command": m["command"], "source": m["source"]} for o, m in metas.items()},
            "judges": by_judge}


def pooled_markdown(result: dict) -> str:
    lines = ["# DPO on M1's own answers, pooled over world seeds", "", "| output | command |", "|---|---|"]
    lines += [f"| `{o}` | `{m['command']}` |" for o, m in result["outputs"].items()]
    lines += ["", "| judge | prompts | per seed | pooled difference [95% interval] | mean of seeds [t interval] |",
              "|---|---|---|---|---|"]

    def f(x):
        return "-" if x is None else f"{x:+.3f}"

    for j, r in result["judges"].items():
        a = r["across_seeds"]
        lines.append(f"| {j} | {r['n']} | {', '.join(f(v) for v in r['per_stratum'].values())} | "
                     f"{f(r['difference'])} [{f(r['ci'][0])}, {f(r['ci'][1])}] | "
                     f"{f(a['mean'])} [{f(a['ci'][0])}, {f(a['ci'][1])}] |")
    lines += ["", "The pooled interval resamples prompts within each seed, pairs kept (2,000 resamples); it is "
              "conditional on the worlds built. The t interval over the per-seed differences is the across-seed "
              "view of the same figure."]
    return "\n".join(lines) + "\n"


def markdown(meta: dict, arms: list[dict]) -> str:
    def f(x, d=3):
        return "-" if x is None else f"{x:.{d}f}"

    lines = ["# DPO on M1's own answers in the controlled world", "",
             f"Command: `{meta['command']}`. M1: `{meta['source']}`. "
             f"Settings (later ones win): `{' '.join(meta['settings'])}`.", "",
             "| judge | pairs (of prompts) | ties | DPO steps | reward acc. | M1 EM | M1+DPO EM | difference "
             "| 95% interval "
             "| gained / lost | M1 retrained bit-identical |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for a in arms:
        p, e, d = a["pairs"], a["exact_match"], a["dpo"]
        lo, hi = e["difference_ci"]
        lines.append(f"| {a['judge']} | {p['pairs']} ({p['prompts']}) | {p['tie']} | {d['steps']} | "
                     f"{f(d.get('final_accuracy'))} | {f(e['before'])} | {f(e['after'])} | {f(e['difference'])} | "
                     f"{f(lo)} to {f(hi)} | {e['gained']} / {e['lost']} | {a['sft_bit_identical']} |")
    lines += ["", f"Exact match over {arms[0]['exact_match']['prompts'] if arms else 0} held-out prompts; "
              "the interval "
              "is a percentile bootstrap of the per-prompt difference (2,000 resamples)."]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--output", required=True, type=Path, help="folder for world_dpo.json/.md and the run folders")
    p.add_argument("--source", type=Path, help="a finished world-cpu run (iteration 1 evaluated); default: run one")
    p.add_argument("--judges", default="verifier", help=f"comma-separated, of {', '.join(JUDGES)}")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="more recipe overrides for the arms")
    p.add_argument("--pool", metavar="OUT,OUT,...",
                   help="run nothing: pool finished outputs of this script over seeds (comma-separated)")
    args = p.parse_args(argv)
    if args.pool:
        outputs = [Path(o.strip()) for o in args.pool.split(",") if o.strip()]
        if not outputs:
            p.error("--pool: name at least one output folder of this script")
        result = pooled(outputs)
        args.output.mkdir(parents=True, exist_ok=True)
        (args.output / "world_dpo_pooled.json").write_text(json.dumps(result, indent=1) + "\n")
        (args.output / "world_dpo_pooled.md").write_text(pooled_markdown(result))
        print(pooled_markdown(result))
        return 0
    judges = [j.strip() for j in args.judges.split(",") if j.strip()]
    if not judges or set(judges) - set(JUDGES):
        p.error(f"--judges: choose from {', '.join(JUDGES)}")
    from humpback.config import load_config
    from humpback.loop import open_run, run

    args.output.mkdir(parents=True, exist_ok=True)
    source = args.source
    if source is None:
        source = args.output / "m1"
        print("[world-dpo] M0 and M1 of recipes/world-cpu.yaml (one iteration), evaluated", flush=True)
        run(open_run(load_config(RECIPE, ["iterations=1", "tracking.progress=false"]), source, log=lambda line: None))
    meta = {"command": " ".join(["python scripts/world_dpo.py", *(argv if argv is not None else sys.argv[1:])]),
            "source": str(source), "settings": ARM + args.set}
    arms = []
    for judge in judges:
        print(f"[world-dpo] {judge} arm", flush=True)
        arms.append(dpo_arm(source, args.output / judge, judge, args.set))
        e = arms[-1]["exact_match"]
        print(f"[world-dpo] {judge}: exact match {e['before']:.3f} -> {e['after']:.3f}, difference "
              f"{e['difference']:+.3f} (95% CI {e['difference_ci'][0]:+.3f} to {e['difference_ci'][1]:+.3f})",
              flush=True)
        (args.output / "world_dpo.json").write_text(json.dumps({**meta, "arms": arms}, indent=1, default=str) + "\n")
        (args.output / "world_dpo.md").write_text(markdown(meta, arms))
    print(markdown(meta, arms))
    return 0


if __name__ == "__main__":
    sys.exit(main())
