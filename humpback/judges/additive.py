"""The additive judge: the Self-Rewarding Language Models prompt (Yuan et al. 2024, Figure 2), verbatim.

The judge reads a user's question and one response and adds up to five points, one per criterion met
(relevant; addresses a substantial part; answers the basic elements usefully; written from an AI
Assistant's perspective, direct and comprehensive; impeccably tailored, expert, engaging), then ends with
``Score: <total points>``: an integer from 0 to 5. The prompt is ``humpback/prompts/additive.txt``.

Modes (the judge settings' ``mode``, as for the rating judge): ``generate`` decodes the justification and
parses the last ``Score: N`` (0..5; anything else is a parse failure with its status and raw text kept);
``logits`` ends the prompt at "Score:" and reads P("0".."5") in one forward pass (argmax and expected
points; it never fails to parse); ``both`` records the two. ``value`` is the expected points where there
are probabilities, else the generated points. The paper samples each judgement three times and averages;
here a judgement is greedy (``curate.temperature`` 0) or read from the probabilities, which average over
every judgement the model could write.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..chat import messages_for, render_prompt
from ..prompts import render_additive
from . import CurationJudge, rating

if TYPE_CHECKING:
    from ..config import CurateConfig

POINTS = (0, 1, 2, 3, 4, 5)
POINT_CHOICES = tuple(str(p) for p in POINTS)
SCORE_PREFILL = "Score:"


def additive_prompts(tokenizer, rows: list[dict], cfg: "CurateConfig", prefill: str = "",
                     max_tokens: int | None = None) -> list[str]:
    """The rendered judge prompts (the judge's system prompt, then the additive prompt as the user turn);
    for logits scoring each ends at 'Score:'. With ``max_tokens`` a prompt that would be longer has its
    response cut from the end (:func:`humpback.generation.budget.fit_pair`: the criteria stay)."""
    from ..generation.budget import fit_pair

    def render(instruction: str, output: str) -> str:
        return render_prompt(tokenizer, messages_for(render_additive(instruction, output), system=cfg.system_prompt),
                             prefill=prefill)

    if max_tokens is None:
        return [render(r["instruction"], r["output"]) for r in rows]
    budget = max_tokens - (1 if prefill else 0)  # logits scoring appends at most one token after "Score:"
    return [fit_pair(tokenizer, render, r["instruction"], r["output"], budget).prompt for r in rows]


def rows_generate(rows: list[dict], outputs: list[str], judge: str) -> list[dict]:
    """Score rows from generated judgements: the last ``Score: N`` with N in 0..5."""
    return rating.rows_generate(rows, outputs, judge, "additive", POINTS)


def rows_logits(rows: list[dict], choice_probs: list, judge: str) -> list[dict]:
    """Score rows from P("0".."5") after "Score:": the argmax points and the expected points (``value``)."""
    return rating.rows_logits(rows, choice_probs, judge, "additive", POINTS)


def rows_both(rows: list[dict], outputs: list[str], choice_probs: list, judge: str) -> list[dict]:
    """Both per response: ``score`` and ``raw`` from the generated judgement, the rest from P("0".."5")."""
    return rating.rows_both(rows, outputs, choice_probs, judge, "additive", POINTS)


def score(rows: list[dict], judge: CurationJudge) -> list[dict]:
    cfg, model = judge.cfg, judge.model
    if not rows:
        return []
    budget = judge.max_prompt_tokens
    if cfg.mode in ("logits", "both"):
        probs = model.generator.choice_probs(additive_prompts(model.tokenizer, rows, cfg, SCORE_PREFILL, budget),
                                             POINT_CHOICES)
    if cfg.mode in ("generate", "both"):
        outputs = model.generator.generate(additive_prompts(model.tokenizer, rows, cfg, max_tokens=budget),
                                           rating.judge_sampling(cfg, judge.seed))
    if cfg.mode == "logits":
        return rows_logits(rows, probs, judge.name)
    if cfg.mode == "generate":
        return rows_generate(rows, outputs, judge.name)
    return rows_both(rows, outputs, probs, judge.name)
