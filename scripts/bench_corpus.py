#!/usr/bin/env python
# python scripts/bench_corpus.py --output runs/benchmark
"""Throughput and memory of corpus preparation, which loads no model: the prepare stage's reader and Segmenter.

    python scripts/bench_corpus.py --output runs/benchmark                  # 1,000,000 synthetic documents
    python scripts/bench_corpus.py --reduced --output /tmp/bench            # seconds: what the test suite runs
    python scripts/bench_corpus.py --recipe recipes/tiny-cpu.yaml --output runs/bench-corpus   # its corpus.* filters

Writes OUTPUT/bench_corpus.json and OUTPUT/bench_corpus.md (beside ``scripts/benchmark.py``'s files):

- corpus: docs/s and segments/s of the real Python-docs corpus through ``iter_documents`` and the
  ``Segmenter`` (sectioning, the paper's filters, exact and MinHash near-duplicate dedup);
- scale: ``--corpus-docs`` synthetic documents (default 1,000,000) streamed through the Segmenter once,
  with peak RSS and its growth per kept segment (the target: under 2 GB).

The filter settings are ``corpus.*`` of ``--recipe RECIPE [key=value ...]``, else the defaults. Each
measurement runs in its own process (``--no-isolate`` keeps them in this one); ``corpus`` is repeated
``--reps`` times and reported as the median.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import random
import sys
import time
from pathlib import Path

import harness

GROUPS = ("corpus", "scale")
MEASUREMENTS = (("corpus", "docs"), ("scale", "synthetic"))
TARGET_PEAK_RSS_MB = 2048
FULL = {"reps": 3, "corpus_docs": 1_000_000}
REDUCED = {"reps": 1, "corpus_docs": 2_000}


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    harness.add_common_args(p, GROUPS, "take the corpus.* filter settings from this recipe, with dotted overrides")
    for key, value in FULL.items():
        p.add_argument("--" + key.replace("_", "-"), type=int,
                       help=f"default {value:,} ({REDUCED[key]:,} with --reduced)")
    args = p.parse_args(argv)
    for key, value in (REDUCED if args.reduced else FULL).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.isolate is None:
        args.isolate = not args.reduced
    if args.reps < 1 or args.corpus_docs < 0:
        p.error("--reps must be >= 1 and --corpus-docs >= 0")
    return args


def corpus_config(args: argparse.Namespace):
    """``corpus.*`` of the recipe (its own path and dataset set aside), else the defaults."""
    from humpback.config import CorpusConfig, load_config

    if not args.recipe:
        return CorpusConfig()
    return dataclasses.replace(load_config(args.recipe[0], args.recipe[1:]).corpus, path=None, dataset=None,
                               max_documents=None, max_segments=None)


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.worker:
        return harness.worker_main(args.worker, measure)
    groups = harness.chosen_groups(args, GROUPS, "augment, curate, train: scripts/benchmark.py")
    if groups is None:
        return 2
    from humpback.config import to_dict
    from humpback.errors import HumpbackError

    try:
        corpus = to_dict(corpus_config(args))
    except HumpbackError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    settings = {**harness.recipe_settings(args), "reps": args.reps, "corpus_docs": args.corpus_docs, "corpus": corpus,
                "machine": harness.machine()}
    out_dir = Path(args.output)
    report = {"targets_met": {}, "settings": settings, "results": {}}

    def write(results: dict) -> None:
        report["results"] = results
        peak = results.get("scale", {}).get("synthetic", {}).get("peak_rss_mb")
        report["targets_met"] = {"corpus_peak_rss_under_2gb": peak < TARGET_PEAK_RSS_MB if peak is not None else None}
        (out_dir / "bench_corpus.json").write_text(json.dumps(report, indent=2) + "\n")
        (out_dir / "bench_corpus.md").write_text(render_markdown(report))

    failed = harness.run_all(__file__, MEASUREMENTS, groups, settings, out_dir, args.isolate, measure, write)
    harness.log(f"wrote {out_dir / 'bench_corpus.json'} and {out_dir / 'bench_corpus.md'}")
    return 1 if failed else 0


# =========================================================================== measurements


def measure(spec: dict) -> dict:
    from humpback.config import CorpusConfig

    cfg = CorpusConfig(**spec["corpus"])
    return {"corpus": measure_corpus, "scale": measure_scale}[spec["group"]](spec, cfg)


def measure_corpus(spec: dict, cfg) -> dict:
    """The real Python-docs corpus through iter_documents and the Segmenter, as the segments stage runs them."""
    from humpback.data.corpus import iter_documents
    from humpback.data.segment import Segmenter
    from humpback.builtin_names import resolve

    cfg = dataclasses.replace(cfg, path=resolve("builtin:python-docs"))

    def run() -> dict:
        segmenter = Segmenter(cfg)
        kept = sum(1 for _ in segmenter.segments(iter_documents(cfg)))
        return {"docs": segmenter.funnel["documents"], "segments": kept}

    run()  # warm-up (imports, regex compilation)
    reps, mem = harness.timed_reps(spec["reps"], run)
    return harness.summary(reps, mem, {"docs_per_s": "docs", "segments_per_s": "segments"})


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


def measure_scale(spec: dict, cfg) -> dict:
    """``corpus_docs`` synthetic documents streamed through the Segmenter, once; peak RSS and its growth."""
    from humpback.data.segment import Segmenter

    n = spec["corpus_docs"]
    if n <= 0:
        return {"skipped": "--corpus-docs 0"}
    segmenter = Segmenter(dataclasses.replace(cfg, path="synthetic"))
    kept = 0
    checkpoints = []
    with harness.PeakMemory(interval_s=0.05) as mem:
        start = time.perf_counter()
        for _ in segmenter.segments(synthetic_documents(n)):
            kept += 1
            if kept % 100_000 == 0:
                checkpoints.append({"kept": kept, "seconds": harness.rnd(time.perf_counter() - start),
                                    "rss_mb": harness.rnd(harness.rss_mb())})
        seconds = time.perf_counter() - start
        end_rss = harness.rss_mb()
    growth = (end_rss - mem.start_rss_mb) if end_rss is not None and mem.start_rss_mb is not None else None
    return {
        "docs": n, "segments": kept, "seconds": harness.rnd(seconds), "docs_per_s": harness.rnd(n / seconds),
        "funnel": segmenter.funnel, **mem.figures(), "rss_growth_mb": harness.rnd(growth),
        "bytes_per_kept_segment": harness.rnd(growth * 2**20 / kept) if growth is not None and kept else None,
        "checkpoints": checkpoints, "target_peak_rss_mb": TARGET_PEAK_RSS_MB,
    }


# =========================================================================== report


def render_markdown(report: dict) -> str:
    s, r, fmt = report["settings"], report["results"], harness.fmt
    met = report["targets_met"].get("corpus_peak_rss_under_2gb")
    lines = ["# humpback corpus preparation benchmark", "", f"`{harness.command_line('bench_corpus.py', s)}`", "",
             harness.machine_line(s) + f" Peak RSS under {TARGET_PEAK_RSS_MB:,} MB at scale: "
             f"{'yes' if met else 'no' if met is False else '-'}.", ""]
    lines += harness.table(MEASUREMENTS, r, ["throughput", "peak RSS (MB)", "notes"], _row)
    scale = r.get("scale", {}).get("synthetic")
    if scale and "docs" in scale:
        lines += ["", f"At scale: {scale['docs']:,} synthetic documents streamed through sectioning, filters and "
                      f"exact and MinHash near-duplicate dedup: {scale['segments']:,} segments kept, "
                      f"{fmt(scale['docs_per_s'], 0)} docs/s, peak RSS {fmt(scale['peak_rss_mb'], 0)} MB (target "
                      f"< {TARGET_PEAK_RSS_MB:,} MB), about {fmt(scale['bytes_per_kept_segment'], 0)} bytes of dedup "
                      f"state per kept segment. Peak RSS is the measurement process's own (imports included)."]
    return "\n".join(lines) + "\n"


def _row(group: str, variant: str, res: dict) -> list[str]:
    if group == "corpus":
        return [f"{harness.fmt(res['docs_per_s'], 0)} docs/s", harness.peak_rss(res),
                f"{harness.fmt(res['segments_per_s'], 0)} segments/s"]
    return [f"{harness.fmt(res['docs_per_s'], 0)} docs/s", harness.peak_rss(res),
            f"{res['docs']:,} docs, {res['segments']:,} kept, {harness.fmt(res.get('bytes_per_kept_segment'), 0)} "
            f"B/segment"]


if __name__ == "__main__":
    sys.exit(main())
