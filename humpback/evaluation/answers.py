"""A model's answers to the eval prompts as rows, their length statistics and the length-drift flag.
Pure functions of rows.

Length drift is a known failure of self-alignment loops (an open reproduction's M1 wrote answers
three times as long as M0's and was worse): every model after M0 gets ``length_ratio``, its mean
answer length over M0's, and ``length_drift`` when that ratio leaves [1/r, r] for
``eval.length_drift_ratio`` r.
"""

from __future__ import annotations

import statistics
from typing import Optional, Sequence

from .exact import exact_match, exact_match_stats


def answer_rows(prompts: Sequence[dict], outputs: Sequence[str], token_counts: Sequence[int], model: str,
                generator: str, settings: dict) -> list[dict]:
    """One row per prompt: the answer, who wrote it with which settings, its length and, where the
    prompt carries a reference answer, whether it matches exactly."""
    rows = []
    for p, text, n in zip(prompts, outputs, token_counts, strict=True):
        ref = p.get("reference")
        rows.append({"prompt_id": p["prompt_id"], "instruction": p["instruction"], "output": text, "model": model,
                     "generator": generator, "dataset": p.get("dataset"), "output_chars": len(text),
                     "output_tokens": n,
                     "reference": ref, "exact_match": exact_match(text, ref) if ref is not None else None,
                     **settings})
    return rows


def shard_answer_stats(rows: Sequence[dict]) -> dict:
    return {"chars": [r["output_chars"] for r in rows], "tokens": [r["output_tokens"] for r in rows],
            "matches": [r["exact_match"] for r in rows]}


def merge_answer_stats(shards: Sequence[dict]) -> dict:
    """``answers``, ``answer_chars_mean``/``_median``, ``answer_tokens_mean``, ``empty_answers`` and the
    exact-match figures (None without references)."""
    chars = [c for s in shards for c in s["chars"]]
    tokens = [t for s in shards for t in s["tokens"]]
    matches = [m for s in shards for m in s["matches"]]
    return {"answers": len(chars),
            "answer_chars_mean": sum(chars) / len(chars) if chars else None,
            "answer_chars_median": statistics.median(chars) if chars else None,
            "answer_tokens_mean": sum(tokens) / len(tokens) if tokens else None,
            "empty_answers": sum(c == 0 for c in chars),
            **exact_match_stats(matches)}


def length_drift(chars_mean: Optional[float], m0_chars_mean: Optional[float],
                 ratio: float) -> tuple[Optional[float], Optional[bool]]:
    """(length_ratio, length_drift) of a model against M0; (None, None) when either mean is missing or M0's is 0."""
    if chars_mean is None or not m0_chars_mean:
        return None, None
    r = chars_mean / m0_chars_mean
    return r, not (1 / ratio <= r <= ratio)


def answer_schema():
    import pyarrow as pa

    return pa.schema([("prompt_id", pa.string()), ("instruction", pa.string()), ("output", pa.string()),
                      ("model", pa.string()), ("generator", pa.string()), ("dataset", pa.string()),
                      ("output_chars", pa.int64()), ("output_tokens", pa.int64()), ("reference", pa.string()),
                      ("exact_match", pa.bool_()), ("system_prompt", pa.string()), ("temperature", pa.float64()),
                      ("top_p", pa.float64()), ("max_new_tokens", pa.int64()), ("seed", pa.int64())])
