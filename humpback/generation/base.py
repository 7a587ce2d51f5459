"""The interface the stages use to generate text and read next-token probabilities.

A backend takes already-rendered prompt strings (the caller applies the chat template) and
returns only the newly generated text, in input order. Backends hide behind :class:`Generator`;
the stages never know which one runs.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Protocol, Sequence, runtime_checkable


@dataclass(frozen=True)
class SamplingParams:
    temperature: float = 0.0  # 0 = greedy
    top_p: float = 1.0
    max_new_tokens: int = 128
    seed: int = 0

    def __post_init__(self) -> None:
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.max_new_tokens <= 0:
            raise ValueError(f"max_new_tokens must be > 0, got {self.max_new_tokens}")


@dataclass(frozen=True)
class ChoiceProbs:
    probs: tuple[float, ...]  # renormalised over the choices, sums to 1
    mass: float  # total probability the model put on the choices before renormalising


@runtime_checkable
class Generator(Protocol):
    name: str  # provenance: model id/path (+ "@revision") (+ "+adapter:<path>")

    def generate(self, prompts: Sequence[str], params: SamplingParams) -> list[str]:
        """The new text for each prompt (special tokens stripped), in input order."""
        ...

    def choice_probs(self, prompts: Sequence[str], choices: Sequence[str]) -> list[ChoiceProbs]:
        """P(choice | prompt + " ") over single-token choices (e.g. "1".."5" after "Score:")."""
        ...

    def close(self) -> None:
        """Free the model and any accelerator memory it holds."""
        ...


def generator_name(model: str, revision: str | None = None, adapter: str | None = None) -> str:
    """Provenance string: ``model[@revision][+adapter:<path>]``."""
    name = str(model)
    if revision:
        name += f"@{revision}"
    if adapter:
        name += f"+adapter:{adapter}"
    return name


def prompt_seed(seed: int, prompt: str) -> int:
    """A seed from the run's ``seed`` and one prompt: a prompt's sample depends on these alone, not on
    what ran before or which prompts share its batch (so batched, sorted, resumed and sharded runs
    all write the same records)."""
    h = hashlib.blake2b(str(seed).encode(), digest_size=8)
    h.update(b"\x00")
    h.update(prompt.encode("utf-8"))
    return int.from_bytes(h.digest(), "little") & (2**63 - 1)


def encode_prompts(tokenizer, prompts: Sequence[str], max_tokens: int, reserve: int = 0) -> list[list[int]]:
    """Token ids per prompt, cut from the left to ``max_tokens - reserve`` (a BOS is kept, never doubled)."""
    bos = tokenizer.bos_token_id
    limit = max(1, max_tokens - reserve)
    out, cut = [], 0
    for ids in tokenizer(list(prompts), add_special_tokens=True)["input_ids"]:
        if bos is not None and len(ids) >= 2 and ids[0] == bos and ids[1] == bos:
            ids = ids[1:]  # the rendered prompt already had a BOS: do not double it
        if len(ids) > limit:
            keep_bos = bos is not None and ids[0] == bos and limit > 1
            ids = ([bos] + ids[len(ids) - limit + 1:]) if keep_bos else ids[len(ids) - limit:]
            cut += 1
        out.append(ids)
    if cut:
        from ..console import warn

        warn(f"{cut} of {len(out)} prompts were longer than {limit} tokens and lost their beginning "
             f"(generation.max_prompt_tokens={max_tokens})")
    return out
