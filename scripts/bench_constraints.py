"""Constrained decoding on the hf backend, measured: xgrammar against outlines-core, and the rating judge
with and without the score constraint.

Part ``engines``: for each built-in constraint, the same prompts are generated unconstrained, with
xgrammar's masks (what humpback uses) and with outlines-core's (the engine of the ``outlines`` library),
in the same decode loop (:class:`humpback.generation.decoding.Decoder`), interleaved over ``--repeats``
rounds; each arm's share of answers that match the format, its generated tokens per second (mean and a
t 95% interval over rounds) and its one-off compile time are written side by side.

Part ``judge``: the rating judge in generate mode on the first ``--pairs`` labelled dev pairs, without and
with ``builtin:score``: parse-failure rate and seconds per pair.

    OMP_NUM_THREADS=1 nice -n 5 python scripts/bench_constraints.py --out bench-constraints.json \\
        --model builtin:tiny-llama --judge-model builtin:smollm2-135m-instruct

Writes the figures as JSON to ``--out`` and a Markdown table next to it (``.md``).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from humpback.evaluation.exact import wilson_interval  # noqa: E402
from humpback.evaluation.replicates import mean_interval  # noqa: E402

PROMPTS = ["Write one instruction that this text answers: The with statement wraps a block in a context manager.",
           "Rate the answer. Instruction: sort a list. Answer: use sorted(). Give brief reasoning, then Score:",
           "Come up with a series of tasks:\n1. Sort a list of numbers.\n2. Name three colours.\n3.",
           "Explain the Python `for` statement.", "What is a generator?", "Summarise: lists are mutable sequences.",
           "Give an instruction for: dict.get returns a default when the key is missing.", "Score this answer:"]


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


def engines(args) -> dict:
    from humpback.builtin_names import resolve
    from humpback.generation.base import SamplingParams
    from humpback.generation.constraints import BUILTINS, parse_constraint
    from humpback.generation.grammar import GrammarCache
    from humpback.generation.hf import HFGenerator

    gen = HFGenerator(resolve(args.model), device="cpu", batch_size=args.batch_size)
    width = gen.model.get_output_embeddings().weight.shape[0]
    prompts = (PROMPTS * args.prompts)[: args.prompts]
    caches = {"xgrammar": GrammarCache(gen.tokenizer, width, gen.eos_token_ids),
              "outlines-core": OutlinesCache(gen.model, gen.tokenizer, width)}
    out = {"model": args.model, "prompts": len(prompts), "max_new_tokens": args.max_new_tokens,
           "temperature": args.temperature, "repeats": args.repeats, "rows": []}
    for name in BUILTINS:
        c = parse_constraint(f"builtin:{name}", args.max_new_tokens)
        compile_s = {}
        for engine, cache in caches.items():
            t0 = time.perf_counter()
            cache.masks(c, 1)  # compile once, outside the timed runs
            compile_s[engine] = time.perf_counter() - t0
        arms = {"none": [], "xgrammar": [], "outlines-core": []}
        matched = {a: 0 for a in arms}
        for r in range(-1, args.repeats):  # round -1 warms each arm up (caches, allocations): not counted
            for arm in arms:
                gen._grammar_cache = caches.get(arm)
                params = SamplingParams(temperature=args.temperature, max_new_tokens=args.max_new_tokens,
                                        seed=max(r, 0), constraint=None if arm == "none" else c)
                before, t0 = gen.usage, time.perf_counter()
                texts = gen.generate(prompts, params)
                seconds = time.perf_counter() - t0
                if r < 0:
                    continue
                arms[arm].append((gen.usage - before).generated_tokens / seconds)
                matched[arm] += sum(c.check(t) for t in texts)
        for arm, rates in arms.items():
            row = {"constraint": f"builtin:{name}", "engine": arm,
                   "match_rate": matched[arm] / (len(prompts) * args.repeats),
                   "tokens_per_s": statistics.mean(rates), "tokens_per_s_ci95": mean_interval(rates)["ci"],
                   "compile_s": compile_s.get(arm)}
            out["rows"].append(row)
            print(json.dumps(row), flush=True)
    gen.close()
    return out


def judge(args) -> dict:
    from humpback.builtin_names import resolve
    from humpback.config import CurateConfig
    from humpback.data.records import iter_records
    from humpback.generation.base import SamplingParams
    from humpback.generation.constraints import parse_constraint
    from humpback.generation.hf import HFGenerator
    from humpback.judges.health import auc, auc_interval
    from humpback.judges.rating import judge_prompts
    from humpback.scoring import parse_score

    every = [r for _, r in iter_records(resolve("builtin:assistant-dev"))]
    step = max(1, len(every) // args.pairs)  # spread over the file: good and bad pairs alike
    rows = [{"candidate_id": str(i), **r} for i, r in enumerate(every[::step][: args.pairs])]
    gen = HFGenerator(resolve(args.judge_model), device="cpu", batch_size=args.batch_size)
    cfg = CurateConfig(max_new_tokens=args.judge_tokens)
    prompts = judge_prompts(gen.tokenizer, rows, cfg, max_tokens=gen.max_prompt_tokens)
    out = {"model": args.judge_model, "pairs": len(rows), "max_new_tokens": args.judge_tokens, "arms": []}
    for spec in (None, "builtin:score"):
        c = parse_constraint(spec, args.judge_tokens) if spec else None
        t0 = time.perf_counter()
        texts = gen.generate(prompts, SamplingParams(max_new_tokens=args.judge_tokens, constraint=c))
        seconds = time.perf_counter() - t0
        parsed = [parse_score(t) for t in texts]
        fails = sum(p.score is None for p in parsed)
        scores, positive = [p.score for p in parsed], [r.get("label") == "good" for r in rows]
        arm = {"constraint": spec, "parse_failures": fails, "parse_failure_rate": fails / len(rows),
               "parse_failure_ci95": list(wilson_interval(fails, len(rows))), "auc": auc(scores, positive),
               "auc_ci95": list(auc_interval(scores, positive)), "seconds_per_pair": seconds / len(rows),
               "scores": scores, "labels": [r.get("label") for r in rows]}
        out["arms"].append(arm)
        print(json.dumps({k: v for k, v in arm.items() if k not in ("scores", "labels")}), flush=True)
    gen.close()
    return out


def markdown(result: dict) -> str:
    lines = []
    if "engines" in result:
        e = result["engines"]
        lines += [f"Engines: {e['model']}, {e['prompts']} prompts x {e['repeats']} rounds, max_new_tokens "
                  f"{e['max_new_tokens']}, temperature {e['temperature']}", "",
                  "| constraint | engine | answers matching | tokens/s (95% CI) | compile s |",
                  "|---|---|---|---|---|"]
        for r in e["rows"]:
            lo, hi = r["tokens_per_s_ci95"]  # [None, None] from a single round
            ci = "one round" if lo is None else f"{lo:.0f}-{hi:.0f}"
            comp = "" if r["compile_s"] is None else f"{r['compile_s']:.2f}"
            lines.append(f"| {r['constraint']} | {r['engine']} | {r['match_rate']:.0%} | {r['tokens_per_s']:.0f} "
                         f"({ci}) | {comp} |")
    if "judge" in result:
        j = result["judge"]
        lines += ["", f"Rating judge, generate mode: {j['model']}, {j['pairs']} dev pairs, max_new_tokens "
                      f"{j['max_new_tokens']}", "",
                  "| constraint | parse failures (95% CI) | dev AUC (bootstrap 95% CI) | seconds per pair |",
                  "|---|---|---|---|"]
        num = lambda x: "n/a" if x is None else f"{x:.2f}"  # noqa: E731
        for a in j["arms"]:
            lo, hi = a["parse_failure_ci95"]
            alo, ahi = a["auc_ci95"]
            lines.append(f"| {a['constraint'] or 'none'} | {a['parse_failures']}/{j['pairs']} "
                         f"({a['parse_failure_rate']:.0%}; "
                         f"{lo:.0%}-{hi:.0%}) | {num(a['auc'])} ({num(alo)}-{num(ahi)}) | {a['seconds_per_pair']:.2f} "
                         "|")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, help="JSON file for the figures (a .md table is written beside it)")
    p.add_argument("--model", default="builtin:tiny-llama")
    p.add_argument("--prompts", type=int, default=16)
    p.add_argument("--max-new-tokens", type=int, default=64)
    p.add_argument("--temperature", type=float, default=0.7)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--judge-model", default=None, help="also run the judge part with this model")
    p.add_argument("--pairs", type=int, default=12)
    p.add_argument("--judge-tokens", type=int, default=128)
    p.add_argument("--skip-engines", action="store_true")
    args = p.parse_args(argv)
    result = {}
    if not args.skip_engines:
        result["engines"] = engines(args)
    if args.judge_model:
        result["judge"] = judge(args)
    out = Path(args.out)
    out.write_text(json.dumps(result, indent=2) + "\n")
    out.with_suffix(".md").write_text(markdown(result))
    print(markdown(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
