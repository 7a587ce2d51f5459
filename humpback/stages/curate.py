"""Self-curation: the current model (or a verifier, or an outside judge) scores every candidate, and the
best pairs by the recipe's rule become the curated set A(K).

Which judge scores is ``curate.judge_kind`` (see :mod:`humpback.judges`); the stages never ask. Scoring
and selection are separate stages, so a new threshold re-selects from the saved scores without asking
the judge again. With ``curate.dev_set``, the same judge also scores the labelled dev pairs
(``iter_K/dev``), and selection reports its precision, recall and F1 on them.
"""

from __future__ import annotations

from .. import layout
from ..judges import CurationJudge, score_rows, score_schema
from ..judges.health import dev_auc, health_counts, judge_health, ranking_field, selection_quality
from ..judges.stats import compare_scores, merge_score_stats, shard_score_stats
from ..generation.rejection import describe_checked, merge_checked
from ..layout import CANDIDATES
from ..prompts import template_hash
from ..review.apply import describe_applied, review_key, reviewed
from ..run import RunContext
from ..scoring import length_stats, select, select_by_cutoff, selection_cutoff, selection_rule, short_rule
from ..store import StageResult, model_identity, shard_file, source_identity


def open_curation_judge(rt: RunContext, k: int, cfg=None, model=None) -> tuple[CurationJudge, list[str], dict | None]:
    """(the judge of iteration K, the run-folder models it reads, what identifies an outside one).
    ``cfg``: other curate settings (a comparison judge's); ``model``: a judging model already open."""
    cfg = cfg or rt.cfg.curate
    it = layout.iteration(k)
    if cfg.judge_kind == "verifier":
        from ..judges.verifier import load_verifier, verifier_identity

        load_verifier(cfg.verifier)  # a clear error now, before any work
        return CurationJudge(cfg.verifier, cfg, None, rt.cfg.random_seed), [], verifier_identity(cfg.verifier)
    budget = rt.cfg.generation.max_prompt_tokens
    if rt.sources.judge:  # an outside judge replaces the run's own model
        model = model or rt.model(outside=rt.sources.judge)
        return (CurationJudge(rt.sources.judge, cfg, model, rt.cfg.random_seed, budget), [],
                model_identity(rt.sources.judge, None))
    return (CurationJudge(rt.model_name(it.judge), cfg, model or rt.model(it.judge), rt.cfg.random_seed, budget),
            [it.judge], None)


def score_stage(rt: RunContext, k: int) -> list[StageResult]:
    """iter_K/scores: one row per candidate, judged by model K-1 (M0 for K = 1), the outside judge
    ``curate.judge`` or the verifier, written in shards; then, with a dev set, iter_K/dev_scores by the
    same judge (loaded once for both)."""
    cfg = rt.cfg.curate
    it = layout.iteration(k)
    candidates = rt.rows(CANDIDATES)
    dev = _dev_rows(rt)  # a bad dev set stops the stage before any model is loaded
    judge, judge_inputs, judge_identity = open_curation_judge(rt, k)
    deps, rubric = _judge_deps(rt, cfg, judge_identity)
    name = it.stage("score")  # the judge opens on first use: nothing to close before the shards
    n_candidates = rt.store.count_rows(CANDIDATES)
    stage = rt.store.sharded_stage(name, deps, [it.scores], rt.cfg.shard_size, inputs=[CANDIDATES, *judge_inputs],
                                   force=rt.forced(name), job="curate", unit="pairs")

    def do_shard(shard: int, start: int, end: int) -> dict:
        before = judge.usage()
        judge.take_checks()
        rows = score_rows(candidates.rows[start:end], judge)
        rt.store.write_rows(shard_file(it.scores, shard), rows, schema=score_schema(cfg.judge_kind))
        return {**shard_score_stats(rows), "served_by": judge.served, "usage": (judge.usage() - before).to_dict(),
                "checks": judge.take_checks()}

    def finish(shards: list[dict]) -> dict:
        stats = {"judge": judge.name, "judge_kind": cfg.judge_kind, **merge_score_stats(shards)}
        if deps.get("checks"):
            stats["checks"] = merge_checked([c for s in shards for c in s.get("checks") or []],
                                            deps["checks"]["constraint"], deps["checks"]["validator"], cfg.max_tries)
            for note in describe_checked(f"score {k}", stats["checks"], rt.cfg.generation.backend):
                rt.warn(note)
            for name in ("tries", "never_passed", "violations", "acceptance_rate"):
                if stats["checks"][name] is not None:
                    rt.metric("score", f"checks/{name}", stats["checks"][name], iteration=k)
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

    try:
        results = [stage.run(n_candidates, do_shard, finish)]
        if dev is not None:
            results.append(_dev_stage(rt, k, judge, dev, {**deps, "dev_set": source_identity(
                rt.sources.dev_set, None, full=True), "positive_score": cfg.dev_positive_score}, judge_inputs))
        return results
    finally:
        judge.close()


def _judge_deps(rt: RunContext, cfg, judge_identity: dict | None) -> tuple[dict, object]:
    """(what a judge's scores depend on: the stage key, the rubric it reads or None)."""
    deps = {**cfg.scoring_settings(), "base": rt.base_identity, **rt.generation_key(), "judge": judge_identity}
    if cfg.judge_kind == "rating" and (cfg.constraint or cfg.validator):
        from ..generation.constraints import parse_constraint
        from ..judges.verifier import verifier_identity

        # What the format checks are (a grammar file's content, the validator's source): an edit re-scores.
        deps["checks"] = {"constraint": parse_constraint(cfg.constraint, cfg.max_new_tokens).identity()
                          if cfg.constraint else None,
                          "validator": verifier_identity(cfg.validator) if cfg.validator else None}
    rubric = None
    if cfg.judge_kind == "rating":
        deps["template"] = template_hash("curate")
    if cfg.judge_kind == "rubric":
        from ..judges.rubric import load_rubric

        rubric = load_rubric(cfg.rubric, cfg.rubric_field)
        deps["rubric_hash"] = rubric.text_hash  # its content, wherever it was read from
    return deps, rubric


def compare_stages(rt: RunContext, k: int) -> list[StageResult]:
    """With ``curate.compare_judges``: iter_K/compare, every comparison judge's scores of the candidates
    (the same model as iteration K's judge, opened once), each set against the selecting judge's (rank
    agreement, the pairs both would keep); then, with a dev set, iter_K/compare_dev, their scores of the
    dev pairs with each judge's AUC beside the selecting judge's. Nothing here selects."""
    cfg = rt.cfg.curate
    if not cfg.compare_judges:
        return []
    it = layout.iteration(k)
    candidates = rt.rows(CANDIDATES)
    dev = _dev_rows(rt)
    main, judge_inputs, _ = open_curation_judge(rt, k)
    judges, deps, shared = {}, {}, main.model  # one judging model for all (a verifier has none)
    for kind in cfg.compare_judges:
        judge, inputs, identity = open_curation_judge(rt, k, cfg.as_judge(kind), model=shared)
        judges[kind], shared = judge, shared or judge.model
        judge_inputs = list(dict.fromkeys(judge_inputs + inputs))
        deps[kind], _ = _judge_deps(rt, judge.cfg, identity)
    main_field = ranking_field(cfg.judge_kind, cfg.mode)
    name = it.stage("compare")
    versus = {**cfg.scoring_settings(), "rule": selection_rule(cfg)}
    n_candidates = rt.store.count_rows(CANDIDATES)
    outputs = [it.compare_scores(kind) for kind in judges]
    stage = rt.store.sharded_stage(name, {"judges": deps, "versus": versus}, outputs, rt.cfg.shard_size,
                                   inputs=[CANDIDATES, it.scores, *judge_inputs], force=rt.forced(name), job="curate",
                                   unit="pairs")

    def do_shard(shard: int, start: int, end: int) -> dict:
        out = {}
        for kind, judge in judges.items():
            rows = score_rows(candidates.rows[start:end], judge)
            rt.store.write_rows(shard_file(it.compare_scores(kind), shard), rows, schema=score_schema(kind))
            out[kind] = shard_score_stats(rows)
        return out

    def finish(shards: list[dict]) -> dict:
        ours = rt.store.read_rows(it.scores)
        keep = len(select(candidates.rows, ours, cfg))
        stats = {}
        for kind, judge in judges.items():
            merged = merge_score_stats([s[kind] for s in shards])
            field = ranking_field(kind, judge.cfg.mode)
            vs = compare_scores(ours, rt.store.read_rows(it.compare_scores(kind)), main_field, field, keep)
            stats[kind] = {**merged, "field": field,
                           "versus": {"judge_kind": cfg.judge_kind, "field": main_field, **vs}}
            rt.result(f"compare {kind}: {merged['scored']} pairs, {merged['parse_failures']} failures; Spearman with "
                      f"{cfg.judge_kind} {_num(vs['spearman'])}; {vs['kept_by_both']} of its best {keep} are among "
                      f"{cfg.judge_kind}'s")
            for warning in merged["health"]["warnings"]:
                rt.warn(f"judge health, iteration {k}, compared {kind} judge: {warning}")
            if vs["spearman"] is not None:
                rt.metric("compare", f"{kind}/spearman", vs["spearman"], iteration=k)
        return stats

    try:
        results = [stage.run(n_candidates, do_shard, finish)]
        if dev is not None:
            results.append(_compare_dev_stage(rt, k, judges, dev, deps, judge_inputs))
        return results
    finally:
        for judge in (main, *judges.values()):
            judge.close()


def _compare_dev_stage(rt: RunContext, k: int, judges: dict, dev: list[dict], deps: dict,
                       judge_inputs: list[str]) -> StageResult:
    """iter_K/compare_dev: the comparison judges' scores of the dev pairs and their AUCs."""
    cfg = rt.cfg.curate
    it = layout.iteration(k)
    name = it.stage("compare_dev")
    full = {"judges": deps, "dev_set": source_identity(rt.sources.dev_set, None, full=True),
            "positive_score": cfg.dev_positive_score}
    stage = rt.store.stage(name, full, [it.compare_dev_scores(kind) for kind in judges], inputs=judge_inputs,
                           force=rt.forced(name), job="curate")
    if not stage.runs:
        return stage.result()
    with stage.running():
        stats = {}
        for kind, judge in judges.items():
            rows = [{**s, "label": d["label"], "positive": d["positive"]} for s, d in zip(score_rows(dev, judge), dev)]
            rt.store.write_rows(it.compare_dev_scores(kind), rows, schema=_dev_schema(kind))
            quality = dev_auc(rows, ranking_field(kind, judge.cfg.mode), seed=rt.cfg.random_seed)
            stats[kind] = {"pairs": len(rows), "health": judge_health(health_counts(rows)), "auc": quality}
            rt.result(f"dev set, compared {kind} judge: {_auc_text(quality)}")
            if quality["auc"] is not None:
                rt.metric("compare_dev", f"{kind}/auc", quality["auc"], iteration=k)
    return stage.finish(stats)


def _num(x) -> str:
    return "-" if x is None else f"{x:.3f}"


def _dev_rows(rt: RunContext) -> list[dict] | None:
    if not rt.sources.dev_set:
        return None
    from ..data.devset import load_dev_set

    return load_dev_set(rt.sources.dev_set, rt.cfg.curate.dev_positive_score)


def _dev_stage(rt: RunContext, k: int, judge: CurationJudge, dev: list[dict], deps: dict,
               judge_inputs: list[str]) -> StageResult:
    """iter_K/dev_scores: the dev pairs' score rows, with their label, by this iteration's judge."""
    it = layout.iteration(k)
    name = it.stage("dev")
    stage = rt.store.stage(name, deps, [it.dev_scores], inputs=judge_inputs, force=rt.forced(name), job="curate")
    if not stage.runs:
        return stage.result()
    with stage.running():
        rows = [{**s, "label": d["label"], "positive": d["positive"]} for s, d in zip(score_rows(dev, judge), dev)]
        rt.store.write_rows(it.dev_scores, rows, schema=_dev_schema(rt.cfg.curate.judge_kind))
        health = judge_health(health_counts(rows))
        cfg = rt.cfg.curate
        quality = dev_auc(rows, ranking_field(cfg.judge_kind, cfg.mode), seed=rt.cfg.random_seed)
        rt.result(f"dev set: {len(rows)} labelled pairs scored ({sum(d['positive'] for d in dev)} positives); "
                  f"{_auc_text(quality)}")
        if quality["auc"] is not None:
            rt.metric("dev", "auc", quality["auc"], iteration=k)
    return stage.finish({"pairs": len(rows), "positives": sum(d["positive"] for d in dev), "health": health,
                         "auc": quality})


def select_stage(rt: RunContext, k: int) -> StageResult:
    """A(K) from the saved scores by the recipe's rule; the rule used is recorded in the stats, and with
    a dev set the rule's precision, recall and F1 on it."""
    cfg = rt.cfg.curate
    it = layout.iteration(k)
    rule = selection_rule(cfg)
    dev = rt.sources.dev_set is not None
    name = it.stage("select")
    inputs = [CANDIDATES, it.scores] + ([it.dev_scores] if dev else [])
    deps = {**rule, "review": review_key(rt.store.root, cfg.review_force_accepted)} if cfg.review else dict(rule)
    stage = rt.store.stage(name, deps, [it.curated], inputs=inputs, force=rt.forced(name), job="curate")
    if not stage.runs:
        return stage.result()
    with stage.running():
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
                 "threshold": cfg.threshold if cfg.select == "threshold" else None, **length_stats(curated)}
        if dev:
            stats["dev"] = _dev_quality(rt, k, rule, judged, scores)
        if cfg.review:
            stats["review"] = _review_result(rt, k, review)
    return stage.finish(stats)


def _review_result(rt: RunContext, k: int, review: dict) -> dict:
    """curate.review: what the decisions changed, and the judge's selection against the reviewers."""
    q = review["quality"]
    rt.result(describe_applied(review))
    if q["pairs"]:
        rt.result(f"reviewed pairs: the judge's selection agrees with the reviewers on {q['agreeing']} of "
                  f"{q['pairs']} (precision {_pct(q['precision'])}, recall {_pct(q['recall'])})")
    for key in ("agreement", "precision", "recall", "f1"):
        if q[key] is not None:
            rt.metric("select", f"review/{key}", q[key], iteration=k)
    return review


def _dev_quality(rt: RunContext, k: int, rule: dict, curated: list[dict], scores: list[dict]) -> dict:
    """The selection rule applied to the dev pairs (a top fraction / top k: the pool's cutoff score, read
    from the score rows: a curated row does not carry every score column, e.g. ``logits_score``)."""
    it = layout.iteration(k)
    dev = rt.store.read_rows(it.dev_scores)
    field = rule["score_field"]
    by_id = {s["candidate_id"]: s for s in scores}
    cutoff = selection_cutoff(rule, [by_id[c["candidate_id"]][field] for c in curated])
    quality = {**selection_quality([d["positive"] for d in dev], select_by_cutoff(dev, field, cutoff)),
               "cutoff": cutoff}
    p, r = quality["precision"], quality["recall"]
    rt.result(f"dev set: precision {_pct(p)}, recall {_pct(r)} over {quality['pairs']} labelled pairs "
              f"({quality['positives']} positives, {quality['selected']} selected)")
    for key in ("precision", "recall", "f1"):
        if quality[key] is not None:
            rt.metric("select", f"dev/{key}", quality[key], iteration=k)
    return quality


def _auc_text(q: dict) -> str:
    if q["auc"] is None:
        return "AUC - (needs positives and negatives)"
    return f"AUC {q['auc']:.3f} [{q['low']:.3f}, {q['high']:.3f}] by {q['field']}"


def _pct(x) -> str:
    return "-" if x is None else f"{x:.3f}"


def _score_stats(rt: RunContext, k: int, stats: dict) -> dict:
    health, h = stats["health"], stats["histogram"]
    if stats["judge_kind"] == "rating":
        rt.result(f"score: {stats['scored']} pairs; scores 1/2/3/4/5: "
                  f"{'/'.join(str(h[str(i)]) for i in range(1, 6))}; "
                  f"{stats['parse_failures']} parse failures")
    else:
        rt.result(f"score: {stats['scored']} pairs; {stats['judge_kind']} value mean {_pct(stats['value_mean'])} "
                  f"(min {_pct(stats['value_min'])}, max {_pct(stats['value_max'])}); {stats['parse_failures']} "
                  "failures")
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


def _dev_schema(judge_kind: str):
    import pyarrow as pa

    return score_schema(judge_kind).append(pa.field("label", pa.string())).append(pa.field("positive", pa.bool_()))


def _curated_schema():
    import pyarrow as pa

    return pa.schema([("candidate_id", pa.string()), ("segment_id", pa.string()), ("instruction", pa.string()),
                      ("output", pa.string()), ("score", pa.int64()), ("expected_score", pa.float64()),
                      ("value", pa.float64())])
