"""Choice probabilities from a server's top logprobs: the pure part shared by the ``vllm`` and ``openai``
backends.

A backend asks for one new token after a prompt ending at "Score:" with the top-k logprobs of that
token (vLLM: ``SamplingParams(max_tokens=1, logprobs=20)``; OpenAI-compatible servers: ``logprobs=20``
on ``/v1/completions``). The choices ("1".."5") are read from those k tokens, with or without a
leading space; a choice outside the top k gets probability 0, and when none is there the result has no
probabilities at all (a counted failure downstream).
"""

from __future__ import annotations

import math
from typing import Any, Iterable, Mapping, Sequence

from .base import AnswerLogprobs, ChoiceProbs, LogLik

# Markers some servers leave in token strings for a leading space (byte-level BPE, SentencePiece).
_SPACE_MARKERS = ("Ġ", "▁")
TOP_LOGPROBS = 20  # vLLM's default max_logprobs; OpenAI's own API allows at most 5


def token_text(token: str) -> str:
    """A token's text without its leading space or space marker (``" 5"``, ``"Ġ5"``, ``"▁5"`` -> ``"5"``)."""
    text = token.strip()
    while text and text[0] in _SPACE_MARKERS:
        text = text[1:].strip()
    return text


def choice_probs_from_top(top: Mapping[str, float] | Iterable[tuple[str, float]],
                          choices: Sequence[str]) -> ChoiceProbs:
    """ChoiceProbs from the top logprobs of the next token, given as ``token -> logprob``.

    Tokens that read as the same choice ("5" and " 5") add up. ``mass`` is the probability on the
    choices before renormalising; when no choice is among the top tokens it is 0 and ``probs`` is None:
    nothing is known about the choices, and the scoring stage records the row as a failure.
    """
    items = top.items() if isinstance(top, Mapping) else top
    index = {c: i for i, c in enumerate(choices)}
    probs = [0.0] * len(choices)
    for token, logprob in items:
        i = index.get(token_text(token))
        if i is not None and logprob is not None and logprob > -math.inf:
            probs[i] += math.exp(logprob)
    mass = sum(probs)
    if not mass > 0:
        return ChoiceProbs(probs=None, mass=0.0)
    return ChoiceProbs(probs=tuple(p / mass for p in probs), mass=min(mass, 1.0))


def top_logprobs_from_completion(choice: Mapping[str, Any]) -> list[tuple[str, float]] | None:
    """The first generated token's top logprobs from one ``choices[i]`` of a /v1/completions answer.

    Reads the legacy completions shape (``logprobs.top_logprobs[0]`` a ``{token: logprob}`` mapping,
    as vLLM, TGI and OpenAI send it) and the chat shape some servers use for completions too
    (``logprobs.content[0].top_logprobs`` a list of ``{"token", "logprob"}``). None when there are none.
    """
    lp = choice.get("logprobs") if isinstance(choice, Mapping) else None
    if not isinstance(lp, Mapping):
        return None
    top = lp.get("top_logprobs")
    if isinstance(top, list) and top and isinstance(top[0], Mapping) and top[0]:
        return [(str(t), float(v)) for t, v in top[0].items() if v is not None]
    content = lp.get("content")
    if isinstance(content, list) and content and isinstance(content[0], Mapping):
        entries = content[0].get("top_logprobs")
        if isinstance(entries, list) and entries:
            return [(str(e["token"]), float(e["logprob"])) for e in entries
                    if isinstance(e, Mapping) and "token" in e and e.get("logprob") is not None]
    return None


def loglik_from_echo(choice: Mapping[str, Any], start: int, end: int) -> LogLik | None:
    """The log-likelihood of the text between characters ``start`` and ``end`` of an echoed prompt, from
    one ``choices[i]`` of a /v1/completions answer asked with ``echo=true`` and ``logprobs``: the sum of
    ``token_logprobs`` over the tokens whose ``text_offset`` lies in ``[start, end)`` (the tokens the
    server generated after the prompt start at ``end`` or later and are left out). None when the answer
    has no such per-token logprobs, or a token in the range has none."""
    lp = choice.get("logprobs") if isinstance(choice, Mapping) else None
    if not isinstance(lp, Mapping):
        return None
    offsets, values = lp.get("text_offset"), lp.get("token_logprobs")
    if not isinstance(offsets, list) or not isinstance(values, list) or len(offsets) != len(values):
        return None
    picked = [v for o, v in zip(offsets, values) if isinstance(o, int) and start <= o < end]
    if not picked or any(v is None for v in picked):
        return None
    return LogLik(logprob=float(sum(picked)), tokens=len(picked))
def answer_logprobs_from_top(top: Iterable[tuple[str, float]], answers: Sequence[Sequence[str]]) -> AnswerLogprobs:
    """AnswerLogprobs from the next token's top logprobs: per answer, the log-sum-exp over the returned
    tokens that read as one of its words (``" Yes"``, ``"Ġyes"`` and ``"YES"`` are all yes); None for an
    answer none of whose words was returned. ``floor`` bounds such an answer: no token outside the top k
    is likelier than the least likely one returned, nor than what the returned tokens leave."""
    top = [(t, lp) for t, lp in top if lp is not None and lp > -math.inf]
    out = []
    for words in answers:
        found = [lp for t, lp in top if token_text(t) in words]
        out.append(_logsumexp(found) if found else None)
    if not top:
        return AnswerLogprobs(tuple(out), None)
    rest = 1.0 - sum(math.exp(lp) for _, lp in top)
    least = min(lp for _, lp in top)
    return AnswerLogprobs(tuple(out), min(least, math.log(rest)) if rest > 0 else least)


def _logsumexp(values: list[float]) -> float:
    top = max(values)
    return top + math.log(sum(math.exp(v - top) for v in values))
