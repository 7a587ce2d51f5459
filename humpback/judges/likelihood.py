"""The likelihood judge: how well the current model itself explains the output given the instruction.

``curate.likelihood: mean_logprob`` (default) scores a pair by the model's mean log-probability per
token of the output (the assistant turn exactly as training formats it, end of turn included) after
the instruction: one forward pass per pair, batched. Pairs the model finds likely answers to their
instruction rank first.

``curate.likelihood: ifd`` scores by the instruction-following difficulty of Li et al. (Cherry LLM,
"From Quantity to Quality", 2023): IFD = loss(output | instruction) / loss(output alone), each loss the
mean negative log-probability per token; "alone" is the same assistant turn after an empty user turn.
That costs a second forward pass per pair. An IFD near or above 1 means the instruction does not help
predict the output (the pair does not belong together); ``value`` is ``-IFD``, so pairs whose
instruction explains their output best rank first. (Cherry LLM itself keeps the *highest* IFD below 1,
to find hard examples among clean ones; on a pool with wrong answers the low end is the clean end.)
"""

from __future__ import annotations

import json
import math
from typing import Optional

from ..chat import messages_for, render_prompt
from . import CurationJudge, score_row


def pair_texts(tokenizer, rows: list[dict], system: Optional[str],
               with_instruction: bool = True) -> tuple[list[str], list[str]]:
    """(prompts, continuations): the chat up to the assistant header, and the assistant turn as
    training renders it (content + end of turn). ``with_instruction=False``: an empty user turn."""
    prompts, continuations = [], []
    for r in rows:
        instruction = r["instruction"] if with_instruction else ""
        sys = system if with_instruction else None
        prompt = render_prompt(tokenizer, messages_for(instruction, system=sys))
        full = tokenizer.apply_chat_template(messages_for(instruction, r["output"], system=sys), tokenize=False)
        if not full.startswith(prompt):
            raise ValueError("the chat template renders the prompt differently with and without the answer; "
                             "the likelihood judge needs the prompt to be a prefix of the full chat")
        prompts.append(prompt)
        continuations.append(full[len(prompt):])
    return prompts, continuations


def ifd(mean_logprob: float, mean_logprob_alone: float) -> Optional[float]:
    """loss(output | instruction) / loss(output alone); None when the output alone costs nothing."""
    loss, alone = -mean_logprob, -mean_logprob_alone
    return loss / alone if alone > 0 else None


def likelihood_rows(rows: list[dict], given: list, alone: Optional[list], judge: str) -> list[dict]:
    """Score rows from the log-likelihoods (:class:`~humpback.generation.base.LogLik`) of each output
    with its instruction (``given``) and, for IFD, without (``alone``)."""
    out = []
    for i, r in enumerate(rows):
        g = given[i]
        detail = {"logprob": round(g.logprob, 6), "tokens": g.tokens, "mean_logprob": round(g.mean, 6)}
        if alone is None:
            value, status, mode = g.mean, "ok", "mean_logprob"
        else:
            a = alone[i]
            ratio = ifd(g.mean, a.mean)
            detail.update(mean_logprob_alone=round(a.mean, 6), ifd=None if ratio is None else round(ratio, 6))
            value, status, mode = (None, "undefined", "ifd") if ratio is None else (-ratio, "ok", "ifd")
        if value is not None and not math.isfinite(value):
            value, status = None, "not_finite"
        out.append(score_row(r["candidate_id"], "likelihood", mode, judge, value=value,
                             raw=json.dumps(detail), parse_status=status))
    return out


def score(rows: list[dict], judge: CurationJudge) -> list[dict]:
    if not rows:
        return []
    tok, gen = judge.model.tokenizer, judge.model.generator
    given = gen.loglik(*pair_texts(tok, rows, judge.cfg.system_prompt))
    alone = gen.loglik(*pair_texts(tok, rows, None, with_instruction=False)) \
        if judge.cfg.likelihood == "ifd" else None
    return likelihood_rows(rows, given, alone, judge.name)
