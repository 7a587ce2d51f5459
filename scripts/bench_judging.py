#!/usr/bin/env python
# python scripts/bench_judging.py --output runs/bench-judging
"""Throughput of the evaluation's pairwise judge: pairs per second, generate vs logits judging.

    python scripts/bench_judging.py --output runs/bench-judging          # CPU default: the tiny local model
    python scripts/bench_judging.py --reduced --output /tmp/bj           # seconds: what the test suite runs
    python scripts/bench_judging.py --model Qwen/Qwen2.5-0.5B-Instruct --device cuda --output runs/bench-judging-gpu
    python scripts/bench_judging.py --backend vllm --model Qwen/Qwen2.5-0.5B-Instruct --output runs/bench-judging-vllm

A pair is one eval prompt judged in both orders, as the eval stage judges it (two judge prompts,
rendered by :mod:`humpback.evaluation.pairwise` through the judge's chat template): the instruction
and answer of a Python-docs seed pair against the next pair's answer. ``generate`` decodes the
judge's reasoning (``--max-new-tokens``, greedy) and parses "Winner: ..."; ``logits`` reads P("A") and
P("B") after "Winner:" in one forward pass per order. Both go through the same backend with the same
batch size. Each is repeated ``--reps`` times after one warm-up call; the median is reported.

Writes OUTPUT/bench_judging.json: per mode the pairs/s of every rep and their median, the parse-failure
count, the prompt-length median, and the headline ratio ``logits_vs_generate``.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

FULL = dict(pairs=32, reps=3, max_new_tokens=64, batch_size=16)
REDUCED = dict(pairs=4, reps=1, max_new_tokens=4, batch_size=4)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--output", default="runs/bench-judging", help="folder for bench_judging.json")
    p.add_argument("--model", default="builtin:tiny-llama",
                   help="the judge: hub id or local path (default: tiny Llama)")
    p.add_argument("--backend", choices=("hf", "vllm", "openai"), default="hf", help="generation backend")
    p.add_argument("--api-base", help="openai backend: server URL up to /v1")
    p.add_argument("--device", default="auto", help="hf backend: auto, cpu, cuda, ...")
    p.add_argument("--dtype", default="auto", choices=("auto", "float32", "bfloat16", "float16"))
    p.add_argument("--threads", type=int, default=None,
                   help="torch CPU threads (default: 1 without CUDA, so runs on shared CPUs compare)")
    p.add_argument("--reduced", action="store_true", help="tiny counts and one rep: the test suite's mode")
    for key, value in FULL.items():
        p.add_argument("--" + key.replace("_", "-"), type=int, default=None,
                       help=f"default {value} ({REDUCED[key]} reduced)")
    return p.parse_args(argv)


def pairs_from_seed(n: int) -> list[dict]:
    """``n`` eval pairs from the Python-docs seed: each instruction's own answer against the next one's."""
    from humpback.tiny import materialize

    seed = [json.loads(line) for line in materialize("python-docs-seed").read_text().splitlines()]
    return [{"prompt_id": str(i), "instruction": seed[i % len(seed)]["instruction"],
             "model_answer": seed[i % len(seed)]["output"], "reference_answer": seed[(i + 1) % len(seed)]["output"]}
            for i in range(n)]


def main(argv=None) -> int:
    args = parse_args(argv)
    counts = {k: getattr(args, k) if getattr(args, k) is not None else (REDUCED if args.reduced else FULL)[k]
              for k in FULL}
    import torch

    threads = args.threads or (None if torch.cuda.is_available() else 1)
    if threads:
        torch.set_num_threads(threads)
    from humpback.chat import load_chat_tokenizer, messages_for, render_prompt
    from humpback.config import GenerationConfig
    from humpback.evaluation.pairwise import (CHOICES, VERDICT_PREFILL, judge_tasks, judgement_rows_generate,
                                              judgement_rows_logits)
    from humpback.generation import SamplingParams, load_generator
    from humpback.models import resolve_model

    model = resolve_model(args.model)
    cfg = GenerationConfig(backend=args.backend, batch_size=counts["batch_size"], device=args.device, dtype=args.dtype,
                           api_base=args.api_base)
    tok = load_chat_tokenizer(model)
    generator = load_generator(cfg, model, tokenizer=tok)
    tasks = judge_tasks(pairs_from_seed(counts["pairs"]))
    prompts = {"generate": [render_prompt(tok, messages_for(t["user_turn"])) for t in tasks],
               "logits": [render_prompt(tok, messages_for(t["user_turn"]), prefill=VERDICT_PREFILL) for t in tasks]}
    params = SamplingParams(temperature=0.0, max_new_tokens=counts["max_new_tokens"])

    def judge(mode: str, texts: list[str]) -> list[dict]:
        if mode == "logits":
            return judgement_rows_logits(tasks[:len(texts)], generator.choice_probs(texts, CHOICES), "bench")
        return judgement_rows_generate(tasks[:len(texts)], generator.generate(texts, params), "bench")

    results = {}
    for mode in ("generate", "logits"):
        judge(mode, prompts[mode][:2])  # warm-up: one pair
        reps = []
        for _ in range(counts["reps"]):
            started = time.perf_counter()
            rows = judge(mode, prompts[mode])
            seconds = time.perf_counter() - started
            reps.append({"seconds": round(seconds, 4), "pairs_per_s": round(counts["pairs"] / seconds, 3),
                         "parse_failures": sum(r["parse_status"] != "ok" for r in rows)})
        lengths = [len(ids) for ids in tok(prompts[mode], add_special_tokens=False)["input_ids"]]
        results[mode] = {"reps": reps, "pairs_per_s": statistics.median(r["pairs_per_s"] for r in reps),
                         "judgements_per_pair": 2, "prompt_tokens_median": statistics.median(lengths),
                         "max_new_tokens": counts["max_new_tokens"] if mode == "generate" else 1}
    generator.close()
    report = {"logits_vs_generate": round(results["logits"]["pairs_per_s"] / results["generate"]["pairs_per_s"], 3),
              "results": results,
              "settings": {**counts, "model": args.model, "backend": args.backend, "device": args.device,
                           "dtype": args.dtype, "threads": threads, "python": sys.version.split()[0],
                           "machine": platform.machine(), "processor": platform.processor() or None,
                           "torch": torch.__version__, "cuda": torch.cuda.is_available()},
              "command": " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]])}
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    (out / "bench_judging.json").write_text(json.dumps(report, indent=2) + "\n")
    print(f"judging: generate {results['generate']['pairs_per_s']:.2f} pairs/s, logits "
          f"{results['logits']['pairs_per_s']:.2f} pairs/s ({report['logits_vs_generate']:.1f}x); "
          f"{out / 'bench_judging.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
