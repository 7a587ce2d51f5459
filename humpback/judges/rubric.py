"""The weave rubric judge (``curate.judge_kind: rubric``): a rubric of yes/no principles, each read from
the judge's next-token probabilities in one forward pass, combined into the pair's score.

The rubric layout is the one RetroInstruct / weave-agent (JD-P's minihf) publish, so their rubrics
load unchanged::

    ==[PREAMBLE]==
    Answer yes or no and only yes or no. ...
    ==[Principle: Not another person's perspective; Weight: 1.0; Answer: No]==
    {preamble}
    ... {prompt} ... {response} ...
    Is the answer written from another person's perspective ...?

Each principle's body is the user turn (``{preamble}``, ``{prompt}`` and ``{response}`` filled in;
``{parent_q}``, which weave uses for nested questions, becomes empty). At the answer position the
judge's probability of "yes" is the sum over the tokens yes/Yes/YES with and without a leading space
(those that are one token for its tokenizer), likewise "no"; the principle's score is
``log P(yes) - log P(no)``, negated when the desired answer is No, so a positive score always means
the pair has the quality. The pair's score is the weighted mean of its principles' scores, or a
weighted soft minimum (``-t * log sum_i w_i exp(-s_i / t)`` with weights summing to 1: near the worst
principle for small ``t``, the mean for large ``t``).

``humpback/prompts/rubric_paper.txt`` ships the paper's 5-point criteria (its Table 1) as nine
yes/no principles.
"""

from __future__ import annotations

import functools
import hashlib
import math
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Optional, Sequence

from ..errors import ConfigError, DataError

YES = ("yes", "Yes", "YES")
NO = ("no", "No", "NO")
ANSWERS = (YES, NO)
PAPER_RUBRIC = "builtin:rubric-paper"

_HEADER = re.compile(r"^==\[(.+?)\]==[ \t]*$", re.MULTILINE)


@dataclass(frozen=True)
class Principle:
    name: str
    weight: float
    answer: str  # "yes" or "no": the answer a good pair gets
    body: str

    @property
    def sign(self) -> int:
        return 1 if self.answer == "yes" else -1


@dataclass(frozen=True)
class Rubric:
    preamble: str
    principles: tuple[Principle, ...]
    source: str

    @property
    def text_hash(self) -> str:
        h = hashlib.sha256(self.preamble.encode())
        for p in self.principles:
            h.update(f"\0{p.name}\0{p.weight!r}\0{p.answer}\0{p.body}".encode())
        return h.hexdigest()[:16]

    def question(self, principle: Principle, prompt: str, response: str) -> str:
        """The user turn that asks ``principle`` of one (instruction, output) pair."""
        text = principle.body
        for key, value in (("{preamble}", self.preamble), ("{parent_q}", "")):
            text = text.replace(key, value)
        # The pair's own text last, so braces in it are never read as placeholders.
        return text.replace("{prompt}", "\0prompt\0").replace("{response}", "\0response\0") \
            .replace("\0prompt\0", prompt).replace("\0response\0", response)


def parse_rubric(text: str, source: str = "rubric") -> Rubric:
    """A rubric in the published layout. Text before the first header, or a ``==[PREAMBLE]==`` section,
    is the preamble; every other header is ``Principle: <name>; Weight: <number>; Answer: Yes|No``."""
    parts = _HEADER.split(text)
    preamble = parts[0].strip()
    principles = []
    for header, body in zip(parts[1::2], parts[2::2]):
        if header.strip().upper() == "PREAMBLE":
            preamble = body.strip()
            continue
        fields = {}
        for item in header.split(";"):
            name, sep, value = item.partition(":")
            if not sep:
                raise DataError(f"{source}: header '==[{header}]==' has '{item.strip()}' without a ':' "
                                f"(expected 'Principle: ...; Weight: ...; Answer: Yes')")
            fields[name.strip().lower()] = value.strip()
        missing = [k for k in ("principle", "weight", "answer") if k not in fields]
        if missing:
            raise DataError(f"{source}: header '==[{header}]==' has no {', '.join(missing)}")
        try:
            weight = float(fields["weight"])
        except ValueError:
            raise DataError(f"{source}: principle {fields['principle']!r} has weight {fields['weight']!r}, "
                            f"not a number") from None
        answer = fields["answer"].lower()
        if answer not in ("yes", "no") or weight < 0:
            raise DataError(f"{source}: principle {fields['principle']!r}: the answer must be Yes or No and the "
                            f"weight >= 0 (got {fields['answer']!r}, {weight})")
        principles.append(Principle(fields["principle"], weight, answer, body.strip()))
    if not principles:
        raise DataError(f"{source}: no '==[Principle: ...; Weight: ...; Answer: ...]==' section found")
    if not sum(p.weight for p in principles) > 0:
        raise DataError(f"{source}: the principles' weights sum to 0")
    return Rubric(preamble, tuple(principles), source)


@functools.lru_cache(maxsize=8)
def load_rubric(ref: Optional[str], field: str = "text", split: str = "train") -> Rubric:
    """The rubric ``curate.rubric`` names: ``builtin:rubric-paper`` (the default), a file, or a ``datasets``
    id (or local dataset folder) whose rows' ``field`` holds the rubric's text, joined in row order."""
    ref = ref or PAPER_RUBRIC
    if ref == PAPER_RUBRIC:
        text = resources.files("humpback.prompts").joinpath("rubric_paper.txt").read_text(encoding="utf-8")
        return parse_rubric(text, ref)
    path = Path(ref).expanduser()
    if path.is_file():
        return parse_rubric(path.read_text(encoding="utf-8"), str(path))
    if ref.startswith("builtin:"):
        raise ConfigError(f"curate.rubric: unknown builtin {ref!r}; known: {PAPER_RUBRIC}")
    from ..data.records import iter_hub_records

    texts = []
    for location, record in iter_hub_records(ref, None, split, streaming=False):
        if not isinstance(record.get(field), str):
            raise DataError(f"{location}: no text field {field!r} (set curate.rubric_field)")
        texts.append(record[field])
    return parse_rubric("\n".join(texts), ref)


# --------------------------------------------------------------------------- the arithmetic


def logsumexp(values: Sequence[float]) -> float:
    top = max(values)
    if top == -math.inf:
        return -math.inf
    return top + math.log(sum(math.exp(v - top) for v in values))


def answer_log_odds(yes: Optional[float], no: Optional[float], floor: Optional[float] = None) -> Optional[float]:
    """``log P(yes) - log P(no)`` from the two answers' log-probabilities (each already summed over its
    token variants). From top logprobs an answer may be missing (None): its probability is then at most
    ``floor`` (the least probability returned, or what the returned tokens leave), which stands in for
    it; with both missing, or no floor, there is no score (None)."""
    if yes is None and no is None:
        return None
    if yes is None or no is None:
        if floor is None:
            return None
        yes, no = (floor if yes is None else yes), (floor if no is None else no)
    return yes - no


def combine(scores: Sequence[Optional[float]], weights: Sequence[float], how: str = "mean",
            temperature: float = 1.0) -> Optional[float]:
    """The pair's score from its principles' signed log-odds: the weighted mean, or the weighted soft
    minimum ``-t log sum_i (w_i / W) exp(-s_i / t)``. Principles without a score are left out (their
    weight too); None when none has one."""
    pairs = [(s, w) for s, w in zip(scores, weights, strict=True) if s is not None and w > 0]
    total = sum(w for _, w in pairs)
    if not pairs or not total > 0:
        return None
    if how == "mean":
        return sum(s * w for s, w in pairs) / total
    if how == "softmin":
        return -temperature * logsumexp([math.log(w / total) - s / temperature for s, w in pairs])
    raise ValueError(f"unknown combination {how!r}")


def histogram_bin(score: float) -> int:
    """1..5: the score's probability ``sigmoid(score)`` in five equal bins, for the score histograms
    (selection reads the score itself)."""
    p = 1.0 / (1.0 + math.exp(-max(min(score, 50.0), -50.0)))
    return 1 + min(4, int(p * 5))


def rows_from_answers(candidates: list[dict], rubric: Rubric, answers: list, judge: str, how: str,
               temperature: float) -> list[dict]:
    """One score row per pair from ``answers[i][j]``, the :class:`~humpback.generation.base.AnswerLogprobs`
    of pair i's principle j: ``value`` is the pair's score (what selection reads), ``principles`` each
    principle's signed log-odds, ``score`` the value's histogram bin, ``choice_mass`` the mean
    probability the judge put on yes or no at all. A pair whose principles all failed (neither answer
    among the returned tokens) has no value and the parse status ``no_answer_token``."""
    weights = [p.weight for p in rubric.principles]
    rows = []
    for c, per_pair in zip(candidates, answers, strict=True):
        signed, mass = [], []
        for p, a in zip(rubric.principles, per_pair, strict=True):
            odds = answer_log_odds(a.logprobs[0], a.logprobs[1], a.floor)
            signed.append(None if odds is None else p.sign * odds)
            mass.append(sum(math.exp(x) for x in a.logprobs if x is not None))
        score = combine(signed, weights, how, temperature)
        failed = sum(s is None for s in signed)
        rows.append({"candidate_id": c["candidate_id"], "judge_kind": "rubric", "mode": how,
                     "score": None if score is None else histogram_bin(score), "logits_score": None,
                     "expected_score": None, "probs": None, "choice_mass": sum(mass) / len(mass), "value": score,
                     "raw": "; ".join(f"{p.name}: {'-' if s is None else f'{s:+.3f}'}"
                                      for p, s in zip(rubric.principles, signed)),
                     "parse_status": "ok" if score is not None else "no_answer_token", "judge": judge,
                     "judge_input_cut_tokens": None, "principles": signed, "principle_failures": failed})
    return rows


def questions(tokenizer, rows: list[dict], rubric: Rubric, system: Optional[str]) -> list[str]:
    """The rendered judge prompts, pair by pair and principle by principle: each principle's question as
    the user turn, the answer position right after the assistant header."""
    from ..chat import messages_for, render_prompt

    return [render_prompt(tokenizer, messages_for(rubric.question(p, r["instruction"], r["output"]), system=system))
            for r in rows for p in rubric.principles]


def judge_rows(model, rows: list[dict], rubric: Rubric, cfg, judge: str) -> list[dict]:
    """The rubric judge on ``rows`` with ``model`` (a lazy model: ``.tokenizer``, ``.generator``): one
    forward pass per (pair, principle), read as yes/no log-probabilities, then :func:`rows_from_answers`."""
    prompts = questions(model.tokenizer, rows, rubric, cfg.system_prompt)
    answers = model.generator.answer_logprobs(prompts, ANSWERS) if prompts else []
    n = len(rubric.principles)
    return rows_from_answers(rows, rubric, [answers[i * n:(i + 1) * n] for i in range(len(rows))], judge,
                      cfg.rubric_combine, cfg.rubric_temperature)


def score(rows: list[dict], judge) -> list[dict]:
    """The judges' function shape, ``score(rows, judge)``: ``judge.cfg`` (the curate settings),
    ``judge.model`` and ``judge.name``."""
    rubric = load_rubric(judge.cfg.rubric, judge.cfg.rubric_field)
    return judge_rows(judge.model, rows, rubric, judge.cfg, judge.name)


def principle_stats(principles: Sequence[dict], rows: list[dict], kept: Optional[set] = None) -> list[dict]:
    """Per principle (``principles``: dicts with ``principle``, ``weight``, ``answer``, in rubric order):
    mean signed log-odds, how many pairs it says lack the quality (score < 0), its failures, and, given
    the ids ``kept`` by selection, how many rejected pairs fail it and how many it was the worst
    principle of: which principles reject the most pairs."""
    out = []
    rejected = [r for r in rows if kept is not None and r["candidate_id"] not in kept]
    for j, p in enumerate(Principle(d["principle"], d["weight"], d["answer"], "") for d in principles):
        values = [r["principles"][j] for r in rows if r["principles"] and r["principles"][j] is not None]
        entry = {"principle": p.name, "weight": p.weight, "answer": p.answer, "pairs": len(values),
                 "mean_log_odds": sum(values) / len(values) if values else None,
                 "fails": sum(v < 0 for v in values), "failures": len(rows) - len(values)}
        if kept is not None:
            entry["rejected_failing"] = sum(1 for r in rejected if r["principles"] and r["principles"][j] is not None
                                            and r["principles"][j] < 0)
            entry["worst_of_rejected"] = sum(1 for r in rejected if _worst(r["principles"]) == j)
        out.append(entry)
    return out


def _worst(signed: Optional[Sequence[Optional[float]]]) -> Optional[int]:
    values = [(s, j) for j, s in enumerate(signed or ()) if s is not None]
    return min(values)[1] if values else None
