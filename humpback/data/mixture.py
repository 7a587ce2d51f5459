"""The training mixtures, as pure functions of rows: the flipped seed pairs the backward model learns
from, and the tagged mixture of seed and curated pairs M0 and each M_K learn from (the finetune stages,
:mod:`humpback.stages.finetune`, save and train on them).
"""

from __future__ import annotations

from ..chat import messages_for
from ..prompts import SEED_SYSTEM_PROMPT, WEB_SYSTEM_PROMPT, render_backward


def backward_rows(seed: list[dict]) -> list[dict]:
    """Flipped seed pairs: the output is the prompt, the instruction the target (M_yx = p(x|y))."""
    return [{"id": r["id"], "source": "seed", "messages": messages_for(render_backward(r["output"]), r["instruction"])}
            for r in seed]


def mixture_rows(seed: list[dict], curated: list[dict]) -> list[dict]:
    """Seed pairs tagged as AI-assistant answers, curated pairs tagged as web-search knowledge."""
    rows = [{"id": r["id"], "source": "seed",
             "messages": messages_for(r["instruction"], r["output"], system=SEED_SYSTEM_PROMPT)} for r in seed]
    rows += [{"id": r["candidate_id"], "source": "augmented",
              "messages": messages_for(r["instruction"], r["output"], system=WEB_SYSTEM_PROMPT)} for r in curated]
    return rows
