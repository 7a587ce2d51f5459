"""Self-augmentation: the backward model writes one instruction for each segment.

Every generation is kept: usable ones become candidates, the rest go to ``rejected`` with the
reason (empty, echoed prompt, degenerate, or truncated: it ran out of ``augment.max_new_tokens``
before it ended), so nothing is lost silently. The prompts, the sampling and the filter are pure
functions of rows in :mod:`humpback.data.instructions`.
"""

from __future__ import annotations

from ..config import to_dict
from ..data.instructions import (REJECT_REASONS, backward_prompts, backward_sampling, clean_instruction, is_generic,
                                 merge_shard_stats)
from ..generation.rejection import describe_checked, generate_checked, load_validator, merge_checked
from ..judges.verifier import verifier_identity
from ..layout import BACKWARD, CANDIDATES, REJECTED, SEGMENTS
from ..prompts import template_hash
from ..run import RunContext
from ..store import StageResult, shard_file

# Keys added after runs existed, with their defaults: left out of the stage key when at them.
CHECK_KEYS = {"constraint": None, "validator": None, "max_tries": 1, "task_validator": None, "task_max_tries": 1,
              "instance_constraint": None, "instance_validator": None}


def augment_stage(rt: RunContext) -> StageResult:
    """One instruction per segment, written in shards as they finish (see humpback.store.shards)."""
    cfg = rt.cfg.augment
    generator = rt.model_name(BACKWARD)
    segments = rt.rows(SEGMENTS)
    model = rt.model(BACKWARD)
    params = backward_sampling(cfg, rt.cfg.random_seed)
    validator = load_validator(cfg.validator, "augment.validator") if cfg.validator else None
    checks = {"constraint": params.constraint.identity() if params.constraint else None,
              "validator": verifier_identity(cfg.validator) if cfg.validator else None}
    # The checks' keys join the stage key only when set: runs made before they existed keep their key.
    settings = {k: v for k, v in to_dict(cfg).items() if k not in CHECK_KEYS or v != CHECK_KEYS[k]}
    deps = {"augment": settings, "template": template_hash("backward"), "base": rt.base_identity,
            **rt.generation_key(), **({"checks": checks} if any(checks.values()) else {})}
    n_segments = rt.store.count_rows(SEGMENTS)
    stage = rt.store.sharded_stage("augment", deps, [CANDIDATES, REJECTED], rt.cfg.shard_size,
                                   inputs=[SEGMENTS, BACKWARD], force=rt.forced("augment"), unit="segments")

    def do_shard(shard: int, start: int, end: int) -> dict:
        part = segments.rows[start:end]
        prompts = backward_prompts(model.tokenizer, [s["text"] for s in part])
        before = model.usage()
        checked = generate_checked(model.generator.generate, prompts, params, validator, cfg.max_tries)
        used = (model.usage() - before).to_dict()
        candidates, rejected = [], []
        for seg, raw, passed in zip(part, checked.texts, checked.passed, strict=True):
            truncated = getattr(raw, "finish_reason", None) == "length"
            instruction, status = clean_instruction(raw, seg["text"], cfg,
                                                    truncated=truncated and not cfg.keep_truncated)
            if status == "ok" and not passed:
                status = "invalid"  # every attempt broke augment.constraint or augment.validator
            row = {"candidate_id": seg["id"], "segment_id": seg["id"], "instruction": instruction,
                   "output": seg["text"], "raw_generation": str(raw), "generator": generator,
                   "temperature": cfg.temperature, "top_p": cfg.top_p, "max_new_tokens": cfg.max_new_tokens,
                   "seed": rt.cfg.random_seed, "truncated": truncated}
            if status == "ok":
                candidates.append(row)
            else:
                rejected.append({**row, "reason": status})
        rt.store.write_rows(shard_file(CANDIDATES, shard), candidates, schema=_schema(False))
        rt.store.write_rows(shard_file(REJECTED, shard), rejected, schema=_schema(True))
        return {"segments": len(part), "candidates": len(candidates),
                "rejected": {r: sum(1 for x in rejected if x["reason"] == r) for r in REJECT_REASONS},
                "generic_instructions": sum(is_generic(c["instruction"]) for c in candidates),
                "truncated": sum(r["truncated"] for r in candidates + rejected),
                "instruction_chars": [len(c["instruction"]) for c in candidates], "served_by": model.served,
                "usage": used, "checks": checked.stats}

    def finish(shards: list[dict]) -> dict:
        model.close()
        stats = merge_shard_stats(shards)
        stats["generator"] = generator
        stats["checks"] = merge_checked([s.get("checks") for s in shards], checks["constraint"], checks["validator"],
                                        cfg.max_tries)
        for note in describe_checked("augment", stats["checks"], rt.cfg.generation.backend):
            rt.warn(note)
        rejected = ", ".join(f"{n} {reason}" for reason, n in stats["rejected"].items() if n) or "none"
        rt.result(f"augment: {stats['segments']} segments -> {stats['candidates']} candidates; rejected: {rejected}")
        if stats["truncated"]:
            rt.warn(f"augment: {stats['truncated']} generations ran out of augment.max_new_tokens "
                    f"({cfg.max_new_tokens}): " + ("kept, flagged truncated" if cfg.keep_truncated
                                                   else "rejected as truncated"))
        for name in ("segments", "candidates", "generic_instructions", "truncated", "instruction_chars_median"):
            rt.metric("augment", name, stats[name])
        for reason, n in stats["rejected"].items():
            rt.metric("augment", f"rejected/{reason}", n)
        if params.constraint is not None or validator is not None:
            for name in ("tries", "never_passed", "violations", "acceptance_rate"):
                if stats["checks"][name] is not None:
                    rt.metric("augment", f"checks/{name}", stats["checks"][name])
        return stats

    try:
        return stage.run(n_segments, do_shard, finish)
    finally:
        model.close()


def _schema(with_reason: bool):
    import pyarrow as pa

    fields = [("candidate_id", pa.string()), ("segment_id", pa.string()), ("instruction", pa.string()),
              ("output", pa.string()), ("raw_generation", pa.string()), ("generator", pa.string()),
              ("temperature", pa.float64()), ("top_p", pa.float64()), ("max_new_tokens", pa.int64()),
              ("seed", pa.int64()), ("truncated", pa.bool_())]
    if with_reason:
        fields.append(("reason", pa.string()))
    return pa.schema(fields)
