"""Self-curation: the current model (or a verifier, or an outside judge) scores every candidate, and the
best pairs by the recipe's rule become the curated set A(K).

Which judge scores is ``curate.judge_kind`` (see :mod:`humpback.judges`); the stages never ask. Scoring
and selection are separate stages, so a new threshold re-selects from the saved scores without asking
the judge again. With ``curate.dev_set``, the same judge also scores the labelled dev pairs
(``iter_K/dev``), and selection reports its precision, recall and F1 on them.
"""

from __future__ import annotations

import statistics

from .. import layout
from ..judges import Judge, score_rows, score_schema
from ..judges.health import health_counts, judge_health, merge_health_counts, selection_quality
from ..layout import CANDIDATES
from ..prompts import template_hash
from ..review.apply import describe_applied, review_key, reviewed
from ..run import RunContext
from ..scoring import agreement, histogram, select, select_by_cutoff, selection_cutoff, selection_rule, short_rule
from ..store import StageResult, model_identity, shard_file, source_identity


def open_judge(rt: RunContext, k: int) -> tuple[Judge, list[str], dict | None]:
    """(the judge of iteration K, the run-folder models it reads, what identifies an outside one)."""
    cfg = rt.cfg.curate
    it = layout.iteration(k)
    if cfg.judge_kind == "verifier":
        from ..judges.verifier import load_verifier, verifier_identity

        load_verifier(cfg.verifier)  # a clear error now, before any work
        return Judge(cfg.verifier, cfg, None, rt.cfg.random_seed), [], verifier_identity(cfg.verifier)
    budget = rt.cfg.generation.max_prompt_tokens
    if rt.sources.judge:  # an outside judge replaces the run's own model
        model = rt.model(outside=rt.sources.judge)
        return (Judge(rt.sources.judge, cfg, model, rt.cfg.random_seed, budget), [],
                model_identity(rt.sources.judge, None))
    return Judge(rt.model_name(it.judge), cfg, rt.model(it.judge), rt.cfg.random_seed, budget), [it.judge], None


def score_stage(rt: RunContext, k: int) -> list[StageResult]:
    """iter_K/scores: one row per candidate, judged by model K-1 (M0 for K = 1), the outside judge
    ``curate.judge`` or the verifier, written in shards; then, with a dev set, iter_K/dev_scores by the
    same judge (loaded once for both)."""
    cfg = rt.cfg.curate
    it = layout.iteration(k)
    candidates = rt.rows(CANDIDATES)
    dev = _dev_rows(rt)  # a bad dev set stops the stage before any model is loaded
    judge, judge_inputs, judge_identity = open_judge(rt, k)

    rubric = None
    if cfg.judge_kind == "rubric":
        from ..judges.rubric import load_rubric

        rubric = load_rubric(cfg.rubric, cfg.rubric_field)

    def do_shard(shard: int, start: int, end: int) -> dict:
        rows = score_rows(candidates.rows[start:end], judge)
        rt.store.write_rows(shard_file(it.scores, shard), rows, schema=score_schema(cfg.judge_kind))
        return {**shard_score_stats(rows), "served_by": judge.served}

    def finish(shards: list[dict]) -> dict:
        stats = {"judge": judge.name, "judge_kind": cfg.judge_kind, **merge_score_stats(shards)}
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

    deps = {**cfg.scoring_settings(), "base": rt.base_identity, **rt.generation_key(), "judge": judge_identity}
    if cfg.judge_kind == "rating":
        deps["template"] = template_hash("curate")
    if rubric is not None:
        deps["rubric_hash"] = rubric.text_hash  # its content, wherever it was read from
    name = it.stage("score")
    try:
        results = [rt.store.sharded_stage(name, deps, [it.scores], rt.store.count_rows(CANDIDATES), rt.cfg.shard_size,
                                          do_shard, finish, inputs=[CANDIDATES, *judge_inputs],
                                          force=rt.forced(name), job="curate", unit="pairs")]
        if dev is not None:
            results.append(_dev_stage(rt, k, judge, dev, {**deps, "dev_set": source_identity(
                rt.sources.dev_set, None, full=True), "positive_score": cfg.dev_positive_score}, judge_inputs))
        return results
    finally:
        judge.close()


def _dev_rows(rt: RunContext) -> list[dict] | None:
    if not rt.sources.dev_set:
        return None
    from ..data.devset import load_dev_set

    return load_dev_set(rt.sources.dev_set, rt.cfg.curate.dev_positive_score)


def _dev_stage(rt: RunContext, k: int, judge: Judge, dev: list[dict], deps: dict, judge_inputs: list[str]) -> StageResult:
    """iter_K/dev_scores: the dev pairs' score rows, with their label, by this iteration's judge."""
    it = layout.iteration(k)

    def work() -> dict:
        rows = [{**s, "label": d["label"], "positive": d["positive"]} for s, d in zip(score_rows(dev, judge), dev)]
        import pyarrow as pa

        schema = score_schema(rt.cfg.curate.judge_kind).append(pa.field("label", pa.string())).append(pa.field("positive", pa.bool_()))
        rt.store.write_rows(it.dev_scores, rows, schema=schema)
        health = judge_health(health_counts(rows))
        rt.result(f"dev set: {len(rows)} labelled pairs scored ({sum(d['positive'] for d in dev)} positives)")
        return {"pairs": len(rows), "positives": sum(d["positive"] for d in dev), "health": health}

    name = it.stage("dev")
    return rt.store.stage(name, deps, [it.dev_scores], work, inputs=judge_inputs, force=rt.forced(name), job="curate")


def shard_score_stats(rows: list[dict]) -> dict:
    failures: dict[str, int] = {}
    for r in rows:
        if r["parse_status"] != "ok":
            failures[r["parse_status"]] = failures.get(r["parse_status"], 0) + 1
    expected = [r["expected_score"] for r in rows if r["expected_score"] is not None]
    values = [r["value"] for r in rows if r["value"] is not None]
    stats = {"scored": len(rows), "parse_failure_kinds": failures, "histogram": histogram([r["score"] for r in rows]),
             "expected_sum": sum(expected), "expected_n": len(expected), "value_sum": sum(values),
             "value_n": len(values), "value_min": min(values, default=None), "value_max": max(values, default=None),
             "judge_inputs_cut": sum(1 for r in rows if r.get("judge_input_cut_tokens")),
             "logits_failures": sum(1 for r in rows if r["mode"] in ("logits", "both") and r["logits_score"] is None),
             "health_counts": health_counts(rows)}
    if rows and rows[0].get("judge_kind") == "rubric":  # per principle: [sum of signed log-odds, pairs, fails]
        columns = list(zip(*[r["principles"] for r in rows]))
        stats["principles"] = [[sum(v for v in col if v is not None), sum(v is not None for v in col),
                                sum(v is not None and v < 0 for v in col)] for col in columns]
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
    value_n = sum(s["value_n"] for s in shards)
    mins = [s["value_min"] for s in shards if s["value_min"] is not None]
    maxs = [s["value_max"] for s in shards if s["value_max"] is not None]
    out = {"served_by": sorted({s["served_by"] for s in shards if s.get("served_by")}),
           "scored": n, "parse_failures": failures, "parse_failure_kinds": kinds,
           "parse_failure_rate": failures / n if n else 0.0, "histogram": hist,
           "expected_score_mean": sum(s["expected_sum"] for s in shards) / expected_n if expected_n else None,
           "value_mean": sum(s["value_sum"] for s in shards) / value_n if value_n else None,
           "value_min": min(mins, default=None), "value_max": max(maxs, default=None),
           "judge_inputs_cut": sum(s.get("judge_inputs_cut", 0) for s in shards),
           "logits_failures": sum(s.get("logits_failures", 0) for s in shards),
           "health": judge_health(merge_health_counts([s["health_counts"] for s in shards]))}
    if any("principles" in s for s in shards):
        parts = [s["principles"] for s in shards if "principles" in s]
        out["principles"] = [[sum(p[j][k] for p in parts) for k in range(3)] for j in range(len(parts[0]))]
    if any("pairs" in s for s in shards):
        out["logits_histogram"] = histogram([])
        for s in shards:
            for score, count in s["logits_histogram"].items():
                out["logits_histogram"][score] += count
        rows = [{"score": g, "logits_score": a, "expected_score": e} for s in shards for g, a, e in s["pairs"]]
        out["agreement"] = agreement(rows)
    return out


def select_stage(rt: RunContext, k: int) -> StageResult:
    """A(K) from the saved scores by the recipe's rule; the rule used is recorded in the stats, and with
    a dev set the rule's precision, recall and F1 on it."""
    cfg = rt.cfg.curate
    it = layout.iteration(k)
    rule = selection_rule(cfg)
    dev = rt.sources.dev_set is not None

    def work() -> dict:
        candidates = rt.store.read_rows(CANDIDATES)
        scores = rt.store.read_rows(it.scores)
        curated = judged = select(candidates, scores, cfg)
        if cfg.review:  # the reviewers' decisions: rejected pairs out, edited instructions in (see humpback.review)
            curated, review = reviewed(rt.store.root, judged, candidates, scores, cfg.review_force_accepted)
        rt.store.write_rows(it.curated, curated, schema=_curated_schema())
        rate = len(curated) / len(candidates) if candidates else 0.0
        rt.result(f"curate: {len(curated)} of {len(candidates)} candidates kept ({short_rule(rule)})")
        rt.metric("select", "curated", len(curated), iteration=k)
        rt.metric("select", "acceptance_rate", rate, iteration=k)
        stats = {"curated": len(curated), "acceptance_rate": rate, "rule": rule,
                 "threshold": cfg.threshold if cfg.select == "threshold" else None, **_length_stats(curated)}
        if dev:
            stats["dev"] = _dev_quality(rt, k, rule, judged)
        if cfg.review:
            stats["review"] = _review_result(rt, k, review)
        return stats

    name = it.stage("select")
    inputs = [CANDIDATES, it.scores] + ([it.dev_scores] if dev else [])
    deps = {**rule, "review": review_key(rt.store.root, cfg.review_force_accepted)} if cfg.review else dict(rule)
    return rt.store.stage(name, deps, [it.curated], work, inputs=inputs, force=rt.forced(name), job="curate")


def _review_result(rt: RunContext, k: int, review: dict) -> dict:
    """curate.review: what the decisions changed, and the judge's selection against the reviewers."""
    q = review["quality"]
    rt.result(describe_applied(review))
    if q["pairs"]:
        rt.result(f"reviewed pairs: the judge's selection agrees with the reviewers on {q['agreeing']} of {q['pairs']} "
                  f"(precision {_pct(q['precision'])}, recall {_pct(q['recall'])})")
    for key in ("agreement", "precision", "recall", "f1"):
        if q[key] is not None:
            rt.metric("select", f"review/{key}", q[key], iteration=k)
    return review


def _dev_quality(rt: RunContext, k: int, rule: dict, curated: list[dict]) -> dict:
    """The selection rule applied to the dev pairs (a top fraction / top k: the pool's cutoff score)."""
    it = layout.iteration(k)
    dev = rt.store.read_rows(it.dev_scores)
    field = rule["score_field"]
    cutoff = selection_cutoff(rule, [c[field] for c in curated])
    quality = {**selection_quality([d["positive"] for d in dev], select_by_cutoff(dev, field, cutoff)),
               "cutoff": cutoff}
    p, r = quality["precision"], quality["recall"]
    rt.result(f"dev set: precision {_pct(p)}, recall {_pct(r)} over {quality['pairs']} labelled pairs "
              f"({quality['positives']} positives, {quality['selected']} selected)")
    for key in ("precision", "recall", "f1"):
        if quality[key] is not None:
            rt.metric("select", f"dev/{key}", quality[key], iteration=k)
    return quality


def _pct(x) -> str:
    return "-" if x is None else f"{x:.3f}"


def _length_stats(curated: list[dict]) -> dict:
    out = {}
    for name, col in (("instruction_chars_median", "instruction"), ("output_chars_median", "output")):
        out[name] = statistics.median(len(c[col]) for c in curated) if curated else None
    return out


def _score_stats(rt: RunContext, k: int, stats: dict) -> dict:
    health, h = stats["health"], stats["histogram"]
    if stats["judge_kind"] == "rating":
        rt.result(f"score: {stats['scored']} pairs; scores 1/2/3/4/5: {'/'.join(str(h[str(i)]) for i in range(1, 6))}; "
                  f"{stats['parse_failures']} parse failures")
    else:
        rt.result(f"score: {stats['scored']} pairs; {stats['judge_kind']} value mean {_pct(stats['value_mean'])} "
                  f"(min {_pct(stats['value_min'])}, max {_pct(stats['value_max'])}); {stats['parse_failures']} failures")
    for warning in health["warnings"]:
        rt.warn(f"judge health, iteration {k}: {warning}")
    if stats.get("judge_inputs_cut"):
        rt.warn(f"score: {stats['judge_inputs_cut']} judge prompts over generation.max_prompt_tokens had their "
                f"candidate output cut to fit (the rubric kept); see judge_input_cut_tokens in the scores")
    rt.metric("score", "judge_inputs_cut", stats.get("judge_inputs_cut", 0), iteration=k)
    rt.metric("score", "logits_failures", stats.get("logits_failures", 0), iteration=k)
    rt.metric("score", "scored", stats["scored"], iteration=k)
    rt.metric("score", "parse_failure_rate", stats["parse_failure_rate"], iteration=k)
    for score, count in stats["histogram"].items():
        rt.metric("score", f"histogram/{score}", count, iteration=k)
    for name in ("choice_mass_mean", "top_score_share"):
        if health[name] is not None:
            rt.metric("score", f"health/{name}", health[name], iteration=k)
    rt.metric("score", "health/warnings", len(health["warnings"]), iteration=k)
    if "agreement" in stats:
        a = stats["agreement"]
        rt.result(f"agreement of generated and logits scores over {a['pairs']} pairs: Spearman "
                  f"{a['spearman_generated_vs_expected']}, exact {a['exact_agreement']}")
        for name in ("spearman_generated_vs_expected", "exact_agreement"):
            if a[name] is not None:
                rt.metric("score", f"agreement/{name}", a[name], iteration=k)
    return stats


def _curated_schema():
    import pyarrow as pa

    return pa.schema([("candidate_id", pa.string()), ("segment_id", pa.string()), ("instruction", pa.string()),
                      ("output", pa.string()), ("score", pa.int64()), ("expected_score", pa.float64()),
                      ("value", pa.float64())])
