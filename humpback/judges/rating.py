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
from ..scoring import CHOICES, parse_score, score_from_probs
from . import Judge, score_row

if TYPE_CHECKING:
    from ..config import CurateConfig

SCORE_PREFILL = "Score:"


def judge_prompts(tokenizer, rows: list[dict], cfg: "CurateConfig", prefill: str = "") -> list[str]:
    """The rendered judge prompts; for logits scoring each ends at 'Score:' so the next token is the rating."""
    return [
        render_prompt(tokenizer, messages_for(render_curation(r["instruction"], r["output"]), system=cfg.system_prompt),
                      prefill=prefill)
        for r in rows
    ]


def rows_generate(rows: list[dict], outputs: list[str], judge: str) -> list[dict]:
    out = []
    for r, text in zip(rows, outputs, strict=True):
        parsed = parse_score(text)
        out.append(score_row(r["candidate_id"], "rating", "generate", judge, score=parsed.score,
                             value=float(parsed.score) if parsed.score is not None else None, raw=text,
                             parse_status=parsed.status))
    return out


def rows_logits(rows: list[dict], choice_probs: list, judge: str) -> list[dict]:
    out = []
    for r, cp in zip(rows, choice_probs, strict=True):
        ps = score_from_probs(cp.probs)
        probs = [float(p) for p in cp.probs]
        raw = json.dumps({k: round(p, 6) for k, p in zip(CHOICES, probs)})
        out.append(score_row(r["candidate_id"], "rating", "logits", judge, score=ps.score, logits_score=ps.score,
                             expected_score=ps.expected, probs=probs, choice_mass=float(cp.mass),
                             value=ps.expected, raw=raw))
    return out


def rows_both(rows: list[dict], outputs: list[str], choice_probs: list, judge: str) -> list[dict]:
    """Both scores per pair: ``score`` and ``raw`` from the generated judgement, the rest from P('1'..'5')."""
    generated = rows_generate(rows, outputs, judge)
    logits = rows_logits(rows, choice_probs, judge)
    return [{**lg, "mode": "both", "score": g["score"], "raw": g["raw"], "parse_status": g["parse_status"]}
            for g, lg in zip(generated, logits, strict=True)]


def score(rows: list[dict], judge: Judge) -> list[dict]:
    from ..generation.base import SamplingParams

    cfg, model = judge.cfg, judge.model
    if not rows:
        return []
    if cfg.mode in ("logits", "both"):
        probs = model.generator.choice_probs(judge_prompts(model.tokenizer, rows, cfg, SCORE_PREFILL), CHOICES)
    if cfg.mode in ("generate", "both"):
        params = SamplingParams(temperature=cfg.temperature, top_p=1.0, max_new_tokens=cfg.max_new_tokens,
                                seed=judge.seed)
        outputs = model.generator.generate(judge_prompts(model.tokenizer, rows, cfg), params)
    if cfg.mode == "logits":
        return rows_logits(rows, probs, judge.name)
    if cfg.mode == "generate":
        return rows_generate(rows, outputs, judge.name)
    return rows_both(rows, outputs, probs, judge.name)
