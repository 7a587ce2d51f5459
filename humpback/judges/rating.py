"""The rating judge: the paper's 5-point self-curation prompt (Table 1), verbatim.

``generate`` decodes the judge's reasoning and parses the last ``Score: N``; ``logits`` ends the prompt
at "Score:" and reads P("1".."5") in one forward pass (argmax and expected score; it never fails to
parse); ``both`` records the two. ``value`` is the expected score where there is one, else the
generated score.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from ..chat import messages_for, render_prompt
from ..prompts import render_curation
from ..scoring import CHOICES, SCORES, parse_score, score_from_probs
from . import CurationJudge, score_row

if TYPE_CHECKING:
    from ..config import CurateConfig

SCORE_PREFILL = "Score:"


def judge_prompts(tokenizer, rows: list[dict], cfg: "CurateConfig", prefill: str = "",
                  max_tokens: int | None = None, cut: list | None = None) -> list[str]:
    """The rendered judge prompts; for logits scoring each ends at 'Score:' so the next token is the rating.
    With ``max_tokens``, a prompt that would be longer has its candidate output cut from the end instead
    (:func:`humpback.generation.budget.fit_pair`: the rubric stays); ``cut`` gets the tokens cut per prompt."""
    from ..generation.budget import fit_pair

    def render(instruction: str, output: str) -> str:
        return render_prompt(tokenizer, messages_for(render_curation(instruction, output), system=cfg.system_prompt),
                             prefill=prefill)

    if max_tokens is None:
        return [render(r["instruction"], r["output"]) for r in rows]
    # Logits scoring appends the choices' common prefix (at most one token) after "Score:".
    budget = max_tokens - (1 if prefill else 0)
    fitted = [fit_pair(tokenizer, render, r["instruction"], r["output"], budget) for r in rows]
    if cut is not None:
        cut.extend(f.cut_tokens for f in fitted)
    return [f.prompt for f in fitted]


def judge_sampling(cfg: "CurateConfig", seed: int):
    """The judge's decoding in generate mode (greedy by default), with the format ``curate.constraint``
    names, if any (sized for ``curate.max_new_tokens``)."""
    from ..generation.base import SamplingParams

    constraint = None
    if cfg.constraint is not None:
        from ..generation.constraints import parse_constraint

        constraint = parse_constraint(cfg.constraint, cfg.max_new_tokens)
    return SamplingParams(temperature=cfg.temperature, top_p=1.0, max_new_tokens=cfg.max_new_tokens, seed=seed,
                          constraint=constraint)


def rows_generate(rows: list[dict], outputs: list[str], judge: str, kind: str = "rating",
                  scores: tuple = SCORES) -> list[dict]:
    """Score rows from generated judgements: the last ``Score: N`` with N in ``scores`` (the additive
    judge's rows too, with its ``kind`` and 0..5)."""
    out = []
    for r, text in zip(rows, outputs, strict=True):
        parsed = parse_score(text, scores)
        out.append(score_row(r["candidate_id"], kind, "generate", judge, score=parsed.score,
                             value=float(parsed.score) if parsed.score is not None else None, raw=str(text),
                             parse_status=parsed.status))
    return out


NO_CHOICE = "no_choice_in_top_logprobs"  # a server's top logprobs held none of "1".."5"


def rows_logits(rows: list[dict], choice_probs: list, judge: str, kind: str = "rating",
                scores: tuple = SCORES) -> list[dict]:
    """Score rows from P(each of ``scores``) after "Score:": the argmax score and the expected score
    (``value``)."""
    choices = tuple(str(s) for s in scores)
    out = []
    for r, cp in zip(rows, choice_probs, strict=True):
        if cp.probs is None:
            out.append(score_row(r["candidate_id"], kind, "logits", judge, value=None, raw="{}",
                                 choice_mass=float(cp.mass), parse_status=NO_CHOICE))
            continue
        ps = score_from_probs(cp.probs, scores)
        probs = [float(p) for p in cp.probs]
        raw = json.dumps({k: round(p, 6) for k, p in zip(choices, probs)})
        out.append(score_row(r["candidate_id"], kind, "logits", judge, score=ps.score, logits_score=ps.score,
                             expected_score=ps.expected, probs=probs, choice_mass=float(cp.mass),
                             value=ps.expected, raw=raw))
    return out


def rows_both(rows: list[dict], outputs: list[str], choice_probs: list, judge: str, kind: str = "rating",
              scores: tuple = SCORES) -> list[dict]:
    """Both scores per pair: ``score`` and ``raw`` from the generated judgement, the rest from P('1'..'5')."""
    generated = rows_generate(rows, outputs, judge, kind, scores)
    logits = rows_logits(rows, choice_probs, judge, kind, scores)
    return [{**lg, "mode": "both", "score": g["score"], "raw": g["raw"], "parse_status": g["parse_status"]}
            for g, lg in zip(generated, logits, strict=True)]


def score(rows: list[dict], judge: CurationJudge) -> list[dict]:
    import contextlib

    from .. import progress

    cfg, model = judge.cfg, judge.model
    if not rows:
        return []
    budget, cut = judge.max_prompt_tokens, []
    if cfg.mode in ("logits", "both"):
        prompts = judge_prompts(model.tokenizer, rows, cfg, SCORE_PREFILL, budget, cut)
        # In "both" mode the bar counts a pair once, when its generated judgement is done.
        with progress.hold() if cfg.mode == "both" else contextlib.nullcontext():
            probs = model.generator.choice_probs(prompts, CHOICES)
    if cfg.mode in ("generate", "both"):
        # (in both mode the cuts recorded are the logits prompts', one token shorter for the choice prefix)
        prompts = judge_prompts(model.tokenizer, rows, cfg, max_tokens=budget,
                                cut=cut if cfg.mode == "generate" else None)
        from ..generation.rejection import generate_checked, load_validator

        validator = load_validator(cfg.validator, "curate.validator") if cfg.validator else None
        checked = generate_checked(model.generator.generate, prompts, judge_sampling(cfg, judge.seed), validator,
                                   cfg.max_tries)
        outputs = checked.texts
        judge.checks.append(checked.stats)
    if cfg.mode == "logits":
        out = rows_logits(rows, probs, judge.name)
    elif cfg.mode == "generate":
        out = rows_generate(rows, outputs, judge.name)
    else:
        out = rows_both(rows, outputs, probs, judge.name)
    for row, n in zip(out, cut or [None] * len(out), strict=True):
        row["judge_input_cut_tokens"] = n
    return out
