"""The interface the stages use to generate text and read next-token probabilities.

A backend takes already-rendered prompt strings (the caller applies the chat template) and
returns only the newly generated text, in input order. Backends hide behind :class:`Generator`;
the stages never know which one runs.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterable, Optional, Protocol, Sequence, runtime_checkable

if TYPE_CHECKING:
    from .constraints import Constraint

log = logging.getLogger(__name__)


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
    # A format the answer must obey (humpback.generation.constraints): hf enforces it while decoding,
    # vllm and openai servers through their structured-output fields; every answer is checked after.
    constraint: Optional["Constraint"] = None

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
    # Renormalised over the choices, sums to 1; None when the backend saw none of the choices (a server's
    # top logprobs without any of them): a failure to count, not a uniform guess.
    probs: tuple[float, ...] | None
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
class Completion(str):
    """Generated text that also says why it ended: ``finish_reason`` is ``"stop"`` (an end token, or a
    stop the server applied) or ``"length"`` (``max_new_tokens`` ran out: the text may be cut short)."""

    finish_reason: str

    def __new__(cls, text: str, finish_reason: str = "stop") -> "Completion":
        obj = super().__new__(cls, text)
        obj.finish_reason = finish_reason
        return obj

    def __reduce__(self):
        return (Completion, (str(self), self.finish_reason))


@dataclass(frozen=True)
class Usage:
    """What a generator has processed since it was made: a running total each backend keeps.

    ``generated_tokens`` are the tokens the model produced, a stop token included (a scoring pass
    that reads probabilities without sampling produces none). ``prompt_tokens`` count each prompt as
    the model saw it (after any cut from the left), a shared prefix once per prompt. A prompt whose
    counts the backend could not know (a server answer without ``usage``) adds to ``uncounted``
    and nothing to the token totals. Take a difference of two readings to count one stretch of work.
    """

    calls: int = 0  # generate / choice_probs calls
    prompts: int = 0  # prompts answered
    prompt_tokens: int = 0
    generated_tokens: int = 0
    uncounted: int = 0  # prompts among ``prompts`` whose tokens are not in the totals

    @property
    def exact(self) -> bool:
        """Every prompt's tokens are in the totals."""
        return self.uncounted == 0

    def __add__(self, other: "Usage") -> "Usage":
        return Usage(*(a + b for a, b in zip(self._values(), other._values())))

    def __sub__(self, other: "Usage") -> "Usage":
        return Usage(*(a - b for a, b in zip(self._values(), other._values())))

    def _values(self) -> tuple[int, ...]:
        return (self.calls, self.prompts, self.prompt_tokens, self.generated_tokens, self.uncounted)

    def to_dict(self) -> dict:
        """The counts by name, as a stage's statistics record them."""
        return dict(zip(USAGE_FIELDS, self._values()))

    @classmethod
    def total(cls, parts: "Iterable[Optional[dict]]") -> "Usage":
        """The sum of several :meth:`to_dict` records (a stage's shards); missing ones count nothing."""
        out = cls()
        for part in parts:
            if part:
                out += cls(*(part.get(k, 0) for k in USAGE_FIELDS))
        return out


USAGE_FIELDS = ("calls", "prompts", "prompt_tokens", "generated_tokens", "uncounted")


@dataclass(frozen=True)
class LogLik:
    logprob: float  # sum of log P(token) over the continuation's tokens
    tokens: int  # how many tokens the continuation is

    @property
    def mean(self) -> float:
        """The length-normalised log-likelihood: the mean log-probability per continuation token."""
        return self.logprob / self.tokens if self.tokens else 0.0


@runtime_checkable
class Generator(Protocol):
    name: str  # provenance: model id/path (+ "@revision") (+ "+adapter:<path>")
    usage: Usage  # running token counts (see Usage), kept up to date by every call

    def generate(self, prompts: Sequence[str], params: SamplingParams) -> list[str]:
        """The new text for each prompt (special tokens stripped), in input order, each a
        :class:`Completion` that says whether it stopped or ran out of ``max_new_tokens``."""
        ...

    def choice_probs(self, prompts: Sequence[str], choices: Sequence[str]) -> list[ChoiceProbs]:
        """P(choice | prompt + " ") over single-token choices (e.g. "1".."5" after "Score:")."""
        ...

    def loglik(self, prompts: Sequence[str], continuations: Sequence[str]) -> list[LogLik]:
        """log P(continuation | prompt) per pair, summed over the continuation's tokens: the tokens of
        ``prompt + continuation`` beyond those it shares with ``prompt`` alone, so a continuation is
        tokenised as it follows its prompt (as training tokenises a completion)."""
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


def split_continuation(prompt_ids: Sequence[int], full_ids: Sequence[int]) -> int:
    """Where the continuation starts in ``full_ids`` (the ids of prompt + continuation): after the
    tokens it shares with ``prompt_ids``, leaving the continuation at least one token."""
    n = 0
    limit = min(len(prompt_ids), len(full_ids) - 1)
    while n < limit and prompt_ids[n] == full_ids[n]:
        n += 1
    return n


def encode_pairs(tokenizer, prompts: Sequence[str], continuations: Sequence[str],
                 max_tokens: int) -> list[tuple[list[int], int]]:
    """(ids of prompt + continuation, index where the continuation starts) per pair, cut from the left
    to ``max_tokens`` (never into the continuation; a BOS is kept, never doubled)."""
    if len(prompts) != len(continuations):
        raise ValueError(f"{len(prompts)} prompts but {len(continuations)} continuations")
    full = encode_prompts(tokenizer, [p + c for p, c in zip(prompts, continuations)], 10**9)
    alone = encode_prompts(tokenizer, list(prompts), 10**9)
    bos = tokenizer.bos_token_id
    out = []
    for ids, p in zip(full, alone):
        start = split_continuation(p, ids)
        if len(ids) > max_tokens:
            keep_bos = bos is not None and ids[0] == bos
            cut = min(len(ids) - max_tokens, start - keep_bos)
            if cut > 0:
                ids = ids[:keep_bos] + ids[keep_bos + cut:]
                start -= cut
        out.append((ids, start))
    return out


def encode_prompts(tokenizer, prompts: Sequence[str], max_tokens: int, reserve: int = 0) -> list[list[int]]:
    """Token ids per prompt, cut from the left to ``max_tokens - reserve`` (a BOS is kept, never doubled).
    The stages fit their prompts first (:mod:`humpback.generation.budget`); a cut here is logged."""
    if not prompts:
        return []
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
