#!/usr/bin/env python
# python scripts/bench_self_instruct.py --output runs/benchmark
"""Speed of the two methods issue 15 added, each side by side with what it replaces, in one run.

    python scripts/bench_self_instruct.py --output runs/benchmark                 # 10,000 against 10,000
    python scripts/bench_self_instruct.py --new 2000 --pool 2000 --reference-sample 10 --output /tmp/b  # a quick look
    python scripts/bench_self_instruct.py --reduced --output /tmp/bench           # seconds: what the test suite runs

1. ``rouge/filter``, Self-Instruct's ROUGE-L filter: N (``--new``) generated instructions filtered one by
   one against a pool that starts with P (``--pool``) tasks (each kept instruction joins it), as the tasks
   stage does.
   - reference: the reference implementation's approach, ``rouge_score``'s ``RougeScorer(["rougeL"])``
     on every (new, pool) pair. It is too slow to run in full, so the first ``--reference-sample``
     instructions are scored against the whole pool, the time per pair measured, and the full run's
     time extrapolated from the number of pairs the full run has (the pool size before each
     instruction, summed). The reference's own ``multiprocessing.Pool(4)`` (made afresh for every
     instruction) divides its time by at most the cores there are (2 on the CI machine) and adds a
     pool start per instruction; it is left out, in its favour.
   - humpback: :class:`humpback.data.rouge.RougePool` over all N. Its decisions on the sampled
     instructions are checked against the reference's.
   The instructions are a verb and pieces of two sentences of Python's reference documentation, a third
   of them near-copies (words dropped, inserted or swapped) of earlier ones, so both verdicts occur.
2. ``judges/rubric-vs-rating``, rubric judging against rating-judge logits mode, on the same (instruction,
   output) pairs (``--judge-pairs``) with the tiny model and the hf backend: pairs per second (the rubric
   asks each of its principles in its own forward pass; the rating judge reads P("1".."5") in one).

Timings on a shared machine are noisy: each judge measurement is repeated ``--reps`` times, alternating,
and the median kept, and both wall-clock and CPU seconds (``time.process_time``, all threads of this
process) are written; the ratios are taken on CPU seconds, which another job's load on the machine does not
inflate. Each measurement runs in its own process (``--no-isolate`` keeps them in this one), so its peak
memory is its own. Writes OUTPUT/bench_self_instruct.json and .md; the headline ratios are
``speedups.rouge_filter`` and ``speedups.rating_over_rubric``.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from pathlib import Path

import harness

GROUPS = ("rouge", "judges")
MEASUREMENTS = (("rouge", "filter"), ("judges", "rubric-vs-rating"))
FULL = {"new": 10_000, "pool": 10_000, "reference_sample": 20, "judge_pairs": 48, "reps": 3}
REDUCED = {"new": 300, "pool": 300, "reference_sample": 3, "judge_pairs": 4, "reps": 1}
HELP = {"new": "generated instructions to filter", "pool": "tasks in the pool before the first",
        "reference_sample": "instructions the reference scores in full", "judge_pairs": "pairs each judge scores",
        "reps": "repetitions of each judge, alternating (the median is reported)"}


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    harness.add_common_args(p, GROUPS, "not used: both measurements take their settings from the options below")
    harness.add_count_args(p, FULL, REDUCED, HELP)
    args = p.parse_args(argv)
    harness.apply_counts(args, FULL, REDUCED)
    if args.recipe:
        p.error("--recipe: this benchmark has no recipe settings (the tiny model, the hf backend)")
    if min(args.new, args.pool, args.reference_sample, args.judge_pairs, args.reps) < 1:
        p.error("--new, --pool, --reference-sample, --judge-pairs and --reps must be >= 1")
    if args.reference_sample > args.new:
        p.error(f"--reference-sample {args.reference_sample} is more than --new {args.new}")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.worker:
        return harness.worker_main(args.worker, measure)
    groups = harness.chosen_groups(args, GROUPS, "the other steps: scripts/benchmark.py")
    if groups is None:
        return 2
    settings = {**harness.recipe_settings(args), **{k: getattr(args, k) for k in FULL}, "machine": harness.machine()}
    out_dir = Path(args.output)
    report = {"speedups": {}, "settings": settings, "results": {}}

    def write(results: dict) -> None:
        report["results"] = results
        rouge = results.get("rouge", {}).get("filter", {})
        judges = results.get("judges", {}).get("rubric-vs-rating", {})
        report["speedups"] = {"rouge_filter": rouge.get("speedup"),
                              "rating_over_rubric": judges.get("rating_over_rubric")}
        (out_dir / "bench_self_instruct.json").write_text(json.dumps(report, indent=2) + "\n")
        (out_dir / "bench_self_instruct.md").write_text(render_markdown(report))

    failed = harness.run_all(__file__, MEASUREMENTS, groups, settings, out_dir, args.isolate, measure, write)
    harness.log(f"wrote {out_dir / 'bench_self_instruct.json'} and {out_dir / 'bench_self_instruct.md'}")
    return 1 if failed else 0


# =========================================================================== measurements


def measure(spec: dict) -> dict:
    if spec["group"] == "rouge":
        with harness.PeakMemory() as mem:
            out = bench_rouge(spec["new"], spec["pool"], spec["reference_sample"])
    else:
        with harness.PeakMemory() as mem:
            out = bench_judges(spec["judge_pairs"], spec["reps"])
    return {**out, **mem.figures()}


def instructions(n: int, seed: int = 0) -> list[str]:
    """``n`` instruction-like texts: a verb, then pieces of two sentences of Python's documentation
    spliced together (so most are new), a third of them near-copies of earlier ones."""
    import pydoc_data.topics

    sentences = sorted({" ".join(s.split()) for text in pydoc_data.topics.topics.values()
                        for s in text.replace("\n", " ").split(". ") if 4 <= len(s.split()) <= 30})
    verbs = ["Explain", "Describe", "Summarise", "Rewrite", "Classify", "List", "Compare", "Translate", "Find",
             "Give an example of", "Tell me whether", "Write a question about", "Check if", "Correct"]
    rng = random.Random(seed)
    out: list[str] = []
    while len(out) < n:
        if out and rng.random() < 0.33:
            words = rng.choice(out).split()
            for _ in range(rng.randint(1, 4)):
                i = rng.randrange(len(words))
                op = rng.random()
                if op < 0.4 and len(words) > 3:
                    del words[i]
                elif op < 0.7:
                    words.insert(i, rng.choice(["the", "all", "given", "new", "each"]))
                else:
                    j = rng.randrange(len(words))
                    words[i], words[j] = words[j], words[i]
        else:
            a, b = rng.choice(sentences).split(), rng.choice(sentences).split()
            words = (rng.choice(verbs).split() + a[rng.randrange(max(1, len(a) - 4)):][: rng.randint(3, 12)]
                     + b[rng.randrange(max(1, len(b) - 4)):][: rng.randint(3, 12)])
        out.append(" ".join(words))
    return out


def bench_rouge(n_new: int, n_pool: int, sample: int, threshold: float = 0.7) -> dict:
    from rouge_score import rouge_scorer

    from humpback.data.rouge import RougePool

    texts = instructions(n_pool + n_new)
    pool_texts, new = texts[:n_pool], texts[n_pool:]

    started, cpu = time.perf_counter(), time.process_time()
    pool = RougePool(pool_texts, threshold)
    index = time.process_time() - cpu
    verdicts, sizes = [], []
    for text in new:
        sizes.append(len(pool))
        verdicts.append(pool.add_if_novel(text).novel)
    ours_wall, ours = time.perf_counter() - started, time.process_time() - cpu

    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
    reference_pool = list(pool_texts)
    pairs = 0
    agree = 0
    started, cpu = time.perf_counter(), time.process_time()
    for text, verdict in zip(new[:sample], verdicts):
        scores = [scorer.score(text, p)["rougeL"].fmeasure for p in reference_pool]
        pairs += len(scores)
        novel = max(scores) <= threshold
        agree += novel == verdict
        if novel:
            reference_pool.append(text)
    sampled_wall, sampled = time.perf_counter() - started, time.process_time() - cpu
    per_pair = sampled / pairs
    total_pairs = sum(sizes)
    reference = per_pair * total_pairs
    return {"new_instructions": n_new, "pool_start": n_pool, "kept": sum(verdicts),
            "dropped_as_similar": n_new - sum(verdicts), "pool_end": len(pool),
            "humpback_cpu_seconds": round(ours, 3), "humpback_wall_seconds": round(ours_wall, 3),
            "humpback_index_cpu_seconds": round(index, 3),
            "humpback_exact_lcs_pairs": pool.pairs_scored, "all_pairs": total_pairs,
            "reference_sampled_instructions": sample, "reference_sampled_pairs": pairs,
            "reference_sampled_cpu_seconds": round(sampled, 3),
            "reference_sampled_wall_seconds": round(sampled_wall, 3),
            "reference_cpu_us_per_pair": round(per_pair * 1e6, 2),
            "reference_cpu_seconds_extrapolated": round(reference, 1), "speedup": round(reference / ours, 1),
            "decisions_equal_on_sample": f"{agree}/{sample}",
            "note": f"reference extrapolated from {sample} instructions x the pool ({pairs} pairs) to all "
                    f"{total_pairs} pairs, single process (its Pool(4) left out)"}


def bench_judges(n_pairs: int, repeats: int) -> dict:
    from humpback.chat import messages_for, render_prompt
    from humpback.config import CurateConfig
    from humpback.generation.hf import HFGenerator
    from humpback.judges.rubric import ANSWERS, load_rubric
    from humpback.scoring import CHOICES
    from humpback.judges.rating import SCORE_PREFILL, judge_prompts
    from humpback.tiny import materialize

    seed = [json.loads(line) for line in open(materialize("python-docs-seed"))]
    pairs = [{"candidate_id": str(i), "instruction": r["instruction"], "output": r["output"]}
             for i, r in enumerate((seed * (n_pairs // len(seed) + 1))[:n_pairs])]
    gen = HFGenerator(str(materialize("tiny-llama")), batch_size=16)
    cfg = CurateConfig(mode="logits")
    rubric = load_rubric(None)
    rating_prompts = judge_prompts(gen.tokenizer, pairs, cfg, SCORE_PREFILL)
    rubric_prompts = [render_prompt(gen.tokenizer, messages_for(rubric.question(p, c["instruction"], c["output"]),
                                                                system=cfg.system_prompt))
                      for c in pairs for p in rubric.principles]
    timings: dict[str, list[float]] = {"rating_logits": [], "rubric": []}
    wall: dict[str, list[float]] = {"rating_logits": [], "rubric": []}
    for _ in range(repeats):  # alternate, so drift in the machine's load hits both alike
        for name, run in (("rating_logits", lambda: gen.choice_probs(rating_prompts, CHOICES)),
                          ("rubric", lambda: gen.answer_logprobs(rubric_prompts, ANSWERS))):
            t, cpu = time.perf_counter(), time.process_time()
            run()
            timings[name].append(time.process_time() - cpu)
            wall[name].append(time.perf_counter() - t)
    gen.close()
    med = {k: statistics.median(v) for k, v in timings.items()}
    return {"pairs": n_pairs, "principles": len(rubric.principles), "repeats": repeats, "model": "builtin:tiny-llama",
            "timed_on": "cpu seconds (medians)",
            "backend": "hf (cpu)", "rating_logits_pairs_per_s": round(n_pairs / med["rating_logits"], 2),
            "rubric_pairs_per_s": round(n_pairs / med["rubric"], 2),
            "rubric_forward_passes_per_s": round(n_pairs * len(rubric.principles) / med["rubric"], 2),
            "rating_over_rubric": round(med["rubric"] / med["rating_logits"], 2),
            "cpu_seconds": {k: [round(x, 3) for x in v] for k, v in timings.items()},
            "wall_seconds": {k: [round(x, 3) for x in v] for k, v in wall.items()}}


# =========================================================================== report


def render_markdown(report: dict) -> str:
    s, r = report["settings"], report["results"]
    lines = ["# Self-Instruct's ROUGE-L filter and the rubric judge, against what they replace", "",
             f"`{harness.command_line('bench_self_instruct.py', s)}`", "",
             harness.machine_line(s) + " Times are CPU seconds of the process; the ratios are what to read.", ""]
    lines += harness.table(MEASUREMENTS, r, ["baseline", "new", "ratio", "peak RSS (MB)", "notes"], _row)
    return "\n".join(lines) + "\n"


def _row(group: str, variant: str, res: dict) -> list[str]:
    fmt = harness.fmt
    if group == "rouge":
        return [f"{fmt(res['reference_cpu_us_per_pair'])} us a pair, "
                f"~{fmt(res['reference_cpu_seconds_extrapolated'], 0)} s extrapolated",
                f"{fmt(res['humpback_cpu_seconds'])} s ({fmt(res['humpback_index_cpu_seconds'])} s to index; "
                f"{res['humpback_exact_lcs_pairs']:,} exact LCS)", f"{fmt(res['speedup'], 1)}x",
                harness.peak_rss(res), f"{res['new_instructions']:,} new against {res['pool_start']:,} "
                f"({res['pool_end']:,} at the end; {res['all_pairs']:,} pairs); decisions equal on "
                f"{res['decisions_equal_on_sample']} sampled"]
    return [f"rating judge, logits: {fmt(res['rating_logits_pairs_per_s'])} pairs/s",
            f"rubric, {res['principles']} principles: {fmt(res['rubric_pairs_per_s'])} pairs/s "
            f"({fmt(res['rubric_forward_passes_per_s'])} forward passes/s)",
            f"rubric costs {fmt(res['rating_over_rubric'])}x", harness.peak_rss(res),
            f"{res['pairs']} pairs, {res['model']}, {res['backend']}, median of {res['repeats']}"]


if __name__ == "__main__":
    sys.exit(main())
