#!/usr/bin/env python
# python scripts/bench_preferences.py --output runs/benchmark
"""What replayable RLAIF costs per 1,000 prompts: sampling the answers, judging them, DPO on the pairs.

    python scripts/bench_preferences.py --output runs/benchmark                 # the tiny recipe on this CPU
    python scripts/bench_preferences.py --reduced --output /tmp/bench           # seconds: what the test suite runs
    python scripts/bench_preferences.py --recipe recipes/tiny-cpu.yaml preferences.n=8 --output runs/bench-prefs

The three steps of ``train.objective: dpo`` (see docs/preferences.md), each as its stage runs it, with the
recipe's settings (``--recipe RECIPE [key=value ...]``, default ``recipes/tiny-cpu.yaml``) on its base model
with a LoRA adapter on it (model K's shape and cost; its weights do not change the cost):

- generation: ``preferences.n`` answers to each of ``--prompts`` Python-docs seed instructions, sampled at
  ``preferences.temperature`` / ``top_p`` up to ``preferences.max_new_tokens``;
- judging: the additive judge (Self-Rewarding LMs' prompt) on ``n`` answers per prompt, in the recipe's
  ``curate.mode`` (``logits``: one forward pass per answer; ``generate``: a judgement decoded);
- dpo: ``--dpo-steps`` DPO steps (``dpo.*`` and ``train.*`` settings) on pairs of seed answers.

Each is repeated ``--reps`` times (the median is reported), each in its own process (``--no-isolate`` keeps
them in this one). The cost per 1,000 prompts is ``1000 / prompts per second`` for generation and judging,
and for DPO the time of one epoch over the pairs 1,000 prompts give at the pair rate measured, or at one
pair per prompt (the most there can be) with ``--pair-rate``. Writes OUTPUT/bench_preferences.json and .md.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
from pathlib import Path

import harness

GROUPS = ("generation", "judging", "dpo")
MEASUREMENTS = (("generation", "sample"), ("judging", "additive"), ("dpo", "train"))
FULL = {"reps": 3, "prompts": 32, "dpo_steps": 8}
REDUCED = {"reps": 1, "prompts": 4, "dpo_steps": 2}
DEFAULT_RECIPE = "recipes/tiny-cpu.yaml"
# --reduced also shortens the work of each item (the recipe's own overrides, given after, win).
REDUCED_OVERRIDES = ["preferences.n=2", "preferences.max_new_tokens=8", "dpo.per_device_train_batch_size=2",
                     "dpo.gradient_accumulation_steps=1"]


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    harness.add_common_args(p, GROUPS, f"the recipe whose settings are measured, with dotted overrides "
                                       f"(default {DEFAULT_RECIPE})")
    for key, value in FULL.items():
        p.add_argument("--" + key.replace("_", "-"), type=int, help=f"default {value} ({REDUCED[key]} with --reduced)")
    p.add_argument("--pair-rate", type=float, default=1.0,
                   help="pairs per prompt for the DPO cost (default 1.0: every prompt paired, the upper bound)")
    args = p.parse_args(argv)
    for key, value in (REDUCED if args.reduced else FULL).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.isolate is None:
        args.isolate = not args.reduced
    if args.reps < 1 or args.prompts < 2 or args.dpo_steps < 1 or not 0 < args.pair_rate <= 1:
        p.error("--reps and --dpo-steps must be >= 1, --prompts >= 2, --pair-rate in (0, 1]")
    args.recipe = args.recipe or [DEFAULT_RECIPE]
    if args.reduced:
        args.recipe = [args.recipe[0], *REDUCED_OVERRIDES, *args.recipe[1:]]
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.worker:
        return harness.worker_main(args.worker, measure)
    groups = harness.chosen_groups(args, GROUPS, "the other steps: scripts/benchmark.py")
    if groups is None:
        return 2
    from humpback.config import load_config, to_dict
    from humpback.errors import HumpbackError

    try:
        cfg = load_config(args.recipe[0], args.recipe[1:])
    except HumpbackError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    settings = {**harness.recipe_settings(args), "reps": args.reps, "prompts": args.prompts,
                "dpo_steps": args.dpo_steps, "pair_rate": args.pair_rate, "base_model": cfg.base_model,
                "preferences": to_dict(cfg.preferences), "dpo": to_dict(cfg.dpo), "judge_mode": cfg.curate.mode,
                "machine": harness.machine()}
    out_dir = Path(args.output)
    report = {"cost_per_1000_prompts_s": {}, "settings": settings, "results": {}}

    def write(results: dict) -> None:
        report["results"] = results
        report["cost_per_1000_prompts_s"] = costs(results, settings)
        (out_dir / "bench_preferences.json").write_text(json.dumps(report, indent=2) + "\n")
        (out_dir / "bench_preferences.md").write_text(render_markdown(report))

    failed = harness.run_all(__file__, MEASUREMENTS, groups, settings, out_dir, args.isolate, measure, write)
    harness.log(f"wrote {out_dir / 'bench_preferences.json'} and {out_dir / 'bench_preferences.md'}")
    return 1 if failed else 0


def costs(results: dict, settings: dict) -> dict:
    """Seconds per 1,000 prompts of each step measured, and their total when all three were."""
    gen = results.get("generation", {}).get("sample", {}).get("prompts_per_s")
    judge = results.get("judging", {}).get("additive", {}).get("prompts_per_s")
    dpo = results.get("dpo", {}).get("train", {}).get("pairs_per_s")
    epochs = settings["dpo"]["num_train_epochs"]
    out = {"generation": harness.rnd(1000 / gen) if gen else None,
           "judging": harness.rnd(1000 / judge) if judge else None,
           "dpo": harness.rnd(1000 * settings["pair_rate"] * epochs / dpo) if dpo else None}
    out["total"] = harness.rnd(sum(out.values())) if all(out.values()) else None
    return out


# =========================================================================== measurements


def seed_rows(n: int) -> list[dict]:
    from humpback.tiny import materialize

    seed = [json.loads(line) for line in materialize("python-docs-seed").read_text().splitlines()]
    return [seed[i % len(seed)] for i in range(n)]


def model_k(cfg, folder: Path) -> str:
    """A LoRA adapter of the recipe's shape on its base model (one SFT step): what model K costs."""
    from humpback.training import TrainJob, train_sft

    train = dataclasses.replace(cfg.train, max_steps=1, per_device_train_batch_size=2, gradient_accumulation_steps=1,
                                accelerate_config=None, deepspeed=None, max_length=min(cfg.train.max_length, 256))
    rows = [{"messages": [{"role": "user", "content": r["instruction"]},
                          {"role": "assistant", "content": r["output"]}]}
            for r in seed_rows(2)]
    train_sft(TrainJob(cfg.base_model, train, seed=0, progress=False), rows, folder)
    return str(folder)


def measure(spec: dict) -> dict:
    from humpback.config import load_config
    from humpback.builtin_names import resolve

    cfg = load_config(spec["recipe"], spec["overrides"])
    cfg = dataclasses.replace(cfg, base_model=resolve(cfg.base_model))
    with tempfile.TemporaryDirectory(prefix="humpback-bench-prefs-") as tmp:
        adapter = model_k(cfg, Path(tmp) / "model_k")
        return {"generation": measure_generation, "judging": measure_judging, "dpo": measure_dpo}[spec["group"]](
            spec, cfg, adapter, Path(tmp))


def _generator(cfg, adapter: str):
    from humpback.chat import load_chat_tokenizer
    from humpback.generation import load_generator

    tok = load_chat_tokenizer(cfg.base_model, adapter=adapter)
    return tok, load_generator(cfg.generation, cfg.base_model, adapter=adapter, tokenizer=tok, seed=cfg.random_seed)


def measure_generation(spec: dict, cfg, adapter: str, tmp: Path) -> dict:
    """``n`` sampled answers to each prompt, as the responses stage samples them."""
    from humpback.chat import messages_for, render_prompt
    from humpback.generation import SamplingParams
    from humpback.preference_pairs import sample_seed

    p = cfg.preferences
    tok, gen = _generator(cfg, adapter)
    prompts = [render_prompt(tok, messages_for(r["instruction"], system=p.system_prompt))
               for r in seed_rows(spec["prompts"])]

    def run() -> dict:
        before = gen.usage
        for i in range(p.n):
            gen.generate(prompts, SamplingParams(temperature=p.temperature, top_p=p.top_p,
                                                 max_new_tokens=p.max_new_tokens, seed=sample_seed(0, i)))
        used = gen.usage - before
        return {"prompts": len(prompts), "answers": len(prompts) * p.n, "generated_tokens": used.generated_tokens}

    gen.generate(prompts[:1], SamplingParams(max_new_tokens=2))  # warm-up
    reps, mem = harness.timed_reps(spec["reps"], run)
    gen.close()
    return {**harness.summary(reps, mem, {"prompts_per_s": "prompts", "answers_per_s": "answers",
                                          "tokens_per_s": "generated_tokens"}), "n": p.n}


def measure_judging(spec: dict, cfg, adapter: str, tmp: Path) -> dict:
    """The additive judge on ``n`` answers per prompt (seed answers stand in for model K's)."""
    from types import SimpleNamespace

    from humpback.judges import CurationJudge, score_rows
    from humpback.preference_pairs import judge_settings

    judging = judge_settings(cfg.curate, dataclasses.replace(cfg.preferences, judge_kind="additive", judge=None))
    tok, gen = _generator(cfg, adapter)
    n = cfg.preferences.n
    seed = seed_rows(spec["prompts"] + n)
    rows = [{"candidate_id": f"{i}#{j}", "instruction": seed[i]["instruction"], "output": seed[i + j]["output"]}
            for i in range(spec["prompts"]) for j in range(n)]
    judge = CurationJudge("bench", judging, SimpleNamespace(tokenizer=tok, generator=gen), 0,
                          cfg.generation.max_prompt_tokens)

    def run() -> dict:
        scored = score_rows(rows, judge)
        return {"prompts": spec["prompts"], "answers": len(rows),
                "failures": sum(s["parse_status"] != "ok" for s in scored)}

    score_rows(rows[:1], judge)  # warm-up
    reps, mem = harness.timed_reps(spec["reps"], run)
    gen.close()
    return {**harness.summary(reps, mem, {"prompts_per_s": "prompts", "answers_per_s": "answers"}),
            "mode": judging.mode, "n": n}


def measure_dpo(spec: dict, cfg, adapter: str, tmp: Path) -> dict:
    """``dpo_steps`` DPO steps from model K (its own reference) on pairs of seed answers."""
    from humpback.training import PreferenceJob, train_dpo

    d = dataclasses.replace(cfg.dpo, max_steps=spec["dpo_steps"])
    per_step = d.per_device_train_batch_size * d.gradient_accumulation_steps
    seed = seed_rows(per_step * spec["dpo_steps"] + 1)
    pairs = [{"prompt": [{"role": "user", "content": r["instruction"]}],
              "chosen": [{"role": "assistant", "content": r["output"]}],
              "rejected": [{"role": "assistant", "content": seed[i + 1]["output"]}]} for i, r in enumerate(seed[:-1])]
    train = dataclasses.replace(cfg.train, accelerate_config=None)
    job = PreferenceJob(cfg.base_model, adapter, train, d, seed=0, progress=False)
    runs = iter(range(spec["reps"]))

    def run() -> dict:
        result = train_dpo(job, pairs, tmp / f"dpo-{next(runs)}")
        return {"pairs": result.steps * per_step, "steps": result.steps}

    reps, mem = harness.timed_reps(spec["reps"], run)
    return {**harness.summary(reps, mem, {"pairs_per_s": "pairs", "steps_per_s": "steps"}), "pairs_per_step": per_step}


# =========================================================================== report


def render_markdown(report: dict) -> str:
    s, r, c = report["settings"], report["results"], report["cost_per_1000_prompts_s"]
    p = s["preferences"]
    lines = [f"`{harness.command_line('bench_preferences.py', s)}`", "",
             "# Preference data and DPO: cost per 1,000 prompts", "",
             harness.machine_line(s), "",
             f"Model: `{s['base_model']}` with a LoRA adapter; {p['n']} answers per prompt, temperature "
             f"{p['temperature']}, up to {p['max_new_tokens']} new tokens; additive judge in {s['judge_mode']} mode; "
             f"DPO batch {s['dpo']['per_device_train_batch_size']} x {s['dpo']['gradient_accumulation_steps']}, "
             f"{s['dpo']['num_train_epochs']} epoch(s), {s['pair_rate']} pairs per prompt.", ""]
    lines += harness.table(MEASUREMENTS, r, ["rate", "seconds per 1,000 prompts", "peak RSS MB", "notes"],
                           lambda g, v, res: _row(g, res, c, s))
    lines += ["", f"Total: {harness.fmt(c.get('total'), 0)} s per 1,000 prompts (generation + judging + DPO)."]
    return "\n".join(lines) + "\n"


def _row(group: str, res: dict, c: dict, s: dict) -> list[str]:
    if group == "generation":
        rate = f"{harness.fmt(res['answers_per_s'])} answers/s"
        notes = f"{harness.fmt(res['tokens_per_s'], 0)} generated tokens/s"
    elif group == "judging":
        rate = f"{harness.fmt(res['answers_per_s'])} answers/s"
        notes = f"mode {res['mode']}"
    else:
        rate = f"{harness.fmt(res['pairs_per_s'])} pairs/s"
        notes = f"{res['pairs_per_step']} pairs per step"
    return [rate, harness.fmt(c.get(group), 0), harness.peak_rss(res), notes]


if __name__ == "__main__":
    sys.exit(main())
