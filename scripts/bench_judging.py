#!/usr/bin/env python
# python scripts/bench_judging.py --output runs/bench-judging
"""Throughput of the evaluation's pairwise judge: pairs per second, generate vs logits judging.

    python scripts/bench_judging.py --output runs/bench-judging          # CPU default: the tiny local model
    python scripts/bench_judging.py --reduced --output /tmp/bj           # seconds: what the test suite runs
    python scripts/bench_judging.py --model Qwen/Qwen2.5-0.5B-Instruct --device cuda --output runs/bench-judging-gpu
    python scripts/bench_judging.py --backend vllm --model Qwen/Qwen2.5-0.5B-Instruct --output runs/bench-judging-vllm
    python scripts/bench_judging.py --recipe recipes/tiny-cpu.yaml --output runs/bench-judging   # its eval judge

A pair is one eval prompt judged in both orders, as the eval stage judges it (two judge prompts,
rendered by :mod:`humpback.evaluation.pairwise` through the judge's chat template): the instruction
and answer of a Python-docs seed pair against the next pair's answer. ``generate`` decodes the
judge's reasoning (``--max-new-tokens``, greedy) and parses "Winner: ..."; ``logits`` reads P("A") and
P("B") after "Winner:" in one forward pass per order. Both go through the same backend with the same
batch size. Each is repeated ``--reps`` times after one warm-up call; the median is reported. Each mode
is measured in its own process (``--no-isolate`` keeps them in this one), so its peak memory is its own.

The judge is ``--model``, else the recipe's ``eval.judge`` (``base``: its base model), else the tiny
model; the backend, device, dtype and API base are the command line's, else the recipe's ``generation.*``.
Writes OUTPUT/bench_judging.json and .md: per mode the pairs/s of every rep and their median, the
parse-failure count, the prompt-length median, and the headline ratio ``logits_vs_generate``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import harness

GROUPS = ("judging",)
MEASUREMENTS = (("judging", "generate"), ("judging", "logits"))
FULL = {"pairs": 32, "reps": 3, "max_new_tokens": 64, "batch_size": 16}
REDUCED = {"pairs": 4, "reps": 1, "max_new_tokens": 4, "batch_size": 4}
DEFAULT_MODEL = "builtin:tiny-llama"


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    harness.add_common_args(p, GROUPS, "take the judge (eval.judge) and generation.* from this recipe, with dotted "
                                       "overrides")
    p.add_argument("--model", help=f"the judge: hub id or local path (default: the recipe's eval.judge, else "
                                   f"{DEFAULT_MODEL})")
    p.add_argument("--backend", choices=("hf", "vllm", "openai"), help="generation backend (default hf)")
    p.add_argument("--api-base", help="openai backend: server URL up to /v1")
    p.add_argument("--device", help="hf backend: auto, cpu, cuda, ... (default auto)")
    p.add_argument("--dtype", choices=("auto", "float32", "bfloat16", "float16"), help="default auto")
    p.add_argument("--threads", type=int, default=None,
                   help="torch CPU threads (default: 1 without CUDA, so runs on shared CPUs compare)")
    for key, value in FULL.items():
        p.add_argument("--" + key.replace("_", "-"), type=int, help=f"default {value} ({REDUCED[key]} with --reduced)")
    args = p.parse_args(argv)
    for key, value in (REDUCED if args.reduced else FULL).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.isolate is None:
        args.isolate = not args.reduced
    if min(args.pairs, args.reps, args.max_new_tokens, args.batch_size) < 1:
        p.error("--pairs, --reps, --max-new-tokens and --batch-size must be >= 1")
    return args


def judge_settings(args: argparse.Namespace) -> dict:
    """The judge model and its generation settings: the command line's, else the recipe's, else the defaults."""
    from humpback.config import GenerationConfig, load_config

    gen, model = GenerationConfig(), DEFAULT_MODEL
    if args.recipe:
        cfg = load_config(args.recipe[0], args.recipe[1:])
        gen, model = cfg.generation, cfg.base_model if cfg.eval.judge == "base" else cfg.eval.judge
    chosen = {"backend": args.backend, "api_base": args.api_base, "device": args.device, "dtype": args.dtype}
    out = {key: value if value is not None else getattr(gen, key) for key, value in chosen.items()}
    return {"model": args.model or model, **out}


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.worker:
        return harness.worker_main(args.worker, measure)
    groups = harness.chosen_groups(args, GROUPS, "the other steps: scripts/benchmark.py")
    if groups is None:
        return 2
    from humpback.errors import HumpbackError

    try:
        judge = judge_settings(args)
    except HumpbackError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    cuda = _cuda_name()
    threads = args.threads or (None if cuda else 1)
    settings = {**harness.recipe_settings(args), **{k: getattr(args, k) for k in FULL}, **judge, "threads": threads,
                "machine": harness.machine(cuda)}
    out_dir = Path(args.output)
    report = {"logits_vs_generate": None, "settings": settings, "results": {}}

    def write(results: dict) -> None:
        report["results"] = results
        report["logits_vs_generate"] = harness.ratio(results, "judging", "logits", "generate", "pairs_per_s")
        (out_dir / "bench_judging.json").write_text(json.dumps(report, indent=2) + "\n")
        (out_dir / "bench_judging.md").write_text(render_markdown(report))

    failed = harness.run_all(__file__, MEASUREMENTS, groups, settings, out_dir, args.isolate, measure, write)
    harness.log(f"wrote {out_dir / 'bench_judging.json'} and {out_dir / 'bench_judging.md'}")
    return 1 if failed else 0


def _cuda_name() -> str | None:
    import torch

    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else None


# =========================================================================== measurement


def pairs_from_seed(n: int) -> list[dict]:
    """``n`` eval pairs from the Python-docs seed: each instruction's own answer against the next one's."""
    from humpback.tiny import materialize

    seed = [json.loads(line) for line in materialize("python-docs-seed").read_text().splitlines()]
    return [{"prompt_id": str(i), "instruction": seed[i % len(seed)]["instruction"],
             "model_answer": seed[i % len(seed)]["output"], "reference_answer": seed[(i + 1) % len(seed)]["output"]}
            for i in range(n)]


def measure(spec: dict) -> dict:
    """One judging mode (the variant) on ``pairs`` pairs, both orders each: pairs/s over ``reps`` after a warm-up."""
    import torch

    if spec["threads"]:
        torch.set_num_threads(spec["threads"])
    from humpback.chat import load_chat_tokenizer, messages_for, render_prompt
    from humpback.config import GenerationConfig
    from humpback.evaluation.pairwise import (CHOICES, VERDICT_PREFILL, judge_tasks, judgement_rows_generate,
                                              judgement_rows_logits)
    from humpback.generation import SamplingParams, load_generator
    from humpback.models import resolve_model

    mode = spec["variant"]
    model = resolve_model(spec["model"])
    cfg = GenerationConfig(backend=spec["backend"], batch_size=spec["batch_size"], device=spec["device"],
                           dtype=spec["dtype"], api_base=spec["api_base"])
    tok = load_chat_tokenizer(model)
    generator = load_generator(cfg, model, tokenizer=tok)
    tasks = judge_tasks(pairs_from_seed(spec["pairs"]))
    prefill = {"prefill": VERDICT_PREFILL} if mode == "logits" else {}
    prompts = [render_prompt(tok, messages_for(t["user_turn"]), **prefill) for t in tasks]
    params = SamplingParams(temperature=0.0, max_new_tokens=spec["max_new_tokens"])

    def judge(texts: list[str]) -> list[dict]:
        if mode == "logits":
            return judgement_rows_logits(tasks[:len(texts)], generator.choice_probs(texts, CHOICES), "bench")
        return judgement_rows_generate(tasks[:len(texts)], generator.generate(texts, params), "bench")

    def run() -> dict:
        rows = judge(prompts)
        return {"pairs": spec["pairs"], "parse_failures": sum(r["parse_status"] != "ok" for r in rows)}

    try:
        judge(prompts[:2])  # warm-up: one pair
        reps, mem = harness.timed_reps(spec["reps"], run)
    finally:
        generator.close()
    lengths = [len(ids) for ids in tok(prompts, add_special_tokens=False)["input_ids"]]
    return {**harness.summary(reps, mem, {"pairs_per_s": "pairs"}), "judgements_per_pair": 2,
            "prompt_tokens_median": statistics.median(lengths),
            "max_new_tokens": spec["max_new_tokens"] if mode == "generate" else 1}


# =========================================================================== report


def render_markdown(report: dict) -> str:
    s, r = report["settings"], report["results"]
    lines = ["# humpback pairwise judge throughput", "", f"`{harness.command_line('bench_judging.py', s)}`", "",
             harness.machine_line(s), "",
             f"Judge `{s['model']}` on the {s['backend']} backend (device {s['device']}, dtype {s['dtype']}, batch "
             f"{s['batch_size']}{', ' + str(s['threads']) + ' torch thread(s)' if s['threads'] else ''}); "
             f"{s['pairs']} pairs, each judged in both orders.", ""]
    lines += harness.table(MEASUREMENTS, r, ["pairs/s", "peak RSS (MB)", "notes"], _row)
    ratio = report["logits_vs_generate"]
    lines += ["", f"logits / generate: {harness.fmt(ratio) + 'x' if ratio else '- (both modes are needed)'} pairs/s."]
    return "\n".join(lines) + "\n"


def _row(group: str, variant: str, res: dict) -> list[str]:
    failures = sum(rep["parse_failures"] for rep in res["reps"])
    return [harness.fmt(res["pairs_per_s"]), harness.peak_rss(res),
            f"{res['max_new_tokens']} new token(s), prompts {harness.fmt(res['prompt_tokens_median'], 0)} tokens "
            f"(median), {failures} parse failure(s) over {len(res['reps'])} rep(s)"]


if __name__ == "__main__":
    sys.exit(main())
