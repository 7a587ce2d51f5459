"""The backward model's side of self-augmentation, as pure functions: the prompt that asks it for a
segment's instruction, its sampling, the filter of the instructions it writes (empty, echoed prompt,
degenerate, truncated), and the counts the augment stage (:mod:`humpback.stages.augment`) sums over
its shards.
"""

from __future__ import annotations

import re
import statistics
from typing import TYPE_CHECKING

from ..chat import messages_for, render_prompt
from ..generation.base import Usage
from ..prompts import render_backward, template

if TYPE_CHECKING:
    from ..config import AugmentConfig

_WORD = re.compile(r"\w+")
_LABEL = re.compile(r"^\s*(?:question|instruction|query|prompt)\s*:\s*", re.IGNORECASE)
# Backward models trained on little data fall back to generic requests (the paper's reimplementations saw this).
_GENERIC = re.compile(
    r"^(?:please\s+)?(?:write|create|compose|generate)\s+(?:an?\s+|the\s+)?(?:\w+\s+)?"
    r"(?:article|blog(?:\s+post)?|essay|story|text|post|paragraph|summary)\b",
    re.IGNORECASE,
)


def backward_prompts(tokenizer, texts: list[str]) -> list[str]:
    """The rendered prompts that ask the backward model for each segment's instruction."""
    return [render_prompt(tokenizer, messages_for(render_backward(text))) for text in texts]


def backward_sampling(cfg: AugmentConfig, seed: int):
    """The recipe's sampling for the backward model (the paper's temperature 0.7, top_p 0.9), with the
    format ``augment.constraint`` names, if any."""
    from ..generation.base import SamplingParams

    return SamplingParams(temperature=cfg.temperature, top_p=cfg.top_p, max_new_tokens=cfg.max_new_tokens, seed=seed,
                          constraint=backward_constraint(cfg))


def backward_constraint(cfg: AugmentConfig):
    """The parsed ``augment.constraint`` (sized for ``augment.max_new_tokens``), or None."""
    if cfg.constraint is None:
        return None
    from ..generation.constraints import parse_constraint

    return parse_constraint(cfg.constraint, cfg.max_new_tokens)


def clean_instruction(raw: str, segment: str, cfg: AugmentConfig, truncated: bool = False) -> tuple[str, str]:
    """(instruction, status) for one generation; status is ok, empty, echo, degenerate or truncated
    (``truncated``: the generation stopped at max_new_tokens, so the instruction may be cut short)."""
    text = _LABEL.sub("", raw.strip(), count=1).strip()
    if len(text) > 1 and text[0] == text[-1] and text[0] in "\"'":
        text = text[1:-1].strip()
    if len(text) < cfg.min_instruction_chars or not _WORD.search(text):
        return text, "empty"
    if _echoes(text, segment):
        return text, "echo"
    if len(text) > cfg.max_instruction_chars or _repeated_fraction(text) > cfg.max_repeated_ngram_fraction:
        return text, "degenerate"
    if truncated:
        return text, "truncated"
    return text, "ok"


def is_generic(instruction: str) -> bool:
    return bool(_GENERIC.match(instruction))


def _echoes(text: str, segment: str) -> bool:
    """The backward prompt copied back, or the instruction mostly lifted word for word from the segment."""
    header = template("backward").split("\n", 1)[0]
    if header[:40].lower() in text.lower():
        return True
    words = [w.lower() for w in _WORD.findall(text)]
    if len(words) < 5:  # too short for 5-grams: an echo is the segment's own opening
        return segment.strip().lower().startswith(text.strip().lower())
    seg_words = [w.lower() for w in _WORD.findall(segment)]
    seg_grams = {tuple(seg_words[i : i + 5]) for i in range(len(seg_words) - 4)}
    grams = [tuple(words[i : i + 5]) for i in range(len(words) - 4)]
    return sum(g in seg_grams for g in grams) / len(grams) >= 0.5


def _repeated_fraction(text: str, n: int = 3) -> float:
    words = [w.lower() for w in _WORD.findall(text)]
    grams = [tuple(words[i : i + n]) for i in range(len(words) - n + 1)]
    if len(grams) < 2:
        return 0.0
    return 1.0 - len(set(grams)) / len(grams)


REJECT_REASONS = ("empty", "echo", "degenerate", "truncated", "invalid")


def merge_shard_stats(shards: list[dict]) -> dict:
    """Sum the shards' counts; the median instruction length over all of them."""
    lengths = [n for s in shards for n in s["instruction_chars"]]
    return {
        "segments": sum(s["segments"] for s in shards),
        "candidates": sum(s["candidates"] for s in shards),
        "rejected": {r: sum(s["rejected"].get(r, 0) for s in shards) for r in REJECT_REASONS},
        "generic_instructions": sum(s["generic_instructions"] for s in shards),
        "truncated": sum(s.get("truncated", 0) for s in shards),
        "instruction_chars_median": statistics.median(lengths) if lengths else 0,
        "served_by": sorted({s["served_by"] for s in shards if s.get("served_by")}),
        "usage": Usage.total(s.get("usage") for s in shards).to_dict(),
    }
