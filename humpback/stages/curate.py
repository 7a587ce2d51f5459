"""Self-curation: the current model rates every candidate with the paper's 5-point prompt, and the
pairs scoring at least the threshold become the curated set A(K).

Scoring and selection are separate stages, so a new threshold re-selects from the saved scores
without asking the judge again.
"""

from __future__ import annotations

import contextlib
import json

from .. import layout, progress
from ..chat import messages_for, render_prompt
from ..config import CurateConfig
from ..layout import CANDIDATES
from ..prompts import render_curation, template_hash
from ..run import RunContext
from ..scoring import CHOICES, agreement, histogram, parse_score, score_from_probs, select, selection_rule, short_rule
from ..store import StageResult, model_identity, shard_file

SCORE_PREFILL = "Score:"


def judge_prompts(tokenizer, candidates: list[dict], cfg: CurateConfig, prefill: str = "",
                  max_tokens: int | None = None, cut: list | None = None) -> list[str]:
    """The rendered judge prompts; for logits scoring each ends at 'Score:' so the next token is the rating.
    With ``max_tokens``, a prompt that would be longer has its candidate output cut from the end instead
    (:func:`humpback.generation.budget.fit_pair`: the rubric stays); ``cut`` gets the tokens cut per prompt."""
    from ..generation.budget import fit_pair

    def render(instruction: str, output: str) -> str:
        return render_prompt(tokenizer, messages_for(render_curation(instruction, output), system=cfg.system_prompt),
                             prefill=prefill)

    if max_tokens is None:
        return [render(c["instruction"], c["output"]) for c in candidates]
    # Logits scoring appends the choices' common prefix (at most one token) after "Score:".
    budget = max_tokens - (1 if prefill else 0)
    fitted = [fit_pair(tokenizer, render, c["instruction"], c["output"], budget) for c in candidates]
    if cut is not None:
        cut.extend(f.cut_tokens for f in fitted)
    return [f.prompt for f in fitted]


def judge_sampling(cfg: CurateConfig, seed: int):
    """The judge's decoding in generate mode (greedy by default)."""
    from ..generation.base import SamplingParams

    return SamplingParams(temperature=cfg.temperature, top_p=1.0, max_new_tokens=cfg.max_new_tokens, seed=seed)


def score_rows_generate(candidates: list[dict], outputs: list[str], judge: str) -> list[dict]:
    rows = []
    for c, text in zip(candidates, outputs, strict=True):
        parsed = parse_score(text)
        rows.append({"candidate_id": c["candidate_id"], "mode": "generate", "score": parsed.score,
                     "logits_score": None, "expected_score": None, "probs": None, "choice_mass": None,
                     "raw": text, "parse_status": parsed.status, "judge": judge})
    return rows


NO_CHOICE = "no_choice_in_top_logprobs"  # a server's top logprobs held none of "1".."5"


def score_rows_logits(candidates: list[dict], choice_probs: list, judge: str) -> list[dict]:
    rows = []
    for c, cp in zip(candidates, choice_probs, strict=True):
        if cp.probs is None:
            rows.append({"candidate_id": c["candidate_id"], "mode": "logits", "score": None, "logits_score": None,
                         "expected_score": None, "probs": None, "choice_mass": float(cp.mass), "raw": "{}",
                         "parse_status": NO_CHOICE, "judge": judge})
            continue
        ps = score_from_probs(cp.probs)
        probs = [float(p) for p in cp.probs]
        raw = json.dumps({k: round(p, 6) for k, p in zip(CHOICES, probs)})
        rows.append({"candidate_id": c["candidate_id"], "mode": "logits", "score": ps.score, "logits_score": ps.score,
                     "expected_score": ps.expected, "probs": probs, "choice_mass": float(cp.mass), "raw": raw,
                     "parse_status": "ok", "judge": judge})
    return rows


def score_rows_both(candidates: list[dict], outputs: list[str], choice_probs: list, judge: str) -> list[dict]:
    """Both scores per pair: ``score`` and ``raw`` from the generated judgement, the rest from P('1'..'5')."""
    generated = score_rows_generate(candidates, outputs, judge)
    logits = score_rows_logits(candidates, choice_probs, judge)
    return [{**lg, "mode": "both", "score": g["score"], "raw": g["raw"], "parse_status": g["parse_status"]}
            for g, lg in zip(generated, logits, strict=True)]


def score_stage(rt: RunContext, k: int) -> StageResult:
    """iter_K/scores: one row per candidate, judged by model K-1 (M0 for K = 1) or by the outside
    judge ``curate.judge``, written in shards."""
    cfg = rt.cfg.curate
    it = layout.iteration(k)
    candidates = rt.rows(CANDIDATES)
    if rt.sources.judge:  # an outside judge replaces the run's own model
        judge = rt.sources.judge
        model = rt.model(outside=judge)
        judge_inputs, judge_identity = [], model_identity(judge, None)
    else:
        judge = rt.model_name(it.judge)
        model = rt.model(it.judge)
        judge_inputs, judge_identity = [it.judge], None

    rubric = None
    if cfg.judge_kind == "rubric":
        from ..judges.rubric import load_rubric

        rubric = load_rubric(cfg.rubric, cfg.rubric_field)

    def do_shard(shard: int, start: int, end: int) -> dict:
        part = candidates.rows[start:end]
        if rubric is not None:
            from ..judges.rubric import judge_rows

            rows = judge_rows(model, part, rubric, cfg, judge)
            rt.store.write_rows(shard_file(it.scores, shard), rows, schema=_score_schema(rubric=True))
            return {**shard_score_stats(rows), "served_by": model.served if part else None}
        params = judge_sampling(cfg, rt.cfg.random_seed)
        budget, cut = rt.cfg.generation.max_prompt_tokens, []
        if cfg.mode in ("logits", "both"):
            prompts = judge_prompts(model.tokenizer, part, cfg, SCORE_PREFILL, budget, cut)
            # In "both" mode the bar counts a pair once, when its generated judgement is done.
            with progress.hold() if cfg.mode == "both" else contextlib.nullcontext():
                probs = model.generator.choice_probs(prompts, CHOICES)
        if cfg.mode in ("generate", "both"):
            # (in both mode the cuts recorded are the logits prompts', one token shorter for the choice prefix)
            prompts = judge_prompts(model.tokenizer, part, cfg, max_tokens=budget,
                                    cut=cut if cfg.mode == "generate" else None)
            outputs = model.generator.generate(prompts, params)
        if cfg.mode == "logits":
            rows = score_rows_logits(part, probs, judge)
        elif cfg.mode == "generate":
            rows = score_rows_generate(part, outputs, judge)
        else:
            rows = score_rows_both(part, outputs, probs, judge)
        for row, n in zip(rows, cut, strict=True):
            row["judge_input_cut_tokens"] = n
        rt.store.write_rows(shard_file(it.scores, shard), rows, schema=_score_schema())
        return {**shard_score_stats(rows), "served_by": model.served}

    def finish(shards: list[dict]) -> dict:
        model.close()
        stats = {"judge": judge, **merge_score_stats(shards)}
        if rubric is not None:
            sums = stats.pop("principles", None) or [[0.0, 0, 0] for _ in rubric.principles]
            stats["rubric"] = {"source": rubric.source, "hash": rubric.text_hash, "combine": cfg.rubric_combine,
                               "principles": [{"principle": p.name, "weight": p.weight, "answer": p.answer,
                                               "mean_log_odds": total / n if n else None, "fails": fails,
                                               "failures": stats["scored"] - n}
                                              for p, (total, n, fails) in zip(rubric.principles, sums)]}
            for p in stats["rubric"]["principles"]:
                rt.metric("score", f"rubric/{p['principle']}/fails", p["fails"], iteration=k)
        return _score_stats(rt, k, stats)

    deps = {"mode": cfg.mode, "max_new_tokens": cfg.max_new_tokens, "temperature": cfg.temperature,
            "system_prompt": cfg.system_prompt, "template": template_hash("curate"), "base": rt.base_identity,
            **rt.generation_key(), "judge": judge_identity}
    if rubric is not None:  # the rubric judge: its rubric and combination instead of the rating settings
        deps = {"judge_kind": "rubric", "rubric": rubric.text_hash, "combine": cfg.rubric_combine,
                "rubric_temperature": cfg.rubric_temperature, "system_prompt": cfg.system_prompt,
                "base": rt.base_identity, **rt.generation_key(), "judge": judge_identity}
    name = it.stage("score")
    try:
        return rt.store.sharded_stage(name, deps, [it.scores], rt.store.count_rows(CANDIDATES), rt.cfg.shard_size,
                                      do_shard, finish, inputs=[CANDIDATES, *judge_inputs], force=rt.forced(name),
                                      job="curate", unit="pairs")
    finally:
        model.close()


def shard_score_stats(rows: list[dict]) -> dict:
    failures: dict[str, int] = {}
    for r in rows:
        if r["parse_status"] != "ok":
            failures[r["parse_status"]] = failures.get(r["parse_status"], 0) + 1
    expected = [r["expected_score"] for r in rows if r["expected_score"] is not None]
    stats = {"scored": len(rows), "parse_failure_kinds": failures, "histogram": histogram([r["score"] for r in rows]),
             "expected_sum": sum(expected), "expected_n": len(expected),
             "judge_inputs_cut": sum(1 for r in rows if r.get("judge_input_cut_tokens")),
             "logits_failures": sum(1 for r in rows if r["mode"] in ("logits", "both") and r["logits_score"] is None)}
    if rows and rows[0].get("judge_kind") == "rubric":  # per principle: [sum of signed log-odds, pairs, fails]
        columns = list(zip(*[r["principles"] for r in rows]))
        stats["principles"] = [[sum(v for v in col if v is not None), sum(v is not None for v in col),
                                sum(v is not None and v < 0 for v in col)] for col in columns]
        values = [r["value"] for r in rows if r["value"] is not None]
        stats["value_sum"], stats["value_n"] = sum(values), len(values)
    if rows and rows[0]["mode"] == "both":
        stats["logits_histogram"] = histogram([r["logits_score"] for r in rows])
        stats["pairs"] = [[r["score"], r["logits_score"], r["expected_score"]] for r in rows]
    return stats


def merge_score_stats(shards: list[dict]) -> dict:
    n = sum(s["scored"] for s in shards)
    kinds: dict[str, int] = {}
    hist = histogram([])
    for s in shards:
        for kind, count in s["parse_failure_kinds"].items():
            kinds[kind] = kinds.get(kind, 0) + count
        for score, count in s["histogram"].items():
            hist[score] += count
    failures = sum(kinds.values())
    expected_n = sum(s["expected_n"] for s in shards)
    out = {"served_by": sorted({s["served_by"] for s in shards if s.get("served_by")}),
           "scored": n, "parse_failures": failures, "parse_failure_kinds": kinds,
           "parse_failure_rate": failures / n if n else 0.0, "histogram": hist,
           "judge_inputs_cut": sum(s.get("judge_inputs_cut", 0) for s in shards),
           "logits_failures": sum(s.get("logits_failures", 0) for s in shards),
           "expected_score_mean": sum(s["expected_sum"] for s in shards) / expected_n if expected_n else None}
    if any("principles" in s for s in shards):
        parts = [s["principles"] for s in shards if "principles" in s]
        out["principles"] = [[sum(p[j][k] for p in parts) for k in range(3)] for j in range(len(parts[0]))]
        n = sum(s.get("value_n", 0) for s in shards)
        out["value_mean"] = sum(s.get("value_sum", 0.0) for s in shards) / n if n else None
    if any("pairs" in s for s in shards):
        out["logits_histogram"] = histogram([])
        for s in shards:
            for score, count in s["logits_histogram"].items():
                out["logits_histogram"][score] += count
        rows = [{"score": g, "logits_score": a, "expected_score": e} for s in shards for g, a, e in s["pairs"]]
        out["agreement"] = agreement(rows)
    return out


def select_stage(rt: RunContext, k: int) -> StageResult:
    """A(K) from the saved scores by the recipe's rule; the rule used is recorded in the stats."""
    cfg = rt.cfg.curate
    it = layout.iteration(k)
    rule = selection_rule(cfg)

    def work() -> dict:
        candidates = rt.store.read_rows(CANDIDATES)
        curated = select(candidates, rt.store.read_rows(it.scores), cfg)
        rt.store.write_rows(it.curated, curated, schema=_curated_schema())
        rate = len(curated) / len(candidates) if candidates else 0.0
        rt.result(f"curate: {len(curated)} of {len(candidates)} candidates kept ({short_rule(rule)})")
        rt.metric("select", "curated", len(curated), iteration=k)
        rt.metric("select", "acceptance_rate", rate, iteration=k)
        return {"curated": len(curated), "acceptance_rate": rate, "rule": rule,
                "threshold": cfg.threshold if cfg.select == "threshold" else None,
                **_length_stats(curated)}

    name = it.stage("select")
    return rt.store.stage(name, dict(rule), [it.curated], work, inputs=[CANDIDATES, it.scores], force=rt.forced(name),
                          job="curate")


def _length_stats(curated: list[dict]) -> dict:
    import statistics

    out = {}
    for name, col in (("instruction_chars_median", "instruction"), ("output_chars_median", "output")):
        out[name] = statistics.median(len(c[col]) for c in curated) if curated else None
    return out


def _score_stats(rt: RunContext, k: int, stats: dict) -> dict:
    h = stats["histogram"]
    rt.result(f"score: {stats['scored']} pairs; scores 1/2/3/4/5: {'/'.join(str(h[str(i)]) for i in range(1, 6))}; "
              f"{stats['parse_failures']} parse failures")
    if stats.get("judge_inputs_cut"):
        rt.warn(f"score: {stats['judge_inputs_cut']} judge prompts over generation.max_prompt_tokens had their "
                f"candidate output cut to fit (the rubric kept); see judge_input_cut_tokens in the scores")
    rt.metric("score", "judge_inputs_cut", stats.get("judge_inputs_cut", 0), iteration=k)
    rt.metric("score", "logits_failures", stats.get("logits_failures", 0), iteration=k)
    rt.metric("score", "scored", stats["scored"], iteration=k)
    rt.metric("score", "parse_failure_rate", stats["parse_failure_rate"], iteration=k)
    for score, count in stats["histogram"].items():
        rt.metric("score", f"histogram/{score}", count, iteration=k)
    if "agreement" in stats:
        a = stats["agreement"]
        rt.result(f"agreement of generated and logits scores over {a['pairs']} pairs: Spearman "
                  f"{a['spearman_generated_vs_expected']}, exact {a['exact_agreement']}")
        for name in ("spearman_generated_vs_expected", "exact_agreement"):
            if a[name] is not None:
                rt.metric("score", f"agreement/{name}", a[name], iteration=k)
    return stats


def _score_schema(rubric: bool = False):
    import pyarrow as pa

    fields = [("candidate_id", pa.string()), ("mode", pa.string()), ("score", pa.int64()),
              ("logits_score", pa.int64()), ("expected_score", pa.float64()), ("probs", pa.list_(pa.float64())),
              ("choice_mass", pa.float64()), ("raw", pa.string()), ("parse_status", pa.string()),
              ("judge", pa.string()), ("judge_input_cut_tokens", pa.int64())]
    if rubric:  # the pair's score, and each principle's signed log-odds beside it
        fields += [("judge_kind", pa.string()), ("value", pa.float64()), ("principles", pa.list_(pa.float64())),
                   ("principle_failures", pa.int64())]
    return pa.schema(fields)


def _curated_schema():
    import pyarrow as pa

    return pa.schema([("candidate_id", pa.string()), ("segment_id", pa.string()), ("instruction", pa.string()),
                      ("output", pa.string()), ("score", pa.int64()), ("expected_score", pa.float64())])
