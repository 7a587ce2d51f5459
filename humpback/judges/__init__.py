"""Judges: rows in, score rows out. One module per judge, one function shape.

Each judge module has ``score(rows, judge) -> list[dict]``: ``rows`` carry ``candidate_id``,
``instruction`` and ``output``; ``judge`` is the :class:`CurationJudge` of this scoring (its name, the curate
settings, the model when it needs one). Every judge writes the same score row (:data:`SCORE_COLUMNS`),
so selection, replay re-scoring, agreement and judge health never ask which judge ran:

- ``rating``: the paper's 5-point prompt, in ``generate``, ``logits`` or ``both`` mode;
- ``rubric``: the weave rubric, one yes/no question per principle read from the judge's logits
  (its rows also carry ``principles``, each principle's signed log-odds, and ``principle_failures``);
- ``likelihood``: the model's own length-normalised log-likelihood of the output given the
  instruction, or the instruction-following difficulty (IFD) ratio;
- ``verifier``: a Python function the recipe names, run on each row;
- ``additive``: the Self-Rewarding paper's additive 0-5 points prompt (the preference stage's default
  judge, :mod:`humpback.stages.preferences`), in ``generate``, ``logits`` or ``both`` mode.

``curate.judge_kind`` picks one; :func:`score_rows` is the one place that does.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Optional

if TYPE_CHECKING:
    from ..config import CurateConfig

# The score row every judge writes (see docs/judges.md):
#   candidate_id, judge_kind, mode,
#   score (int 1..5 or null: the rating judge's generated score, or its argmax in logits mode),
#   logits_score, expected_score, probs, choice_mass (the rating judge's P("1".."5"), else null),
#   value (float: the judge's own number, higher is better: expected score / score, mean log-prob, -IFD,
#          the verifier's result; null when the row failed), raw (judge text, probabilities, the
#          likelihoods or the verifier's error as JSON/text), parse_status (ok, or why not), judge (provenance),
#   judge_input_cut_tokens (the rating judge: tokens of the candidate output cut to fit its prompt).
SCORE_COLUMNS = ("candidate_id", "judge_kind", "mode", "score", "logits_score", "expected_score", "probs",
                 "choice_mass", "value", "raw", "parse_status", "judge", "judge_input_cut_tokens")


@dataclass
class CurationJudge:
    """One scoring of rows, each on its own (curation's candidates, the preference stage's answers): who
    judges (``name``, for provenance), with which curate settings, on which model. Not the evaluation's
    judge, which compares two answers (:class:`humpback.evaluation.pairwise.PairwiseJudge`)."""

    name: str
    cfg: "CurateConfig"
    model: Any = None  # a lazy model with .tokenizer and .generator (run.LazyModel); None for a verifier
    seed: int = 0
    max_prompt_tokens: Optional[int] = None  # generation.max_prompt_tokens: prompts are fitted to it
    # What the rating judge's format checks counted per call (humpback.generation.rejection), until taken.
    checks: list = field(default_factory=list)

    def take_checks(self) -> list:
        """The checks' counts recorded since the last take."""
        taken, self.checks = self.checks, []
        return taken

    @property
    def served(self) -> Optional[str]:
        """The name an openai-backend server serves the judging model under (None elsewhere)."""
        return getattr(self.model, "served", None) if self.model is not None else None

    def usage(self):
        """What the judging model has processed so far (a verifier: nothing)."""
        from ..generation.base import Usage

        return self.model.usage() if self.model is not None else Usage()

    def close(self) -> None:
        if self.model is not None:
            self.model.close()


def score_row(candidate_id: str, judge_kind: str, mode: str, judge: str, *, value: Optional[float],
              raw: str, parse_status: str = "ok", score: Optional[int] = None, logits_score: Optional[int] = None,
              expected_score: Optional[float] = None, probs: Optional[list] = None,
              choice_mass: Optional[float] = None) -> dict:
    """A score row with every column of :data:`SCORE_COLUMNS`, in that order."""
    return {"candidate_id": candidate_id, "judge_kind": judge_kind, "mode": mode, "score": score,
            "logits_score": logits_score, "expected_score": expected_score, "probs": probs,
            "choice_mass": choice_mass, "value": value, "raw": raw, "parse_status": parse_status, "judge": judge,
            "judge_input_cut_tokens": None}


def score_rows(rows: list[dict], judge: CurationJudge) -> list[dict]:
    """Score ``rows`` with the judge ``judge.cfg.judge_kind`` names: one score row per row, in order."""
    kind = judge.cfg.judge_kind
    if kind == "rating":
        from .rating import score
    elif kind == "rubric":
        from .rubric import score
    elif kind == "likelihood":
        from .likelihood import score
    elif kind == "verifier":
        from .verifier import score
    elif kind == "additive":
        from .additive import score
    else:  # config validation prevents this
        raise ValueError(f"unknown judge kind {kind!r}")
    out = score(rows, judge)
    if len(out) != len(rows):
        raise RuntimeError(f"the {kind} judge returned {len(out)} rows for {len(rows)}")
    return out


def score_schema(judge_kind: str = "rating"):
    """The score rows' Arrow schema; the rubric judge's rows have its per-principle columns besides."""
    import pyarrow as pa

    extra = ([("principles", pa.list_(pa.float64())), ("principle_failures", pa.int64())]
             if judge_kind == "rubric" else [])
    return pa.schema([("candidate_id", pa.string()), ("judge_kind", pa.string()), ("mode", pa.string()),
                      ("score", pa.int64()), ("logits_score", pa.int64()), ("expected_score", pa.float64()),
                      ("probs", pa.list_(pa.float64())), ("choice_mass", pa.float64()), ("value", pa.float64()),
                      ("raw", pa.string()), ("parse_status", pa.string()), ("judge", pa.string()),
                      ("judge_input_cut_tokens", pa.int64()), *extra])
