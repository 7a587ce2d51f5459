"""Fitting an (instruction, output) pair into a prompt of at most N tokens by cutting the pair's own
text, never the template around it.

A backend cuts an over-long prompt from the left (:func:`humpback.generation.base.encode_prompts`),
which for a judge prompt removes the rubric, the only part that says what to do. :func:`fit_pair`
instead shortens the output (the candidate answer, the last thing in the judge prompt) from its end,
and the instruction only if the output alone cannot make room, so the rubric, the closing
instruction and the chat template's assistant header all stay. The caller counts what was cut.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from .base import encode_prompts

NO_LIMIT = 1 << 30


@dataclass(frozen=True)
class Fitted:
    prompt: str
    instruction: str
    output: str
    cut_tokens: int  # tokens removed from the instruction and the output together (0: nothing cut)


def prompt_tokens(tokenizer: Any, prompt: str) -> int:
    """Tokens the backends give ``prompt`` (with a BOS, never doubled)."""
    return len(encode_prompts(tokenizer, [prompt], NO_LIMIT)[0])


def fit_pair(tokenizer: Any, render: Callable[[str, str], str], instruction: str, output: str,
             max_tokens: int) -> Fitted:
    """``render(instruction, output)`` in at most ``max_tokens`` tokens: as it is when it fits, else with
    the output cut at a token boundary (then the instruction, if the output is gone and it still does
    not fit). When even the empty pair does not fit, that is returned and the backend's own left cut
    applies."""
    prompt = render(instruction, output)
    excess = prompt_tokens(tokenizer, prompt) - max_tokens
    if excess <= 0:
        return Fitted(prompt, instruction, output, 0)
    output, cut_out, excess = _shorten(tokenizer, lambda o: render(instruction, o), output, excess, max_tokens)
    cut_in = 0
    if excess > 0:
        instruction, cut_in, excess = _shorten(tokenizer, lambda i: render(i, output), instruction, excess, max_tokens)
    return Fitted(render(instruction, output), instruction, output, cut_out + cut_in)


def _shorten(tokenizer: Any, render: Callable[[str], str], text: str, excess: int,
             max_tokens: int) -> tuple[str, int, int]:
    """(a prefix of ``text`` ending at a token boundary, tokens removed, the prompt's remaining excess).

    Tokens do not add up exactly across the cut (a merge can change at the boundary), so the first
    guess drops ``excess`` tokens and the loop drops more until the prompt fits or ``text`` is empty."""
    ends = _token_ends(tokenizer, text)
    keep = max(0, len(ends) - excess)
    while True:
        short = text[: ends[keep - 1]] if keep else ""
        excess = prompt_tokens(tokenizer, render(short)) - max_tokens
        if excess <= 0 or keep == 0:
            return short, len(ends) - keep, excess
        keep = max(0, keep - excess)


def _token_ends(tokenizer: Any, text: str) -> list[int]:
    """The character offset at which each token of ``text`` ends (fast tokenizers' offsets; for the
    others, the lengths of the decoded prefixes)."""
    try:
        enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        offsets = enc["offset_mapping"]
    except (NotImplementedError, ValueError, TypeError, KeyError):
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        return [len(tokenizer.decode(ids[: i + 1])) for i in range(len(ids))]
    ends, last = [], 0
    for _, end in offsets:
        last = max(last, end)
        ends.append(last)
    return ends
