"""The interface the stages use to generate text and read next-token probabilities.

A backend takes already-rendered prompt strings (the caller applies the chat template) and
returns only the newly generated text, in input order. Backends hide behind :class:`Generator`;
the stages never know which one runs.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Optional, Protocol, Sequence, runtime_checkable


@dataclass(frozen=True)
class SamplingParams:
    temperature: float = 0.0  # 0 = greedy
    top_p: float = 1.0
    max_new_tokens: int = 128
    seed: int = 0
    # Subtracted from the logit of every token already generated in this answer (OpenAI's and vLLM's
    # presence penalty; Self-Instruct samples with 2.0 and 1.5).
    presence_penalty: float = 0.0
    # The answer ends right after the first of these strings (kept in the text); see cut_at_stop.
    stop: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.max_new_tokens <= 0:
            raise ValueError(f"max_new_tokens must be > 0, got {self.max_new_tokens}")
        if any(not s for s in self.stop):
            raise ValueError("stop strings must not be empty")


def cut_at_stop(text: str, stop: Sequence[str]) -> str:
    """``text`` up to and including the earliest of the ``stop`` strings (unchanged when none occurs).
    Every backend returns what this gives, whether or not its engine stops early on its own."""
    ends = [i + len(s) for s in stop if (i := text.find(s)) >= 0]
    return text[: min(ends)] if ends else text


@dataclass(frozen=True)
class ChoiceProbs:
    probs: tuple[float, ...]  # renormalised over the choices, sums to 1
    mass: float  # total probability the model put on the choices before renormalising


@dataclass(frozen=True)
class AnswerLogprobs:
    """The next token's log-probability of each answer (e.g. yes / no), summed over the answer's token
    variants. None: no variant was among the top tokens a server returned; ``floor`` then bounds it
    (the least log-probability returned, or what the returned tokens leave). Exact backends: no floor."""

    logprobs: tuple[Optional[float], ...]
    floor: Optional[float] = None


def answer_variants(words: Sequence[str]) -> list[str]:
    """Each word as it may come next: bare and after a space ("yes", " yes", "Yes", " Yes", ...)."""
    return [v for w in words for v in (w, " " + w)]


def answer_token_ids(tokenizer, words: Sequence[str]) -> list[int]:
    """The ids of the variants of ``words`` that are one token for ``tokenizer`` (a leading token that is
    only a space, as SentencePiece gives before a word, is not counted)."""
    ids = set()
    for v in answer_variants(words):
        toks = tokenizer(v, add_special_tokens=False)["input_ids"]
        while len(toks) > 1 and not tokenizer.decode(toks[:1]).strip():
            toks = toks[1:]
        if len(toks) == 1 and tokenizer.decode(toks).strip() == v.strip():
            ids.add(toks[0])
    return sorted(ids)


@runtime_checkable
class Generator(Protocol):
    name: str  # provenance: model id/path (+ "@revision") (+ "+adapter:<path>")

    def generate(self, prompts: Sequence[str], params: SamplingParams) -> list[str]:
        """The new text for each prompt (special tokens stripped), in input order."""
        ...

    def choice_probs(self, prompts: Sequence[str], choices: Sequence[str]) -> list[ChoiceProbs]:
        """P(choice | prompt + " ") over single-token choices (e.g. "1".."5" after "Score:")."""
        ...

    def answer_logprobs(self, prompts: Sequence[str], answers: Sequence[Sequence[str]]) -> list[AnswerLogprobs]:
        """log P(answer | prompt) for the next token, per answer summed over the one-token variants of its
        words (``answers`` such as (("yes", "Yes", "YES"), ("no", "No", "NO")))."""
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
    out = []
    for ids in tokenizer(list(prompts), add_special_tokens=True)["input_ids"]:
        if bos is not None and len(ids) >= 2 and ids[0] == bos and ids[1] == bos:
            ids = ids[1:]  # the rendered prompt already had a BOS: do not double it
        if len(ids) > limit:
            keep_bos = bos is not None and ids[0] == bos and limit > 1
            ids = ([bos] + ids[len(ids) - limit + 1:]) if keep_bos else ids[len(ids) - limit:]
        out.append(ids)
    return out
