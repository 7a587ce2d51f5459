#!/usr/bin/env python
# python scripts/bench_constraints.py --output runs/benchmark
"""Constrained decoding on the hf backend, measured: xgrammar against outlines-core, and the rating judge
with and without the score constraint.

    OMP_NUM_THREADS=1 nice -n 5 python scripts/bench_constraints.py --output runs/bench-constraints \\
        --model builtin:tiny-llama --judge-model builtin:smollm2-135m-instruct
    python scripts/bench_constraints.py --reduced --output /tmp/bench      # seconds a part: the test suite's mode
    python scripts/bench_constraints.py --only judge --judge-model builtin:smollm2-135m-instruct --pairs 48 \\
        --output runs/bench-judge                                         # the judge part alone

Group ``engines``, one measurement per built-in constraint (``--only engines/score`` runs one): the same
prompts are generated unconstrained, with xgrammar's masks (what humpback uses) and with outlines-core's
(the engine of the ``outlines`` library), in the same decode loop
(:class:`humpback.generation.decoding.Decoder`), interleaved over ``--reps`` rounds after a warm-up round;
each arm's share of answers that match the format, its generated tokens per second (mean and a t 95%
interval over rounds) and its one-off compile time are written side by side.

Group ``judge``: the rating judge in generate mode on ``--pairs`` labelled dev pairs spread over
``builtin:assistant-dev``, without and with ``builtin:score``: parse-failure rate (Wilson 95% interval), dev
AUC (bootstrap 95% interval) and seconds per pair. It is skipped without ``--judge-model``.

Each measurement runs in its own process (``--no-isolate`` keeps them in this one), so its peak memory is its
own. Writes OUTPUT/bench_constraints.json and OUTPUT/bench_constraints.md.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import harness

# humpback.generation.constraints.BUILTINS (tests/test_bench_constraints.py checks they are the same).
CONSTRAINTS = ("instruction-line", "score", "task-list", "verdict")
GROUPS = ("engines", "judge")
MEASUREMENTS = tuple(("engines", c) for c in CONSTRAINTS) + (("judge", "score"),)
ENGINES = ("none", "xgrammar", "outlines-core")
FULL = {"prompts": 16, "max_new_tokens": 64, "reps": 3, "batch_size": 8, "pairs": 12, "judge_tokens": 128}
REDUCED = {"prompts": 2, "max_new_tokens": 8, "reps": 1, "batch_size": 2, "pairs": 4, "judge_tokens": 16}
HELP = {"prompts": "prompts per round (engines)", "max_new_tokens": "longest answer (engines)",
        "reps": "timed rounds of every arm, interleaved, after a warm-up round (engines)",
        "batch_size": "generation batch size", "pairs": "labelled dev pairs the judge scores (judge)",
        "judge_tokens": "longest judgement (judge)"}

PROMPTS = ["Write one instruction that this text answers: The with statement wraps a block in a context manager.",
           "Rate the answer. Instruction: sort a list. Answer: use sorted(). Give brief reasoning, then Score:",
           "Come up with a series of tasks:\n1. Sort a list of numbers.\n2. Name three colours.\n3.",
           "Explain the Python `for` statement.", "What is a generator?", "Summarise: lists are mutable sequences.",
           "Give an instruction for: dict.get returns a default when the key is missing.", "Score this answer:"]


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    harness.add_common_args(p, GROUPS, "not used: the models and counts are the options below")
    p.add_argument("--model", default="builtin:tiny-llama", help="the model of the engines part")
    p.add_argument("--temperature", type=float, default=0.7, help="sampling temperature (engines)")
    p.add_argument("--judge-model", help="the rating judge's model (without it the judge part is skipped)")
    harness.add_count_args(p, FULL, REDUCED, HELP)
    args = p.parse_args(argv)
    harness.apply_counts(args, FULL, REDUCED)
    if args.recipe:
        p.error("--recipe: this benchmark has no recipe settings (--model, --judge-model and the counts)")
    if min(getattr(args, k) for k in FULL) < 1:
        p.error("--prompts, --max-new-tokens, --reps, --batch-size, --pairs and --judge-tokens must be >= 1")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.worker:
        return harness.worker_main(args.worker, measure)
    groups = harness.chosen_groups(args, GROUPS, "the other steps: scripts/benchmark.py")
    if groups is None:
        return 2
    settings = {**harness.recipe_settings(args), **{k: getattr(args, k) for k in FULL}, "model": args.model,
                "temperature": args.temperature, "judge_model": args.judge_model, "machine": harness.machine()}
    out_dir = Path(args.output)
    report = {"settings": settings, "results": {}}

    def write(results: dict) -> None:
        report["results"] = results
        (out_dir / "bench_constraints.json").write_text(json.dumps(report, indent=2) + "\n")
        (out_dir / "bench_constraints.md").write_text(render_markdown(report))

    failed = harness.run_all(__file__, MEASUREMENTS, groups, settings, out_dir, args.isolate, measure, write)
    harness.log(f"wrote {out_dir / 'bench_constraints.json'} and {out_dir / 'bench_constraints.md'}")
    return 1 if failed else 0


# =========================================================================== measurements


def measure(spec: dict) -> dict:
    if spec["group"] == "judge" and not spec["judge_model"]:
        return {"skipped": "no --judge-model"}
    with harness.PeakMemory() as mem:
        out = engines(spec) if spec["group"] == "engines" else judge(spec)
    return {**out, **mem.figures()}


class OutlinesCache:
    """outlines-core's guides behind the interface of humpback.generation.grammar.GrammarCache (regex
    constraints only: outlines-core has no context-free grammars)."""

    def __init__(self, model, tokenizer, vocab_size: int) -> None:
        import outlines
        from outlines.backends.outlines_core import OutlinesCoreBackend

        self.vocabulary = OutlinesCoreBackend(outlines.from_transformers(model, tokenizer)).vocabulary
        self.vocab_size = vocab_size
        self._index: dict[str, object] = {}

    def masks(self, c, rows: int):
        from outlines_core import Index

        if c.value not in self._index:
            self._index[c.value] = Index(c.value, self.vocabulary)
        return OutlinesMasks(self._index[c.value], rows, self.vocab_size)


class OutlinesMasks:
    def __init__(self, index, rows: int, vocab_size: int) -> None:
        from outlines_core import Guide
        from outlines_core.kernels.torch import allocate_token_bitmask

        self.guides = [Guide(index) for _ in range(rows)]
        self.bitmasks = [allocate_token_bitmask(vocab_size) for _ in range(rows)]

    def apply(self, logits, rows):
        from outlines_core.kernels.torch import apply_token_bitmask_inplace, fill_next_token_bitmask

        logits = logits.float().contiguous()
        for b, r in enumerate(rows):
            fill_next_token_bitmask(self.guides[r], self.bitmasks[r])
            apply_token_bitmask_inplace(logits[b:b + 1], self.bitmasks[r])
        return logits

    def advance(self, rows, tokens):
        for r, t in zip(rows, tokens):
            if not self.guides[r].is_finished():
                self.guides[r].advance(int(t))


def engines(spec: dict) -> dict:
    """One built-in constraint (the variant): every arm over the same prompts, interleaved over rounds."""
    from humpback.builtin_names import resolve
    from humpback.evaluation.replicates import mean_interval
    from humpback.generation.base import SamplingParams
    from humpback.generation.constraints import parse_constraint
    from humpback.generation.grammar import GrammarCache
    from humpback.generation.hf import HFGenerator

    name, repeats, max_new_tokens = spec["variant"], spec["reps"], spec["max_new_tokens"]
    gen = HFGenerator(resolve(spec["model"]), device="cpu", batch_size=spec["batch_size"])
    width = gen.model.get_output_embeddings().weight.shape[0]
    prompts = (PROMPTS * spec["prompts"])[: spec["prompts"]]
    caches = {"xgrammar": GrammarCache(gen.tokenizer, width, gen.eos_token_ids),
              "outlines-core": OutlinesCache(gen.model, gen.tokenizer, width)}
    c = parse_constraint(f"builtin:{name}", max_new_tokens)
    compile_s = {}
    for engine, cache in caches.items():
        t0 = time.perf_counter()
        cache.masks(c, 1)  # compile once, outside the timed runs
        compile_s[engine] = time.perf_counter() - t0
    rates: dict[str, list[float]] = {arm: [] for arm in ENGINES}
    matched = {arm: 0 for arm in ENGINES}
    for r in range(-1, repeats):  # round -1 warms each arm up (caches, allocations): not counted
        for arm in ENGINES:
            gen._grammar_cache = caches.get(arm)
            params = SamplingParams(temperature=spec["temperature"], max_new_tokens=max_new_tokens,
                                    seed=max(r, 0), constraint=None if arm == "none" else c)
            before, t0 = gen.usage, time.perf_counter()
            texts = gen.generate(prompts, params)
            seconds = time.perf_counter() - t0
            if r < 0:
                continue
            rates[arm].append((gen.usage - before).generated_tokens / seconds)
            matched[arm] += sum(c.check(t) for t in texts)
    gen.close()
    rows = [{"constraint": f"builtin:{name}", "engine": arm, "match_rate": matched[arm] / (len(prompts) * repeats),
             "tokens_per_s": statistics.mean(rates[arm]), "tokens_per_s_ci95": mean_interval(rates[arm])["ci"],
             "compile_s": compile_s.get(arm)} for arm in ENGINES]
    for row in rows:
        harness.log(json.dumps(row))
    return {"model": spec["model"], "prompts": len(prompts), "max_new_tokens": max_new_tokens,
            "temperature": spec["temperature"], "repeats": repeats, "rows": rows}


def judge(spec: dict) -> dict:
    """The rating judge in generate mode on labelled dev pairs, without and with ``builtin:score``."""
    from humpback.builtin_names import resolve
    from humpback.config import CurateConfig
    from humpback.data.records import iter_records
    from humpback.evaluation.exact import wilson_interval
    from humpback.generation.base import SamplingParams
    from humpback.generation.constraints import parse_constraint
    from humpback.generation.hf import HFGenerator
    from humpback.judges.health import auc, auc_interval
    from humpback.judges.rating import judge_prompts
    from humpback.scoring import parse_score

    tokens = spec["judge_tokens"]
    every = [r for _, r in iter_records(resolve("builtin:assistant-dev"))]
    step = max(1, len(every) // spec["pairs"])  # spread over the file: good and bad pairs alike
    rows = [{"candidate_id": str(i), **r} for i, r in enumerate(every[::step][: spec["pairs"]])]
    gen = HFGenerator(resolve(spec["judge_model"]), device="cpu", batch_size=spec["batch_size"])
    cfg = CurateConfig(max_new_tokens=tokens)
    prompts = judge_prompts(gen.tokenizer, rows, cfg, max_tokens=gen.max_prompt_tokens)
    out = {"model": spec["judge_model"], "pairs": len(rows), "max_new_tokens": tokens, "arms": []}
    for constraint in (None, "builtin:score"):
        c = parse_constraint(constraint, tokens) if constraint else None
        t0 = time.perf_counter()
        texts = gen.generate(prompts, SamplingParams(max_new_tokens=tokens, constraint=c))
        seconds = time.perf_counter() - t0
        parsed = [parse_score(t) for t in texts]
        fails = sum(p.score is None for p in parsed)
        scores, positive = [p.score for p in parsed], [r.get("label") == "good" for r in rows]
        arm = {"constraint": constraint, "parse_failures": fails, "parse_failure_rate": fails / len(rows),
               "parse_failure_ci95": list(wilson_interval(fails, len(rows))), "auc": auc(scores, positive),
               "auc_ci95": list(auc_interval(scores, positive)), "seconds_per_pair": seconds / len(rows),
               "scores": scores, "labels": [r.get("label") for r in rows]}
        out["arms"].append(arm)
        harness.log(json.dumps({k: v for k, v in arm.items() if k not in ("scores", "labels")}))
    gen.close()
    return out


# =========================================================================== report


def render_markdown(report: dict) -> str:
    s, r = report["settings"], report["results"]
    lines = ["# Constrained decoding: xgrammar against outlines-core, the rating judge with builtin:score", "",
             f"`{harness.command_line('bench_constraints.py', s)}`", "", harness.machine_line(s), ""]
    problems = [f"- {g}/{v}: {'failed: ' + res['error'][:200] if 'error' in res else 'skipped: ' + res['skipped']}"
                for g, v in MEASUREMENTS for res in [r.get(g, {}).get(v)]
                if res and ("error" in res or "skipped" in res)]
    measured = [r[g][v] for g, v in MEASUREMENTS if g == "engines" and "rows" in r.get(g, {}).get(v, {})]
    if measured:
        e = measured[0]
        lines += [f"Engines: {e['model']}, {e['prompts']} prompts x {e['repeats']} rounds, max_new_tokens "
                  f"{e['max_new_tokens']}, temperature {e['temperature']}; tokens/s is the mean over rounds with "
                  "its t 95% interval", "",
                  "| constraint | engine | answers matching | tokens/s (95% CI) | compile s | peak RSS (MB) |",
                  "|---|---|---|---|---|---|"]
        for res in measured:
            for row in res["rows"]:
                lo, hi = row["tokens_per_s_ci95"]  # [None, None] from a single round
                ci = "one round" if lo is None else f"{lo:.0f}-{hi:.0f}"
                comp = "" if row["compile_s"] is None else f"{row['compile_s']:.2f}"
                lines.append(f"| {row['constraint']} | {row['engine']} | {row['match_rate']:.0%} | "
                             f"{row['tokens_per_s']:.0f} ({ci}) | {comp} | {harness.peak_rss(res)} |")
    j = r.get("judge", {}).get("score", {})
    if "arms" in j:
        lines += ["", f"Rating judge, generate mode: {j['model']}, {j['pairs']} dev pairs, max_new_tokens "
                      f"{j['max_new_tokens']}; peak RSS {harness.peak_rss(j)} MB", "",
                  "| constraint | parse failures (95% CI) | dev AUC (bootstrap 95% CI) | seconds per pair |",
                  "|---|---|---|---|"]
        num = lambda x: "n/a" if x is None else f"{x:.2f}"  # noqa: E731
        for a in j["arms"]:
            lo, hi = a["parse_failure_ci95"]
            alo, ahi = a["auc_ci95"]
            lines.append(f"| {a['constraint'] or 'none'} | {a['parse_failures']}/{j['pairs']} "
                         f"({a['parse_failure_rate']:.0%}; {lo:.0%}-{hi:.0%}) | {num(a['auc'])} "
                         f"({num(alo)}-{num(ahi)}) | {a['seconds_per_pair']:.2f} |")
    if problems:
        lines += ["", "Not measured:", *problems]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
