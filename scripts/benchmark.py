#!/usr/bin/env python
# python scripts/benchmark.py --output runs/benchmark
"""Throughput of the model steps (augment, curate, train), side by side on one model and machine.

    python scripts/benchmark.py --output runs/benchmark                 # CPU default: the tiny local model
    python scripts/benchmark.py --reduced --output /tmp/bench           # seconds: what the test suite runs
    python scripts/benchmark.py --recipe recipes/small-gpu.yaml generation.batch_size=64 --output runs/bench-gpu
    python scripts/benchmark.py --model Qwen/Qwen2.5-0.5B --backend vllm --output runs/bench-vllm
    python scripts/benchmark.py --backend openai --api-base http://127.0.0.1:8000/v1 --model Qwen/Qwen2.5-0.5B \
        --output runs/bench-server   # --model: the tokenizer and the served name

Models, tokenizers, prompts, sampling and training runs are made by the calls the stages make, from a
RunConfig: ``--recipe RECIPE [key=value ...]`` measures a recipe's model, generation backend and settings,
augment sampling, curate and train settings; without one, the tiny model with the defaults below; the
flags override either. The work is the same whatever the recipe: backward prompts for real segments of
the Python-docs corpus (the default 240 are nearly all of its 246, so that length sorting has a pool to
sort, as in a stage shard of 1,000), judge prompts and the M0 mixture from its seed pairs. It writes
OUTPUT/benchmark.json and OUTPUT/benchmark.md: augmentation docs/s and generated tokens/s (the
generator's own ``usage``), one prompt at a time vs batched vs length-sorted batches; curation pairs/s,
``generate`` (decode a judgement, parse "Score: N") vs ``logits`` (one forward, P("1".."5") after
"Score:"); training tokens/s of ``train_model``, without and with packing. Each measurement runs in its
own process (``--no-isolate``: in this one), ``--reps`` times, reported as the median; the two headline
ratios open the JSON. Corpus preparation, which loads no model, is ``scripts/bench_corpus.py``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import harness

TARGETS = {"augment_sorted_vs_single": 5.0, "curate_logits_vs_generate": 3.0}
GROUPS = ("augment", "curate", "train")
MEASUREMENTS = (("augment", "single"), ("augment", "batched"), ("augment", "sorted"), ("augment", "transformers"),
                ("curate", "generate"), ("curate", "logits"), ("curate", "transformers"), ("train", "plain"),
                ("train", "packed"))
# The workload: always these sizes (--reduced: the second), recipe or not.
WORKLOAD = {"reps": (3, 1), "docs": (240, 4), "pairs": (64, 4), "train_steps": (10, 1)}
# Settings: the recipe's, else these defaults; --reduced always takes the second value.
SETTINGS = {"batch_size": ("generation.batch_size", 16, 2), "max_new_tokens": ("augment.max_new_tokens", 128, 4),
            "curate_max_new_tokens": ("curate.max_new_tokens", 128, 4),
            "train_batch_size": ("train.per_device_train_batch_size", 8, 2),
            "train_max_length": ("train.max_length", 512, 128)}
FLAGS = {"model": "base_model", "backend": "generation.backend", "api_base": "generation.api_base",
         "served_model_name": "generation.served_model_name", "concurrency": "generation.concurrency",
         "device": "generation.device", "dtype": "generation.dtype"}
DEFAULT_RECIPE = {"name": "benchmark", "base_model": "builtin:tiny-llama",
                  "seed": {"path": "builtin:python-docs-seed", "format": "alpaca"},
                  "corpus": {"path": "builtin:python-docs"}, "tracking": {"progress": False},
                  "train": {"gradient_accumulation_steps": 1, "warmup_ratio": 0.0}}


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    harness.add_common_args(p, GROUPS, "benchmark this recipe's settings, with optional dotted overrides")
    p.add_argument("--model", help="base_model: hub id or local path (default: the tiny local Llama)")
    p.add_argument("--backend", choices=("hf", "vllm", "openai"), help="generation.backend")
    p.add_argument("--api-base", help="openai backend: generation.api_base, the server URL up to /v1")
    p.add_argument("--served-model-name", help="openai backend: generation.served_model_name")
    p.add_argument("--concurrency", type=int, help="openai backend: requests in flight (default: --batch-size)")
    p.add_argument("--device", help="generation.device: auto, cpu, cuda, ...")
    p.add_argument("--dtype", choices=("auto", "float32", "bfloat16", "float16"), help="generation.dtype")
    p.add_argument("--threads", type=int, help="torch CPU threads (default: 1 without CUDA, so runs on shared CPUs "
                                               "compare; torch's own default with CUDA)")
    for key, (full, reduced) in WORKLOAD.items():
        p.add_argument("--" + key.replace("_", "-"), type=int, help=f"default {full:,} ({reduced:,} with --reduced)")
    for key, (dotted, full, reduced) in SETTINGS.items():
        p.add_argument("--" + key.replace("_", "-"), type=int,
                       help=f"{dotted} (default: the recipe's, else {full:,}; {reduced:,} with --reduced)")
    args = p.parse_args(argv)
    for key, sizes in WORKLOAD.items():
        if getattr(args, key) is None:
            setattr(args, key, sizes[args.reduced])
    if args.isolate is None:
        args.isolate = not args.reduced
    if min(args.reps, args.docs, args.pairs, args.train_steps) < 1:
        p.error("--reps, --docs, --pairs and --train-steps must be >= 1")
    return args


def build_config(args: argparse.Namespace):
    """The RunConfig measured: the recipe (or DEFAULT_RECIPE), its overrides, then the flags."""
    from humpback.config import load_config

    overrides = [] if not args.recipe else list(args.recipe[1:])
    for key, (dotted, full, reduced) in SETTINGS.items():
        value = getattr(args, key)
        value = value if value is not None else reduced if args.reduced else None if args.recipe else full
        if value is not None:
            overrides.append(f"{dotted}={value}")
    for key, dotted in FLAGS.items():
        if getattr(args, key) is not None:
            overrides.append(f"{dotted}={getattr(args, key)}")
    overrides.append(f"train.max_steps={args.train_steps}")
    if args.reduced:
        overrides.append("generation.max_retries=0")  # a missing server fails at once
    if args.recipe:
        return load_config(args.recipe[0], overrides)
    cfg = load_config(overrides=overrides + [f"train.logging_steps={args.train_steps}"], data=DEFAULT_RECIPE)
    if args.concurrency is None:  # as many requests in flight as the hf backend batches
        cfg = dataclasses.replace(cfg, generation=dataclasses.replace(cfg.generation,
                                                                      concurrency=cfg.generation.batch_size))
    return cfg


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.worker:
        return harness.worker_main(args.worker, measure)
    groups = harness.chosen_groups(args, GROUPS, "corpus and scale: scripts/bench_corpus.py")
    if groups is None:
        return 2
    from humpback.config import to_dict
    from humpback.errors import HumpbackError
    from humpback.run import Sources

    try:
        cfg = build_config(args)
        sources = Sources.resolve(cfg)
    except HumpbackError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    import torch

    cuda = torch.cuda.is_available()
    g = cfg.generation
    settings = {
        **harness.recipe_settings(args), "model": cfg.base_model, "model_path": sources.base_model,
        "judge": cfg.curate.judge,
        "backend": g.backend, "api_base": g.api_base, "served_model_name": g.served_model_name or sources.base_model,
        "concurrency": g.concurrency, "device": g.device, "dtype": g.dtype,
        "threads": args.threads if args.threads is not None else (None if cuda else 1),
        "reps": args.reps, "docs": args.docs, "pairs": args.pairs,
        "batch_size": g.batch_size, "max_new_tokens": cfg.augment.max_new_tokens,
        "curate_max_new_tokens": cfg.curate.max_new_tokens, "train_steps": cfg.train.max_steps,
        "train_batch_size": cfg.train.per_device_train_batch_size, "train_max_length": cfg.train.max_length,
        "config": to_dict(cfg), "machine": harness.machine(torch.cuda.get_device_name(0) if cuda else None),
    }
    out_dir = Path(args.output)
    report = {"augment_sorted_vs_single": None, "curate_logits_vs_generate": None, "targets": TARGETS,
              "targets_met": {}, "settings": settings, "results": {}}

    def write(results: dict) -> None:
        finish(report, results)
        (out_dir / "benchmark.json").write_text(json.dumps(report, indent=2) + "\n")
        (out_dir / "benchmark.md").write_text(render_markdown(report))

    failed = harness.run_all(__file__, MEASUREMENTS, groups, settings, out_dir, args.isolate, measure, write)
    harness.log(f"wrote {out_dir / 'benchmark.json'} and {out_dir / 'benchmark.md'}")
    return 1 if failed else 0


# =========================================================================== measurements


def measure(spec: dict) -> dict:
    from humpback.config import load_config
    from humpback.progress import progress_bars
    from humpback.run import Sources

    if spec.get("threads"):
        import torch

        torch.set_num_threads(int(spec["threads"]))
    cfg = load_config(data=spec["config"])
    fn = {"augment": measure_augment, "curate": measure_curate, "train": measure_train}[spec["group"]]
    with progress_bars(False):
        return fn(spec, cfg, Sources.resolve(cfg))


def seed_pairs(n: int) -> list[dict]:
    """``n`` (id, instruction, output) pairs: the Python-docs seed set, repeated if needed."""
    from humpback.config import SeedConfig
    from humpback.data.seed import load_seed
    from humpback.builtin_names import resolve

    pairs = load_seed(SeedConfig(path=resolve("builtin:python-docs-seed"), format="alpaca")).pairs
    return [{"id": f"seed-{i}", "instruction": pairs[i % len(pairs)].instruction,
             "output": pairs[i % len(pairs)].output} for i in range(n)]


def segment_texts(n: int) -> list[str]:
    """``n`` real segments of the Python-docs corpus, spread over it."""
    from humpback.config import CorpusConfig
    from humpback.data.corpus import iter_documents
    from humpback.data.segment import Segmenter
    from humpback.builtin_names import resolve

    cfg = CorpusConfig(path=resolve("builtin:python-docs"), drop_seed_overlap=False)
    segments = [s.text for s in Segmenter(cfg).segments(iter_documents(cfg))]
    step = max(1, len(segments) // n)
    return [segments[(i * step) % len(segments)] for i in range(n)]


def open_generator(cfg, model: str, revision, tokenizer, batch_size: int, sort_by_length: bool):
    from humpback.generation import load_generator

    gen_cfg = dataclasses.replace(cfg.generation, batch_size=batch_size, sort_by_length=sort_by_length,
                                  concurrency=cfg.generation.concurrency if batch_size > 1 else 1)
    return load_generator(gen_cfg, model, revision=revision, seed=cfg.random_seed, tokenizer=tokenizer)


def _generate(gen, prompts: list[str], params, variant: str, backend: str) -> list[str]:
    """One pass of a variant: hf batches itself; other backends get one prompt per call for
    ``single`` and everything in one call (longest first for ``sorted``) otherwise."""
    if backend == "hf" or variant == "batched":
        return gen.generate(prompts, params)
    if variant == "single":
        return [gen.generate([p], params)[0] for p in prompts]
    order = sorted(range(len(prompts)), key=lambda i: -len(prompts[i]))
    out = [""] * len(prompts)
    for i, text in zip(order, gen.generate([prompts[i] for i in order], params)):
        out[i] = text
    return out


def measure_augment(spec: dict, cfg, src) -> dict:
    from humpback.chat import load_chat_tokenizer
    from humpback.generation import SamplingParams
    from humpback.generation.base import encode_prompts
    from humpback.data.instructions import backward_prompts, backward_sampling

    variant, backend = spec["variant"], cfg.generation.backend
    tok = load_chat_tokenizer(src.base_model, cfg.base_model_revision)
    prompts = backward_prompts(tok, segment_texts(spec["docs"]))
    batch = 1 if variant == "single" else cfg.generation.batch_size
    params = backward_sampling(cfg.augment, cfg.random_seed)
    if variant == "transformers":
        gen = TransformersGenerate(src.base_model, cfg.base_model_revision, tok, batch, cfg.generation.device)
    else:
        gen = open_generator(cfg, src.base_model, cfg.base_model_revision, tok, batch, variant == "sorted")
    try:
        _generate(gen, prompts[:2], SamplingParams(max_new_tokens=2), variant, backend)  # warm-up

        def run() -> dict:
            before = gen.usage
            _generate(gen, prompts, params, variant, backend)
            used = gen.usage - before
            return {"docs": len(prompts), "generated_tokens": used.generated_tokens if used.exact else None,
                    "prompt_tokens": used.prompt_tokens if used.exact else None, "calls": used.calls}

        reps, mem = harness.timed_reps(spec["reps"], run)
        exact = gen.usage.exact
    finally:
        gen.close()
    lengths = [len(ids) for ids in encode_prompts(tok, prompts, cfg.generation.max_prompt_tokens)]
    out = harness.summary(reps, mem, {"docs_per_s": "docs", "generated_tokens_per_s": "generated_tokens"})
    generated = [r["generated_tokens"] for r in reps if r["generated_tokens"] is not None]
    out.update(batch_size=batch, sort_by_length=variant == "sorted", max_new_tokens=params.max_new_tokens,
               runner="transformers generate()" if variant == "transformers" else f"humpback {backend} backend",
               token_count="exact" if exact else "not counted (the server sent no usage)",
               prompt_tokens_median=statistics.median(lengths), prompt_tokens_max=max(lengths),
               new_tokens_fraction=harness.rnd(statistics.median(generated) / (len(prompts) * params.max_new_tokens))
               if generated else None, sampling={"temperature": params.temperature, "top_p": params.top_p})
    return out


def measure_curate(spec: dict, cfg, src) -> dict:
    from humpback.chat import load_chat_tokenizer
    from humpback.generation import SamplingParams
    from humpback.scoring import CHOICES, parse_score, score_from_probs
    from humpback.judges.rating import SCORE_PREFILL, judge_prompts, judge_sampling

    variant = spec["variant"]
    judge, revision = (src.judge, None) if src.judge else (src.base_model, cfg.base_model_revision)
    tok = load_chat_tokenizer(judge, revision)
    pairs = seed_pairs(spec["pairs"])
    prompts = judge_prompts(tok, pairs, cfg.curate, SCORE_PREFILL if variant == "logits" else "")
    if variant == "transformers":
        gen = TransformersGenerate(judge, revision, tok, cfg.generation.batch_size, cfg.generation.device)
    else:
        gen = open_generator(cfg, judge, revision, tok, cfg.generation.batch_size, cfg.generation.sort_by_length)
    params = judge_sampling(cfg.curate, cfg.random_seed)
    try:
        if variant == "logits":
            gen.choice_probs(prompts[:2], CHOICES)  # warm-up

            def run() -> dict:
                return {"pairs": len([score_from_probs(cp.probs) for cp in gen.choice_probs(prompts, CHOICES)])}
        else:
            gen.generate(prompts[:2], SamplingParams(max_new_tokens=2))

            def run() -> dict:
                parsed = [parse_score(text) for text in gen.generate(prompts, params)]
                return {"pairs": len(parsed), "parsed": sum(p.status == "ok" for p in parsed)}

        reps, mem = harness.timed_reps(spec["reps"], run)
    finally:
        gen.close()
    out = harness.summary(reps, mem, {"pairs_per_s": "pairs"})
    out.update(batch_size=cfg.generation.batch_size, judge=gen.name,
               max_new_tokens=params.max_new_tokens if variant != "logits" else None)
    return out


class TransformersGenerate:
    """The peer a user would otherwise write: transformers' own ``model.generate`` on left-padded batches
    in the prompts' order, with the same sampling settings; its usage counts the tokens it generated."""

    def __init__(self, model: str, revision, tokenizer, batch_size: int, device: str):
        from transformers import AutoModelForCausalLM

        from humpback.device import pick_device
        from humpback.generation.base import Usage

        self.name, self.tok = f"{model} (transformers generate)", tokenizer
        self.batch_size, self.device = batch_size, pick_device(device)
        self.model = AutoModelForCausalLM.from_pretrained(model, **({"revision": revision} if revision else {}))
        self.model.to(self.device).eval()
        self.usage, self.Usage = Usage(), Usage

    def generate(self, prompts: list[str], params) -> list[str]:
        import torch

        self.tok.padding_side, out = "left", []
        eos = self.model.generation_config.eos_token_id
        eos = set(eos if isinstance(eos, list) else [eos]) | {self.tok.eos_token_id}
        sampling = dict(do_sample=True, temperature=params.temperature, top_p=params.top_p) \
            if params.temperature > 0 else dict(do_sample=False)
        for i in range(0, len(prompts), self.batch_size):
            enc = self.tok(prompts[i:i + self.batch_size], return_tensors="pt", padding=True, add_special_tokens=False)
            with torch.no_grad():
                ids = self.model.generate(**enc.to(self.device), max_new_tokens=params.max_new_tokens,
                                          pad_token_id=self.tok.pad_token_id,
                                          **sampling)[:, enc["input_ids"].shape[1]:]
            ends = [next((j + 1 for j, t in enumerate(row) if t in eos), len(row)) for row in ids.tolist()]
            out += [self.tok.decode(row[:n], skip_special_tokens=True) for row, n in zip(ids.tolist(), ends)]
            self.usage += self.Usage(prompts=len(ends), prompt_tokens=int(enc["attention_mask"].sum()),
                                     generated_tokens=sum(ends))
        self.usage += self.Usage(calls=1)
        return out

    def close(self) -> None:
        del self.model


def measure_train(spec: dict, cfg, src) -> dict:
    from humpback.data.mixture import mixture_rows
    from humpback.store import write_table
    from humpback.training import TrainJob, train_model

    tcfg = dataclasses.replace(cfg.train, packing=spec["variant"] == "packed")
    per_step = tcfg.per_device_train_batch_size * tcfg.gradient_accumulation_steps
    rows = mixture_rows(seed_pairs(max(spec["pairs"], tcfg.max_steps * per_step)), [])
    job = TrainJob(src.base_model, tcfg, seed=cfg.random_seed, revision=cfg.base_model_revision, progress=False)
    reps = []
    with harness.PeakMemory() as mem:
        for _ in range(spec["reps"]):
            with tempfile.TemporaryDirectory(prefix="humpback-bench-train-") as tmp:
                write_table(Path(tmp) / "train.parquet", rows)  # what `accelerate launch` reads
                start = time.perf_counter()
                result = train_model(job, rows, Path(tmp) / "train.parquet", Path(tmp) / "model")
                wall = time.perf_counter() - start
            # Trainer time only (model loading and saving excluded); tokens are non-padding inputs.
            reps.append({"seconds": result["runtime_s"] or wall, "wall_seconds": wall, "tokens": result["tokens"],
                         "steps": result["steps"]})
    out = harness.summary(reps, mem, {"tokens_per_s": "tokens"})
    out.update(packing=tcfg.packing, max_steps=tcfg.max_steps, batch_size=tcfg.per_device_train_batch_size,
               max_length=tcfg.max_length, lora=not tcfg.full_finetune, examples=len(rows))
    return out


# =========================================================================== report


def finish(report: dict, results: dict) -> None:
    report["results"] = r = results
    report["augment_sorted_vs_single"] = harness.ratio(r, "augment", "sorted", "single", "docs_per_s")
    report["curate_logits_vs_generate"] = harness.ratio(r, "curate", "logits", "generate", "pairs_per_s")
    report["other_ratios"] = {
        "augment_sorted_vs_transformers": harness.ratio(r, "augment", "sorted", "transformers", "docs_per_s"),
        "curate_generate_vs_transformers": harness.ratio(r, "curate", "generate", "transformers", "pairs_per_s"),
        "curate_logits_vs_transformers": harness.ratio(r, "curate", "logits", "transformers", "pairs_per_s"),
        "augment_batched_vs_single": harness.ratio(r, "augment", "batched", "single", "docs_per_s"),
        "augment_sorted_vs_batched": harness.ratio(r, "augment", "sorted", "batched", "docs_per_s"),
        "train_packed_vs_plain": harness.ratio(r, "train", "packed", "plain", "tokens_per_s"),
    }
    report["targets_met"] = {k: (report[k] >= t if report[k] is not None else None) for k, t in TARGETS.items()}


def render_markdown(report: dict) -> str:
    s, r, fmt = report["settings"], report["results"], harness.fmt
    lines = ["# humpback throughput benchmark", "", f"`{harness.command_line('benchmark.py', s)}`", "",
             f"Model `{s['model']}`{', judge `' + s['judge'] + '`' if s['judge'] else ''}, backend `{s['backend']}`, "
             f"device `{s['device']}`, dtype `{s['dtype']}`, torch threads {s['threads'] or 'default'}; "
             + harness.machine_line(s), "",
             "| ratio | value | target | met |", "|---|---:|---:|---|"]
    for key, target in TARGETS.items():
        met = report["targets_met"].get(key)
        lines.append(f"| `{key}` | {fmt(report.get(key))}x | >= {target:g}x | "
                     f"{'yes' if met else 'no' if met is False else '-'} |")
    lines += [f"| `{key}` | {fmt(value)}x | | |" for key, value in report.get("other_ratios", {}).items()]
    lines += [""] + harness.table(MEASUREMENTS, r, ["throughput", "tokens/s", "peak RSS (MB)", "CUDA peak (MB)",
                                                        "notes"], _row)
    lines += ["", "Notes:", ""]
    aug = r.get("augment", {}).get("single") or r.get("augment", {}).get("sorted")
    if aug and "error" not in aug:
        fraction = aug["new_tokens_fraction"]
        lines.append(f"- Augmentation: {s['docs']} backward prompts from real Python-docs segments (median "
                     f"{fmt(aug['prompt_tokens_median'], 0)} prompt tokens, max {aug['prompt_tokens_max']}), sampling "
                     f"at temperature {aug['sampling']['temperature']}, top_p {aug['sampling']['top_p']}, up to "
                     f"{aug['max_new_tokens']} new tokens; "
                     f"{fmt(None if fraction is None else 100 * fraction, 0)}% of them were generated (the rest "
                     f"cut by EOS); tokens counted by the generator: {aug['token_count']}.")
    lines.append(f"- Curation: {s['pairs']} Python-docs seed pairs with the paper's judge prompt; `generate` decodes "
                 f"up to {s['curate_max_new_tokens']} tokens and parses 'Score: N'; `logits` reads P('1'..'5') "
                 f"after 'Score:' in one forward pass. Both batched by {s['batch_size']}.")
    lines.append("- `transformers`: the same prompts through transformers' own `model.generate` (left-padded batches "
                 "of the same size in prompt order, the same sampling), the peer a user would otherwise write.")
    lines.append(f"- Training: `train_model` (LoRA unless the recipe says full), {s['train_steps']} steps of "
                 f"{s['train_batch_size']} examples, max_length {s['train_max_length']}, on the M0 mixture; tokens/s "
                 f"counts non-padding input tokens over the trainer's own time (model loading excluded).")
    lines.append("- Peak RSS is the measurement process's own peak (imports and model included). Corpus "
                 "preparation: `scripts/bench_corpus.py`.")
    return "\n".join(lines) + "\n"


def _row(group: str, variant: str, res: dict) -> list[str]:
    fmt, memory = harness.fmt, [harness.peak_rss(res), harness.fmt(res.get("cuda_max_allocated_mb"), 0)]
    if group == "augment":
        return [f"{fmt(res['docs_per_s'])} docs/s", fmt(res["generated_tokens_per_s"], 0), *memory,
                f"{res.get('runner', 'humpback')}, batch {res['batch_size']}"
                f"{', sorted' if res['sort_by_length'] else ''}"]
    if group == "curate":
        note = f"batch {res['batch_size']}" + (f", {res['max_new_tokens']} new tokens"
                                               if res["max_new_tokens"] else "")
        return [f"{fmt(res['pairs_per_s'])} pairs/s", "", *memory, note]
    return [f"{fmt(res['tokens_per_s'], 0)} tokens/s", fmt(res["tokens_per_s"], 0), *memory,
            f"{res['max_steps']} steps"]


if __name__ == "__main__":
    sys.exit(main())
