"""Score statistics: what a score stage records of its rows, per shard and merged (the parse failures,
the histogram, the means, judge health's counts, the rubric's per-principle sums, the generated/logits
agreement), and how two judges' scores of the same pairs compare. Pure functions of score rows."""

from __future__ import annotations

from ..generation.base import Usage
from ..scoring import agreement, histogram, spearman
from .health import health_counts, judge_health, merge_health_counts


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
           "usage": Usage.total(s.get("usage") for s in shards).to_dict(),
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


def compare_scores(ours: list[dict], theirs: list[dict], our_field: str, their_field: str, keep: int) -> dict:
    """Two judges' scores of the same pairs (in the same order): their rank agreement (Spearman over the
    pairs both scored), and how many of the ``keep`` best pairs by ours are also among the ``keep`` best
    by theirs (unscored pairs last, ties by position)."""
    if len(ours) != len(theirs):
        raise ValueError(f"{len(ours)} score rows against {len(theirs)}")
    both = [(a[our_field], b[their_field]) for a, b in zip(ours, theirs)
            if a[our_field] is not None and b[their_field] is not None]

    def best(rows: list[dict], field: str) -> set[int]:
        order = sorted(range(len(rows)), key=lambda i: (rows[i][field] is None, -(rows[i][field] or 0), i))
        return set(order[:keep])

    return {"pairs": len(ours), "both_scored": len(both),
            "spearman": spearman([a for a, _ in both], [b for _, b in both]) if len(both) > 1 else None,
            "keep": keep, "kept_by_both": len(best(ours, our_field) & best(theirs, their_field)) if keep else 0}
