"""The paper's prompts, as text files beside this module, and the pure functions that render them.

``backward.txt`` is the backward model's prompt (the one the authors reused in a later paper);
``curate.txt`` is the self-curation prompt of the paper's Table 1, verbatim; ``pairwise.txt`` is the
evaluation judge's prompt (ours: the paper judged with AlpacaEval's GPT-4 prompt), which compares two
answers to one instruction. ``self_instruct_*.txt`` are
Self-Instruct's published prompts (Wang et al. 2022; rendered by :mod:`humpback.data.self_instruct_text`), and
``rubric_paper.txt`` the paper's 5-point criteria as a weave rubric (:mod:`humpback.judges.rubric`).
``additive.txt`` is the additive 5-point LLM-as-a-judge prompt of Self-Rewarding Language Models (Yuan et al.
2024, arXiv:2401.10020, Figure 2), verbatim: the model judges its own answers with it
(:mod:`humpback.judges.additive`).
"""

from __future__ import annotations

import hashlib
from functools import cache
from importlib import resources

# The paper's system tags: seed examples are tagged as AI-assistant answers, curated ones as web
# knowledge; at inference both together scored best.
SEED_SYSTEM_PROMPT = "Answer in the style of an AI Assistant."
WEB_SYSTEM_PROMPT = "Answer with knowledge from web search."

__all__ = [
    "SEED_SYSTEM_PROMPT",
    "WEB_SYSTEM_PROMPT",
    "template",
    "template_hash",
    "render_backward",
    "render_curation",
    "render_pairwise",
    "render_additive",
    "EVAL_SYSTEM_PROMPT",
]

# At inference the paper gave both tags together, which scored best.
EVAL_SYSTEM_PROMPT = f"{SEED_SYSTEM_PROMPT} {WEB_SYSTEM_PROMPT}"


@cache
def template(name: str) -> str:
    """The template text, without the file's final newline."""
    text = resources.files(__package__).joinpath(f"{name}.txt").read_text(encoding="utf-8")
    return text[:-1] if text.endswith("\n") else text


def template_hash(name: str) -> str:
    return hashlib.sha256(template(name).encode()).hexdigest()[:16]


def render_backward(output: str) -> str:
    """The user turn that asks the backward model for the instruction behind ``output``."""
    return template("backward").format(output=output)


def render_curation(instruction: str, output: str) -> str:
    """The user turn that asks the judge to rate the pair on the paper's 5-point scale."""
    return template("curate").format(instruction=instruction, output=output)


def render_pairwise(instruction: str, answer_a: str, answer_b: str) -> str:
    """The user turn that asks the evaluation judge which of two answers to ``instruction`` is better."""
    return template("pairwise").format(instruction=instruction, answer_a=answer_a, answer_b=answer_b)


def render_additive(instruction: str, output: str) -> str:
    """The user turn that asks a judge for the additive 0-5 points of ``output`` as an answer to ``instruction``
    (Self-Rewarding Language Models, Figure 2)."""
    return template("additive").format(instruction=instruction, output=output)
