#!/usr/bin/env python
# python scripts/judge_study.py --output runs/judge-study
"""Which judge works at which size: every judge's AUC at telling real pairs from broken ones, on the real
135M model and on the controlled world's model.

    python scripts/judge_study.py --output runs/judge-study                 # both models, every judge
    python scripts/judge_study.py --models smollm2 --judges likelihood,rating-logits --pairs 12 --output /tmp/js

For each model, real pairs (SmolLM2: the project's hand-written assistant pairs, spread over their
categories; the world: its seed pairs) and four negatives of each (:mod:`humpback.judges.study`): the same
instruction with another task's answer (``mismatched``), and the answer cut to its first 40%
(``truncated``), its sentences shuffled (``shuffled``), an off-topic paragraph appended (``off_topic``:
a Python reference paragraph; the world: another pool answer). Each judge scores every row through the
library's own judges (:func:`humpback.judges.score_rows`) with the model as it ships (no finetuning); its
AUC, with a bootstrap 95% interval (2,000 resamples of positives and negatives apart), says how often a
real pair outranks a negative: against the mismatched rows, against each degradation, and against the
three degradations pooled. Beside it: the judge's health figures and its CPU seconds per row
(``time.process_time``, both threads counted). The world's character vocabulary cannot spell the rating
or rubric prompts, so only the likelihood judges and the world's verifier run there.

Writes OUTPUT/judge_study.json and OUTPUT/judge_study.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import harness

JUDGES = {  # name -> (curate.judge_kind, overrides of the curate settings)
    "rating-logits": ("rating", {"mode": "logits"}),
    "rating-generate": ("rating", {"mode": "generate", "max_new_tokens": 128}),
    "rubric": ("rubric", {}),
    "likelihood": ("likelihood", {"likelihood": "mean_logprob"}),
    "ifd": ("likelihood", {"likelihood": "ifd"}),
    "verifier": ("verifier", {"verifier": "humpback.worlds.tasks:verify"}),
}
MODELS = {"smollm2": ("builtin:smollm2-135m-instruct",
                      ("rating-logits", "rating-generate", "rubric", "likelihood", "ifd")),
          "world": ("builtin:world-base", ("likelihood", "ifd", "verifier"))}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--output", default="runs/judge-study")
    p.add_argument("--models", default="smollm2,world", help="comma-separated, of " + ", ".join(MODELS))
    p.add_argument("--judges", help="comma-separated, of " + ", ".join(JUDGES) + " (default: each model's)")
    p.add_argument("--pairs", type=int, default=40, help="real pairs per model (each gets four negatives)")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    report = {"command": "python scripts/judge_study.py " + " ".join(argv if argv is not None else sys.argv[1:]),
              "pairs": args.pairs, "machine": harness.machine(), "models": {}}
    for name in args.models.split(","):
        model_ref, judges = MODELS[name]
        wanted = [j for j in (args.judges.split(",") if args.judges else judges) if j in judges]
        report["models"][name] = study_model(name, model_ref, wanted, args)
        (out / "judge_study.json").write_text(json.dumps(report, indent=1) + "\n")
        (out / "judge_study.md").write_text(render(report))
    harness.log(f"wrote {out / 'judge_study.json'} and {out / 'judge_study.md'}")
    return 0


def study_pairs(name: str, n: int, seed: int) -> tuple[list[dict], list[str]]:
    """(real pairs, off-topic paragraphs) for a model of the study."""
    from humpback.builtin_names import resolve

    if name == "smollm2":
        from humpback import assets

        pairs = assets.read_pairs()
        step = max(1, len(pairs) // n)
        chosen = [pairs[(i * step) % len(pairs)] for i in range(n)]  # spread over the file's categories
        docs = [json.loads(line) for line in Path(resolve("builtin:python-reference")).read_text().splitlines()]
        paragraphs = [para.strip() for d in docs for para in d["text"].split("\n\n")
                      if 200 <= len(para.strip()) <= 600 and not para.startswith(" ")]
        return chosen, paragraphs
    seed_rows = [json.loads(line) for line in Path(resolve("builtin:world-seed")).read_text().splitlines()]
    pool = [json.loads(line)["text"] for line in Path(resolve("builtin:world-pool")).read_text().splitlines()]
    chosen = [{"id": f"world-{i}", **r} for i, r in enumerate(seed_rows[:n])]
    return chosen, pool[:500]


class _Model:
    """What a judge reads a model through: its chat tokenizer and a generator (as the run's lazy model)."""

    def __init__(self, path: str, batch_size: int):
        from humpback.chat import load_chat_tokenizer
        from humpback.generation.hf import HFGenerator

        self.tokenizer = load_chat_tokenizer(path)
        self.generator = HFGenerator(path, batch_size=batch_size, device="cpu", tokenizer=self.tokenizer)
        self.served = None

    def usage(self):
        return self.generator.usage

    def close(self) -> None:
        self.generator.close()


def study_model(name: str, model_ref: str, judges: list[str], args) -> dict:
    from humpback.config import CurateConfig
    from humpback.judges import CurationJudge, score_rows
    from humpback.judges.health import auc, auc_interval, health_counts, judge_health, ranking_field
    from humpback.judges.study import DEGRADED, study_rows
    from humpback.models import resolve_model
    from humpback.progress import progress_bars

    pairs, paragraphs = study_pairs(name, args.pairs, args.seed)
    rows = study_rows(pairs, paragraphs, args.seed)
    harness.log(f"{name}: {len(pairs)} real pairs, {len(rows)} rows")
    with progress_bars(False):
        model = (_Model(resolve_model(model_ref), args.batch_size)
                 if any(JUDGES[j][0] != "verifier" for j in judges) else None)
    results = {}
    for judge_name in judges:
        kind, settings = JUDGES[judge_name]
        cfg = dataclasses.replace(CurateConfig(), judge_kind=kind, **settings)
        judge = CurationJudge(f"{model_ref} ({judge_name})", cfg, None if kind == "verifier" else model, args.seed,
                              2048)
        harness.log(f"{name}/{judge_name} ...")
        started = time.process_time()
        scored = score_rows(rows, judge)
        cpu = time.process_time() - started
        field = ranking_field(kind, cfg.mode)
        by = {r["candidate_id"]: s[field] for r, s in zip(rows, scored)}

        def versus(conditions) -> dict:
            chosen = [r for r in rows if r["condition"] == "real" or r["condition"] in conditions]
            scores, labels = [by[r["candidate_id"]] for r in chosen], [r["positive"] for r in chosen]
            lo, hi = auc_interval(scores, labels, seed=args.seed)
            return {"auc": auc(scores, labels), "low": lo, "high": hi, "rows": len(chosen)}

        results[judge_name] = {
            "judge_kind": kind, "settings": settings, "field": field, "cpu_s_per_row": cpu / len(rows),
            "health": judge_health(health_counts(scored)),
            "auc": {"mismatched": versus(("mismatched",)), "degraded": versus(DEGRADED),
                    **{c: versus((c,)) for c in DEGRADED}}}
        a = results[judge_name]["auc"]
        harness.log(f"{name}/{judge_name}: AUC mismatched {a['mismatched']['auc']:.3f}, degraded "
                    f"{a['degraded']['auc']:.3f}; {cpu / len(rows):.2f} CPU s/row")
    if model is not None:
        model.close()
    return {"model": model_ref, "real_pairs": len(pairs), "rows": len(rows), "judges": results}


def render(report: dict) -> str:
    lines = ["# Which judge works at which size", "", f"`{report['command']}`", "",
             f"{report['machine']['cpu']} ({report['machine']['cpu_count']} cores), "
             f"torch {report['machine']['torch']}, "
             f"transformers {report['machine']['transformers']}. AUC: the probability that a real pair outranks a "
             "negative (0.5: chance), with its bootstrap 95% interval.", "",
             "| model | judge | vs mismatched answer | vs degraded (pooled) | truncated | shuffled "
             "| off-topic appended "
             "| health | CPU s/row |", "|---|---|---|---|---|---|---|---|---:|"]
    cell = lambda a: "-" if a["auc"] is None else f"{a['auc']:.2f} [{a['low']:.2f}, {a['high']:.2f}]"  # noqa: E731
    for name, m in report["models"].items():
        for judge, r in m["judges"].items():
            a, h = r["auc"], r["health"]
            health = "ok" if not h["warnings"] else "; ".join(
                w.split(":")[0] if len(w) > 80 else w for w in h["warnings"])
            if h.get("choice_mass_mean") is not None:
                health += f" (choice mass {h['choice_mass_mean']:.2f})"
            lines.append(f"| {name} | {judge} | {cell(a['mismatched'])} | {cell(a['degraded'])} "
                         f"| {cell(a['truncated'])} "
                         f"| {cell(a['shuffled'])} | {cell(a['off_topic'])} | {health} | {r['cpu_s_per_row']:.2f} |")
    lines += ["", "Rows per model: " + ", ".join(f"{n}: {m['real_pairs']} real pairs, {m['rows']} rows"
                                                for n, m in report["models"].items()) + "."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
