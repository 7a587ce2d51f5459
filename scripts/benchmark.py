#!/usr/bin/env python
# python scripts/benchmark.py --output runs/benchmark
"""Throughput of every heavy step, side by side on one model and one machine, in one run.

    python scripts/benchmark.py --output runs/benchmark                 # CPU default: the tiny local model
    python scripts/benchmark.py --reduced --output /tmp/bench           # seconds: what the test suite runs
    python scripts/benchmark.py --model Qwen/Qwen2.5-0.5B --output runs/bench-gpu       # any model, GPU if any
    python scripts/benchmark.py --backend vllm --model Qwen/Qwen2.5-0.5B --output runs/bench-vllm
    python scripts/benchmark.py --backend openai --api-base http://127.0.0.1:8000/v1 \\
        --model Qwen/Qwen2.5-0.5B --output runs/bench-server   # --model: the tokenizer and the served name

Writes OUTPUT/benchmark.json and OUTPUT/benchmark.md:

- augmentation: docs/s and generated tokens/s, one prompt at a time vs batched vs length-sorted batches,
  on backward prompts built from real segments of the Python-docs corpus (sampling as the augment stage;
  the default 240 documents are nearly all of its 246 segments, so that length sorting has a pool to
  sort, as it has in a stage shard of ``shard_size`` = 1,000);
- curation: pairs/s for ``generate`` (decode a judgement, parse "Score: N") vs ``logits`` (one forward,
  P("1".."5") after "Score:"), on the Python-docs seed pairs;
- training: tokens/s of :func:`humpback.training.train_sft` with and without packing;
- corpus preparation: docs/s of the real corpus through the Segmenter, and N synthetic documents
  streamed through it (``--corpus-docs``, default 1,000,000), with peak memory.

Each measurement runs in its own process (``--no-isolate`` keeps them in this one), is repeated
``--reps`` times and reported as the median; peak memory is the process's peak RSS (and CUDA max
allocated on a GPU). The two headline ratios sit at the top of the JSON: ``augment_sorted_vs_single``
and ``curate_logits_vs_generate``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path

TARGETS = {"augment_sorted_vs_single": 5.0, "curate_logits_vs_generate": 3.0}
GROUPS = ("augment", "curate", "train", "corpus", "scale")
MEASUREMENTS = (
    ("augment", "single"), ("augment", "batched"), ("augment", "sorted"),
    ("curate", "generate"), ("curate", "logits"),
    ("train", "plain"), ("train", "packed"),
    ("corpus", "docs"), ("scale", "synthetic"),
)
FULL = dict(reps=3, docs=240, batch_size=16, max_new_tokens=128, pairs=64, curate_max_new_tokens=128,
            train_steps=10, train_batch_size=8, train_max_length=512, corpus_docs=1_000_000)
REDUCED = dict(reps=1, docs=4, batch_size=2, max_new_tokens=4, pairs=4, curate_max_new_tokens=4,
               train_steps=1, train_batch_size=2, train_max_length=128, corpus_docs=2_000)


# =========================================================================== command line


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--output", default="runs/benchmark", help="folder for benchmark.json, benchmark.md and logs/")
    p.add_argument("--model", default="builtin:tiny-llama", help="hub id or local path (default: the tiny local Llama)")
    p.add_argument("--backend", choices=("hf", "vllm", "openai"), default="hf", help="generation backend")
    p.add_argument("--api-base", help="openai backend: server URL up to /v1")
    p.add_argument("--served-model-name", help="openai backend: the model name the server knows (default: --model)")
    p.add_argument("--concurrency", type=int,
                   help="openai backend: requests in flight when batched (default: --batch-size)")
    p.add_argument("--device", default="auto", help="hf backend: auto, cpu, cuda, ...")
    p.add_argument("--dtype", default="auto", choices=("auto", "float32", "bfloat16", "float16"))
    p.add_argument("--threads", type=int, default=None,
                   help="torch CPU threads (default: 1 on a machine without CUDA, so runs on shared CPUs compare; "
                        "torch's own default with CUDA)")
    p.add_argument("--reduced", action="store_true", help="tiny counts, one rep, in process: the test suite's mode")
    p.add_argument("--only", help=f"comma-separated groups to run, of {', '.join(GROUPS)}")
    p.add_argument("--isolate", action=argparse.BooleanOptionalAction, default=None,
                   help="one process per measurement, so peak memory is its own (default: on, off with --reduced)")
    for key, value in FULL.items():
        p.add_argument("--" + key.replace("_", "-"), type=int, default=None,
                       help=f"default {value:,} ({REDUCED[key]:,} with --reduced)")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    sizes = REDUCED if args.reduced else FULL
    for key, value in sizes.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.isolate is None:
        args.isolate = not args.reduced
    if args.backend == "openai" and not args.api_base and not args.worker:
        p.error("--backend openai needs --api-base")
    if args.reps < 1 or args.docs < 1 or args.pairs < 1 or args.batch_size < 1:
        p.error("--reps, --docs, --pairs and --batch-size must be >= 1")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.worker:
        return worker_main(args.worker)
    out_dir = Path(args.output)
    (out_dir / "logs").mkdir(parents=True, exist_ok=True)
    groups = set(GROUPS) if not args.only else {g.strip() for g in args.only.split(",") if g.strip()}
    unknown = groups - set(GROUPS)
    if unknown:
        print(f"unknown group(s) {sorted(unknown)}; known: {', '.join(GROUPS)}", file=sys.stderr)
        return 2

    from humpback.tiny import resolve

    settings = _settings(args, resolve(args.model))
    report = {"augment_sorted_vs_single": None, "curate_logits_vs_generate": None, "targets": TARGETS,
              "targets_met": {}, "settings": settings, "results": {}}
    failed = []
    for group, variant in MEASUREMENTS:
        if group not in groups:
            continue
        name = f"{group}/{variant}"
        spec = {"group": group, "variant": variant, **settings}
        print(f"[benchmark] {name} ...", file=sys.stderr, flush=True)
        log = out_dir / "logs" / f"{group}-{variant}.log"
        result = run_isolated(spec, log) if args.isolate else run_in_process(spec)
        report["results"].setdefault(group, {})[variant] = result
        if "error" in result:
            failed.append(name)
            print(f"[benchmark] {name} failed: {result['error']}", file=sys.stderr, flush=True)
        else:
            print(f"[benchmark] {name}: {_headline(group, result)}", file=sys.stderr, flush=True)
        _finish(report)
        write_outputs(report, out_dir)
    print(f"[benchmark] wrote {out_dir / 'benchmark.json'} and {out_dir / 'benchmark.md'}", file=sys.stderr)
    return 1 if failed else 0


def _settings(args: argparse.Namespace, model: str) -> dict:
    import torch

    cuda = torch.cuda.is_available()
    threads = args.threads if args.threads is not None else (None if cuda else 1)
    return {
        "model": args.model, "model_path": model, "backend": args.backend, "api_base": args.api_base,
        "served_model_name": args.served_model_name or model, "concurrency": args.concurrency or args.batch_size,
        "device": args.device, "dtype": args.dtype, "threads": threads, "reduced": args.reduced,
        "isolated": args.isolate, **{k: getattr(args, k) for k in FULL},
        "machine": {"python": platform.python_version(), "platform": platform.platform(), "cpu": _cpu_name(),
                    "cpu_count": os.cpu_count(), "torch": torch.__version__, "transformers": _version("transformers"),
                    "cuda": torch.cuda.get_device_name(0) if cuda else None},
    }


# =========================================================================== running measurements


def run_isolated(spec: dict, log_path: Path) -> dict:
    """One measurement in a fresh interpreter: its peak RSS is its own."""
    with tempfile.TemporaryDirectory(prefix="humpback-bench-") as tmp:
        spec_path, out_path = Path(tmp) / "spec.json", Path(tmp) / "result.json"
        spec_path.write_text(json.dumps({**spec, "result_path": str(out_path)}))
        env = {**os.environ, "TOKENIZERS_PARALLELISM": "false"}
        if spec.get("threads"):
            env["OMP_NUM_THREADS"] = str(spec["threads"])
        with open(log_path, "w") as log:
            try:
                proc = subprocess.run([sys.executable, os.path.abspath(__file__), "--worker", str(spec_path)],
                                      stdout=log, stderr=subprocess.STDOUT, env=env, timeout=6 * 3600)
                code = proc.returncode
            except subprocess.TimeoutExpired:
                code = "timeout"
        if out_path.is_file():
            return json.loads(out_path.read_text())
        tail = log_path.read_text(errors="replace")[-1500:]
        return {"error": f"worker exited with {code}; log {log_path}: ...{tail}"}


def run_in_process(spec: dict) -> dict:
    try:
        return measure(spec)
    except Exception as e:  # noqa: BLE001 - a failed measurement is recorded, the others still run
        return {"error": f"{type(e).__name__}: {e}"}


def worker_main(spec_path: str) -> int:
    spec = json.loads(Path(spec_path).read_text())
    try:
        result = measure(spec)
    except Exception as e:  # noqa: BLE001
        import traceback

        traceback.print_exc()
        result = {"error": f"{type(e).__name__}: {e}"}
    result["peak_rss_process_mb"] = _ru_maxrss_mb()
    Path(spec["result_path"]).write_text(json.dumps(result))
    return 0 if "error" not in result else 1


def measure(spec: dict) -> dict:
    if spec.get("threads") and spec["group"] in ("augment", "curate", "train"):
        import torch

        torch.set_num_threads(int(spec["threads"]))
    fn = {"augment": measure_augment, "curate": measure_curate, "train": measure_train,
          "corpus": measure_corpus, "scale": measure_scale}[spec["group"]]
    return fn(spec)


# =========================================================================== memory


class PeakMemory:
    """Peak RSS over a block, sampled every few milliseconds (and CUDA max allocated, on a GPU)."""

    def __init__(self, interval_s: float = 0.005):
        self.interval_s = interval_s
        self.peak_rss_mb = 0.0
        self.cuda_peak_mb = None
        self._stop = threading.Event()

    def __enter__(self) -> "PeakMemory":
        self.start_rss_mb = _rss_mb()
        self.peak_rss_mb = self.start_rss_mb or 0.0
        if _cuda():
            import torch

            torch.cuda.reset_peak_memory_stats()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.peak_rss_mb = max(self.peak_rss_mb, _rss_mb() or 0.0)

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak_rss_mb = max(self.peak_rss_mb, _rss_mb() or 0.0)
        if _cuda():
            import torch

            self.cuda_peak_mb = torch.cuda.max_memory_allocated() / 2**20

    def figures(self) -> dict:
        return {"rss_before_mb": _round(self.start_rss_mb), "peak_rss_mb": _round(self.peak_rss_mb),
                "cuda_max_allocated_mb": _round(self.cuda_peak_mb)}


def _rss_mb() -> float | None:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError):
        return None


def _ru_maxrss_mb() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return _round(peak / 2**20 if sys.platform == "darwin" else peak / 2**10)


def _cuda() -> bool:
    if "torch" not in sys.modules:
        return False
    import torch

    return torch.cuda.is_available()


@contextmanager
def _quiet():
    """Silence transformers/datasets progress bars and advisory warnings inside measurements."""
    import warnings

    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            yield
        finally:
            hf_logging.set_verbosity(level)


def _timed_reps(spec: dict, run) -> tuple[list[dict], PeakMemory]:
    """``run()`` -> dict of counts, ``reps`` times, each with its wall time; memory over all of them."""
    reps = []
    with PeakMemory() as mem:
        for _ in range(spec["reps"]):
            start = time.perf_counter()
            counts = run()
            reps.append({"seconds": time.perf_counter() - start, **counts})
    return reps, mem


def _summary(reps: list[dict], mem: PeakMemory, per: dict[str, str]) -> dict:
    """Medians over reps of each ``count / seconds`` rate named in ``per`` (rate name -> count key)."""
    out = {"reps": [{k: _round(v) if isinstance(v, float) else v for k, v in r.items()} for r in reps],
           "median_seconds": _round(statistics.median(r["seconds"] for r in reps))}
    for rate, key in per.items():
        values = [r[key] / r["seconds"] for r in reps if r.get(key) is not None and r["seconds"] > 0]
        out[rate] = _round(statistics.median(values)) if values else None
    out.update(mem.figures())
    return out


# =========================================================================== generation: augment and curate


def _tokenizer(spec: dict):
    from transformers import AutoTokenizer

    from humpback.chat import ensure_chat_template

    tok = AutoTokenizer.from_pretrained(spec["model_path"])
    ensure_chat_template(tok)
    return tok


def augment_prompts(tok, n: int) -> list[str]:
    """Backward prompts for ``n`` real segments of the Python-docs corpus, spread over the corpus."""
    from humpback.chat import messages_for, render_prompt
    from humpback.config import CorpusConfig
    from humpback.data.corpus import iter_documents
    from humpback.data.segment import Segmenter
    from humpback.prompts import render_backward
    from humpback.tiny import materialize

    cfg = CorpusConfig(path=str(materialize("python-docs")), drop_seed_overlap=False)
    segments = [s.text for s in Segmenter(cfg).segments(iter_documents(cfg))]
    step = max(1, len(segments) // n)
    picked = [segments[(i * step) % len(segments)] for i in range(n)]
    return [render_prompt(tok, messages_for(render_backward(text))) for text in picked]


def curate_pairs(n: int) -> list[dict]:
    """``n`` (instruction, output) pairs: the Python-docs seed set, repeated if needed."""
    from humpback.tiny import materialize

    with open(materialize("python-docs-seed"), encoding="utf-8") as f:
        pairs = [json.loads(line) for line in f if line.strip()]
    return [pairs[i % len(pairs)] for i in range(n)]


def judge_prompts(tok, pairs: list[dict], prefill: str) -> list[str]:
    from humpback.chat import messages_for, render_prompt
    from humpback.config import SEED_SYSTEM_PROMPT
    from humpback.prompts import render_curation

    return [render_prompt(tok, messages_for(render_curation(p["instruction"], p["output"]), system=SEED_SYSTEM_PROMPT),
                          prefill=prefill) for p in pairs]


def make_generator(spec: dict, batch_size: int, sort_by_length: bool):
    backend = spec["backend"]
    if backend == "hf":
        from humpback.generation.hf import HFGenerator

        return HFGenerator(spec["model_path"], device=spec["device"], dtype=spec["dtype"],
                           batch_size=batch_size, sort_by_length=sort_by_length)
    if backend == "vllm":
        from humpback.generation.vllm import VLLMGenerator

        return VLLMGenerator(spec["model_path"], dtype=spec["dtype"])
    from humpback.generation.openai import OpenAIGenerator

    return OpenAIGenerator(spec["api_base"], spec["model_path"], served_model_name=spec["served_model_name"],
                           concurrency=max(1, spec["concurrency"] if batch_size > 1 else 1),
                           max_retries=0 if spec["reduced"] else 2)


class TokenCounter:
    """Generated tokens: exactly, from the ids the hf backend decodes (up to EOS); otherwise by
    re-tokenising the returned text (approximate: a decoded text may re-encode differently)."""

    def __init__(self, gen, tok):
        self.tok = tok
        self.count = 0
        self.method = "retokenized"
        decode = getattr(gen, "_decode", None)
        eos = getattr(gen, "eos_token_ids", None)
        if decode is not None and eos is not None:
            self.method = "exact"

            def counting(ids):
                self.count += next((j for j, t in enumerate(ids) if t in eos), len(ids))
                return decode(ids)

            gen._decode = counting

    def add_texts(self, texts: list[str]) -> None:
        if self.method == "retokenized":
            self.count += sum(len(ids) for ids in self.tok(texts, add_special_tokens=False)["input_ids"])

    def take(self) -> int:
        n, self.count = self.count, 0
        return n


def _generate(gen, prompts: list[str], params, variant: str, backend: str) -> list[str]:
    """One pass of a variant: hf batches itself; other backends get one prompt per call for
    ``single`` and everything in one call (longest first for ``sorted``) otherwise."""
    if backend == "hf" or variant == "batched":
        return gen.generate(prompts, params)
    if variant == "single":
        return [gen.generate([p], params)[0] for p in prompts]
    order = sorted(range(len(prompts)), key=lambda i: -len(prompts[i]))
    texts = gen.generate([prompts[i] for i in order], params)
    out = [""] * len(prompts)
    for i, text in zip(order, texts):
        out[i] = text
    return out


def measure_augment(spec: dict) -> dict:
    from humpback.config import AugmentConfig
    from humpback.generation.base import SamplingParams

    variant = spec["variant"]
    with _quiet():
        tok = _tokenizer(spec)
        prompts = augment_prompts(tok, spec["docs"])
        batch = 1 if variant == "single" else spec["batch_size"]
        gen = make_generator(spec, batch, sort_by_length=variant == "sorted")
        cfg = AugmentConfig()
        params = SamplingParams(temperature=cfg.temperature, top_p=cfg.top_p,
                                max_new_tokens=spec["max_new_tokens"], seed=0)
        counter = TokenCounter(gen, tok)
        try:
            _generate(gen, prompts[:2], SamplingParams(max_new_tokens=2), variant, spec["backend"])  # warm-up
            counter.take()

            def run() -> dict:
                texts = _generate(gen, prompts, params, variant, spec["backend"])
                counter.add_texts(texts)
                return {"docs": len(prompts), "generated_tokens": counter.take()}

            reps, mem = _timed_reps(spec, run)
        finally:
            gen.close()
    prompt_tokens = [len(ids) for ids in tok(prompts, add_special_tokens=False)["input_ids"]]
    out = _summary(reps, mem, {"docs_per_s": "docs", "generated_tokens_per_s": "generated_tokens"})
    out.update(batch_size=batch, sort_by_length=variant == "sorted", max_new_tokens=spec["max_new_tokens"],
               token_count=counter.method, prompt_tokens_median=statistics.median(prompt_tokens),
               prompt_tokens_max=max(prompt_tokens),
               new_tokens_fraction=_round(statistics.median(r["generated_tokens"] for r in reps)
                                          / (len(prompts) * spec["max_new_tokens"])),
               sampling={"temperature": params.temperature, "top_p": params.top_p})
    return out


def measure_curate(spec: dict) -> dict:
    from humpback.generation.base import SamplingParams
    from humpback.scoring import CHOICES, parse_score, score_from_probs

    variant = spec["variant"]
    with _quiet():
        tok = _tokenizer(spec)
        pairs = curate_pairs(spec["pairs"])
        prompts = judge_prompts(tok, pairs, prefill="Score:" if variant == "logits" else "")
        gen = make_generator(spec, spec["batch_size"], sort_by_length=True)
        params = SamplingParams(temperature=0.0, max_new_tokens=spec["curate_max_new_tokens"])
        try:
            if variant == "logits":
                gen.choice_probs(prompts[:2], CHOICES)  # warm-up

                def run() -> dict:
                    scores = [score_from_probs(cp.probs) for cp in gen.choice_probs(prompts, CHOICES)]
                    return {"pairs": len(scores)}
            else:
                gen.generate(prompts[:2], SamplingParams(max_new_tokens=2))

                def run() -> dict:
                    parsed = [parse_score(text) for text in gen.generate(prompts, params)]
                    return {"pairs": len(parsed), "parsed": sum(p.status == "ok" for p in parsed)}

            reps, mem = _timed_reps(spec, run)
        finally:
            gen.close()
    out = _summary(reps, mem, {"pairs_per_s": "pairs"})
    out.update(batch_size=spec["batch_size"],
               max_new_tokens=spec["curate_max_new_tokens"] if variant == "generate" else None)
    return out


# =========================================================================== training


def measure_train(spec: dict) -> dict:
    from humpback.config import SEED_SYSTEM_PROMPT, TrainConfig
    from humpback.training import TrainJob, train_sft

    rows = [{"messages": [{"role": "system", "content": SEED_SYSTEM_PROMPT},
                          {"role": "user", "content": p["instruction"]},
                          {"role": "assistant", "content": p["output"]}]}
            for p in curate_pairs(max(spec["pairs"], spec["train_steps"] * spec["train_batch_size"]))]
    cfg = TrainConfig(max_steps=spec["train_steps"], per_device_train_batch_size=spec["train_batch_size"],
                      gradient_accumulation_steps=1, max_length=spec["train_max_length"],
                      packing=spec["variant"] == "packed", logging_steps=max(1, spec["train_steps"]), warmup_ratio=0.0)
    reps = []
    with _quiet(), PeakMemory() as mem:
        for _ in range(spec["reps"]):
            with tempfile.TemporaryDirectory(prefix="humpback-bench-train-") as tmp:
                start = time.perf_counter()
                result = train_sft(TrainJob(spec["model_path"], cfg, seed=0, progress=False), rows, Path(tmp) / "model")
                wall = time.perf_counter() - start
            # Trainer time only (model loading and saving excluded); tokens are non-padding inputs.
            reps.append({"seconds": result.runtime_s or wall, "wall_seconds": wall, "tokens": result.tokens,
                         "steps": result.steps})
    out = _summary(reps, mem, {"tokens_per_s": "tokens"})
    out.update(packing=cfg.packing, max_steps=cfg.max_steps, batch_size=cfg.per_device_train_batch_size,
               max_length=cfg.max_length, lora=not cfg.full_finetune)
    return out


# =========================================================================== corpus preparation


def measure_corpus(spec: dict) -> dict:
    """The real Python-docs corpus through iter_documents and the Segmenter (filters and dedup on)."""
    from humpback.config import CorpusConfig
    from humpback.data.corpus import iter_documents
    from humpback.data.segment import Segmenter
    from humpback.tiny import materialize

    cfg = CorpusConfig(path=str(materialize("python-docs")))

    def run() -> dict:
        segmenter = Segmenter(cfg)
        kept = sum(1 for _ in segmenter.segments(iter_documents(cfg)))
        return {"docs": segmenter.funnel["documents"], "segments": kept}

    run()  # warm-up (imports, regex compilation)
    reps, mem = _timed_reps(spec, run)
    return _summary(reps, mem, {"docs_per_s": "docs", "segments_per_s": "segments"})


_SYLLABLES = ("ka", "lo", "mi", "ne", "ru", "sa", "ti", "vo", "pe", "da", "gu", "ha", "je", "ko", "li",
              "mo", "nu", "po", "qi", "ra", "se", "tu", "wi", "xa", "yo", "ze")


def synthetic_documents(n: int, seed: int = 0):
    """``n`` documents, generated one at a time (nothing is held but the last 64): a header and 2-4
    paragraphs of pseudo-words, 600-2,500 characters, plus 4% exact duplicates, 4% near duplicates (one
    word changed) and 2% too short, so that every dedup path runs."""
    from humpback.data.corpus import Document

    rng = random.Random(seed)
    vocab = sorted({"".join(rng.choice(_SYLLABLES) for _ in range(rng.randint(1, 4))) for _ in range(30_000)})
    recent: list[str] = []
    for i in range(n):
        kind = i % 50
        if recent and kind in (7, 19):
            text = recent[rng.randrange(len(recent))]
        elif recent and kind in (11, 23):
            words = recent[rng.randrange(len(recent))].split(" ")
            words[rng.randrange(2, len(words))] = rng.choice(vocab)
            text = " ".join(words)
        elif kind == 31:
            text = f"# Note {i}\n\n" + " ".join(rng.choices(vocab, k=20)) + "."
        else:
            paragraphs = []
            for _ in range(rng.randint(2, 4)):
                sentences = [" ".join(rng.choices(vocab, k=rng.randint(8, 18))).capitalize() + "."
                             for _ in range(rng.randint(3, 6))]
                paragraphs.append(" ".join(sentences))
            text = f"# Topic {i}\n\n" + "\n\n".join(paragraphs)
            recent.append(text)
            if len(recent) > 64:
                recent.pop(0)
        yield Document(id=f"synthetic:{i}", text=text, source="synthetic")


def measure_scale(spec: dict) -> dict:
    """``corpus_docs`` synthetic documents streamed through the Segmenter, once; peak RSS and its growth."""
    from humpback.config import CorpusConfig
    from humpback.data.segment import Segmenter

    n = spec["corpus_docs"]
    if n <= 0:
        return {"skipped": "--corpus-docs 0"}
    cfg = CorpusConfig(path="synthetic")
    segmenter = Segmenter(cfg)
    kept = 0
    checkpoints = []
    with PeakMemory(interval_s=0.05) as mem:
        start = time.perf_counter()
        for _ in segmenter.segments(synthetic_documents(n)):
            kept += 1
            if kept % 100_000 == 0:
                checkpoints.append({"kept": kept, "seconds": _round(time.perf_counter() - start),
                                    "rss_mb": _round(_rss_mb())})
        seconds = time.perf_counter() - start
        end_rss = _rss_mb()
    growth = (end_rss - mem.start_rss_mb) if end_rss is not None and mem.start_rss_mb is not None else None
    return {
        "docs": n, "segments": kept, "seconds": _round(seconds), "docs_per_s": _round(n / seconds),
        "funnel": segmenter.funnel, **mem.figures(),
        "rss_growth_mb": _round(growth),
        "bytes_per_kept_segment": _round(growth * 2**20 / kept) if growth is not None and kept else None,
        "checkpoints": checkpoints, "target_peak_rss_mb": 2048,
    }


# =========================================================================== report


def _ratio(results: dict, group: str, num: str, den: str, key: str) -> float | None:
    a = results.get(group, {}).get(num, {}).get(key)
    b = results.get(group, {}).get(den, {}).get(key)
    return _round(a / b) if a and b else None


def _finish(report: dict) -> None:
    r = report["results"]
    report["augment_sorted_vs_single"] = _ratio(r, "augment", "sorted", "single", "docs_per_s")
    report["curate_logits_vs_generate"] = _ratio(r, "curate", "logits", "generate", "pairs_per_s")
    report["other_ratios"] = {
        "augment_batched_vs_single": _ratio(r, "augment", "batched", "single", "docs_per_s"),
        "augment_sorted_vs_batched": _ratio(r, "augment", "sorted", "batched", "docs_per_s"),
        "train_packed_vs_plain": _ratio(r, "train", "packed", "plain", "tokens_per_s"),
    }
    report["targets_met"] = {k: (report[k] >= t if report[k] is not None else None) for k, t in TARGETS.items()}
    scale = r.get("scale", {}).get("synthetic", {})
    if scale.get("peak_rss_mb") is not None:
        report["targets_met"]["corpus_peak_rss_under_2gb"] = scale["peak_rss_mb"] < 2048


def write_outputs(report: dict, out_dir: Path) -> None:
    (out_dir / "benchmark.json").write_text(json.dumps(report, indent=2) + "\n")
    (out_dir / "benchmark.md").write_text(render_markdown(report))


def render_markdown(report: dict) -> str:
    s = report["settings"]
    r = report["results"]
    lines = ["# humpback throughput benchmark", "",
             f"`python scripts/benchmark.py --output OUTPUT{' --reduced' if s['reduced'] else ''}"
             f"{'' if s['model'] == 'builtin:tiny-llama' else ' --model ' + s['model']}"
             f"{'' if s['backend'] == 'hf' else ' --backend ' + s['backend']}`", "",
             f"Model `{s['model']}`, backend `{s['backend']}`, device `{s['device']}`, dtype `{s['dtype']}`, "
             f"torch threads {s['threads'] or 'default'}; {s['machine']['cpu']} ({s['machine']['cpu_count']} cores)"
             f"{', GPU ' + s['machine']['cuda'] if s['machine']['cuda'] else ''}; torch {s['machine']['torch']}, "
             f"transformers {s['machine']['transformers']}. Median of {s['reps']} reps; each measurement in "
             f"{'its own process' if s['isolated'] else 'this process (peak memory not isolated)'}.", "",
             "| ratio | value | target | met |", "|---|---:|---:|---|"]
    for key, target in TARGETS.items():
        value = report.get(key)
        met = report["targets_met"].get(key)
        verdict = "yes" if met else "no" if met is False else "-"
        lines.append(f"| `{key}` | {_fmt(value)}x | >= {target:g}x | {verdict} |")
    for key, value in report.get("other_ratios", {}).items():
        lines.append(f"| `{key}` | {_fmt(value)}x | | |")
    lines += ["", "| step | variant | throughput | tokens/s | peak RSS (MB) | CUDA peak (MB) | notes |",
              "|---|---|---:|---:|---:|---:|---|"]
    for group, variant in MEASUREMENTS:
        res = r.get(group, {}).get(variant)
        if res is None:
            continue
        if "error" in res:
            lines.append(f"| {group} | {variant} | failed | | | | {res['error'][:120].replace('|', '/')} |")
            continue
        if "skipped" in res:
            lines.append(f"| {group} | {variant} | skipped | | | | {res['skipped']} |")
            continue
        thr, tps, note = _row(group, variant, res)
        peak = res.get("peak_rss_process_mb") or res.get("peak_rss_mb")
        cuda = _fmt(res.get("cuda_max_allocated_mb"), 0)
        lines.append(f"| {group} | {variant} | {thr} | {tps} | {_fmt(peak, 0)} | {cuda} | {note} |")
    lines += ["", "Notes:", ""]
    aug = r.get("augment", {}).get("single") or r.get("augment", {}).get("sorted")
    if aug and "error" not in aug:
        lines.append(f"- Augmentation: {s['docs']} backward prompts from real Python-docs segments (median "
                     f"{_fmt(aug['prompt_tokens_median'], 0)} prompt tokens, max {aug['prompt_tokens_max']}), sampling "
                     f"at temperature {aug['sampling']['temperature']}, top_p {aug['sampling']['top_p']}, up to "
                     f"{aug['max_new_tokens']} new tokens; {_fmt(100 * aug['new_tokens_fraction'], 0)}% of them were "
                     f"generated (the rest cut by EOS); tokens counted {aug['token_count']}.")
    lines.append(f"- Curation: {s['pairs']} Python-docs seed pairs with the paper's judge prompt; `generate` decodes "
                 f"up to {s['curate_max_new_tokens']} tokens greedily and parses 'Score: N'; `logits` reads P('1'..'5') "
                 f"after 'Score:' in one forward pass. Both batched by {s['batch_size']}, sorted by length.")
    lines.append(f"- Training: `train_sft` (LoRA), {s['train_steps']} steps of {s['train_batch_size']} examples, "
                 f"max_length {s['train_max_length']}; tokens/s counts non-padding input tokens over the trainer's own "
                 f"time (model loading excluded).")
    scale = r.get("scale", {}).get("synthetic")
    if scale and "docs" in scale:
        lines.append(f"- Corpus at scale: {scale['docs']:,} synthetic documents streamed through the Segmenter "
                     f"(filters, exact and MinHash near-duplicate dedup): {scale['segments']:,} segments kept, "
                     f"{_fmt(scale['docs_per_s'], 0)} docs/s, peak RSS {_fmt(scale['peak_rss_mb'], 0)} MB "
                     f"(target < 2,048 MB), about {_fmt(scale['bytes_per_kept_segment'], 0)} bytes of dedup state "
                     f"per kept segment.")
    lines.append("- Peak RSS is the measurement process's own peak (imports and model included).")
    return "\n".join(lines) + "\n"


def _row(group: str, variant: str, res: dict) -> tuple[str, str, str]:
    if group == "augment":
        return (f"{_fmt(res['docs_per_s'])} docs/s", _fmt(res["generated_tokens_per_s"], 0),
                f"batch {res['batch_size']}{', sorted' if res['sort_by_length'] else ''}")
    if group == "curate":
        note = f"batch {res['batch_size']}"
        if res.get("max_new_tokens"):
            note += f", {res['max_new_tokens']} new tokens"
        return f"{_fmt(res['pairs_per_s'])} pairs/s", "", note
    if group == "train":
        return f"{_fmt(res['tokens_per_s'], 0)} tokens/s", _fmt(res["tokens_per_s"], 0), f"{res['max_steps']} steps"
    if group == "corpus":
        return f"{_fmt(res['docs_per_s'], 0)} docs/s", "", f"{_fmt(res['segments_per_s'], 0)} segments/s"
    return (f"{_fmt(res['docs_per_s'], 0)} docs/s", "",
            f"{res['docs']:,} docs, {res['segments']:,} kept, {_fmt(res.get('bytes_per_kept_segment'), 0)} B/segment")


# =========================================================================== small helpers


def _headline(group: str, res: dict) -> str:
    if "skipped" in res:
        return "skipped"
    key = {"augment": "docs_per_s", "curate": "pairs_per_s", "train": "tokens_per_s"}.get(group, "docs_per_s")
    return f"{_fmt(res.get(key))} {key.replace('_per_s', '/s')}, peak RSS {_fmt(res.get('peak_rss_mb'), 0)} MB"


def _round(x, digits: int = 4):
    if x is None:
        return None
    return float(f"{x:.{digits}g}")


def _fmt(x, decimals: int = 2) -> str:
    if x is None:
        return "-"
    return f"{x:,.{decimals}f}"


def _version(name: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return None


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


if __name__ == "__main__":
    sys.exit(main())
