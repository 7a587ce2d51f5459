"""Self-Instruct (Wang et al. 2022) as pure functions of text: the prompts, the parsers, the filters.

The four prompts are the published ones, as text files in ``humpback/prompts/`` (``self_instruct_*.txt``):

- task generation: "Come up with a series of tasks:" and 8 numbered in-context instructions (6 from the
  human seed, 2 machine-written once the pool has them), ending at "9." for the model to go on;
- "is it classification?": a few-shot list of tasks marked Yes/No, then the new task;
- instance generation, input-first (an input, then its output) for other tasks and output-first (a
  class label, then an input for it) for classification tasks.

The stage (:mod:`humpback.stages.self_instruct`) renders, generates and parses with these; the
filters return a status per task or instance, so every drop is counted, never silent.
"""

from __future__ import annotations

import random
import re
import string
from typing import Sequence

from ..prompts import template

# Where a continuation ends (the published stop sequences): a blank line, or the 16th list item.
TASK_STOP = ("\n\n", "\n16", "16.", "16 .")
CLASSIFY_STOP = ("\n", "Task")
CLASSIFY_QUESTION = "Is it classification?"
TASK_REJECT_REASONS = ("unfinished", "too_short", "too_long", "keyword", "punctuation", "non_english", "similar",
                       "over_target", "failed_check")  # failed_check: augment.task_constraint/task_validator
INSTANCE_REJECT_REASONS = ("unfinished", "invalid", "conflicting", "duplicate", "too_long", "over_limit",
                           "failed_check")  # failed_check: the generation broke augment.instance_constraint/validator

_LIST_ITEM = re.compile(r"\n\d+\s?\. ")
_SPACES = re.compile(r"\s+")


def listed_instruction(instruction: str) -> str:
    """An instruction as it is listed in a prompt: whitespace runs as one space, no trailing colon."""
    return _SPACES.sub(" ", instruction).strip().rstrip(":")


def render_task_prompt(instructions: Sequence[str]) -> str:
    """"Come up with a series of tasks:", the numbered instructions, and the next number for the model."""
    lines = [template("self_instruct_tasks")]
    lines += [f"{i}. {listed_instruction(x)}" for i, x in enumerate(instructions, 1)]
    return "\n".join(lines) + f"\n{len(instructions) + 1}."


def sample_prompt_instructions(rng: random.Random, seed: Sequence[str], machine: Sequence[str], total: int = 8,
                               from_machine: int = 2) -> list[str]:
    """``from_machine`` machine-written instructions (fewer while the pool has fewer), the rest from the
    human seed, shuffled."""
    chosen = rng.sample(list(machine), min(from_machine, len(machine)))
    chosen += rng.sample(list(seed), total - len(chosen))
    rng.shuffle(chosen)
    return chosen


def ends_at_stop(text: str, stop: Sequence[str]) -> bool:
    """Whether a generation ended before its token limit: at one of its stop strings (the backends keep
    the stop in the text), or, for a backend's Completion, at an end token (``finish_reason`` "stop")."""
    return any(text.endswith(s) for s in stop) or getattr(text, "finish_reason", None) == "stop"


def strip_stop(text: str, stop: Sequence[str]) -> str:
    for s in sorted(stop, key=len, reverse=True):
        if text.endswith(s):
            return text[: -len(s)]
    return text


def split_tasks(text: str) -> tuple[list[str], bool]:
    """(instructions, finished) from a continuation of the task prompt (which ended at "9.").

    Items are split at "\\n<number>. ", spaces normalised, the first letter capitalised (the rest is
    left as written). ``finished`` is False when the continuation ran out of tokens before a stop
    sequence or an end token: its last item may be cut short.
    """
    finished = ends_at_stop(text, TASK_STOP)
    items = []
    for raw in _LIST_ITEM.split(strip_stop(text, TASK_STOP)):
        item = _SPACES.sub(" ", raw).strip()
        if item:
            items.append(item[0].upper() + item[1:])
    return items, finished


def keyword_pattern(keywords: Sequence[str]) -> re.Pattern:
    return re.compile(r"\b(?:" + "|".join(re.escape(k) for k in keywords) + r")\b", re.IGNORECASE)


def task_status(instruction: str, min_words: int, max_words: int, keywords: re.Pattern) -> str:
    """``ok``, or why the task is dropped: ``too_short`` (fewer than ``min_words`` words), ``too_long``
    (more than ``max_words``), ``keyword`` (names something a language model cannot do: an image, a
    file, a plot, ...), ``punctuation`` or ``non_english`` (its first character)."""
    words = len(instruction.split())
    if words < min_words:
        return "too_short"
    if words > max_words:
        return "too_long"
    if keywords.search(instruction):
        return "keyword"
    if instruction[0] in string.punctuation:
        return "punctuation"
    if not instruction[0].isascii():
        return "non_english"
    return "ok"


def render_classify_prompt(instruction: str) -> str:
    """The few-shot "Can the following task be regarded as a classification task...?" prompt."""
    return f"{template('self_instruct_classify')} {instruction.strip()}\n{CLASSIFY_QUESTION}"


def parse_classification(text: str) -> str:
    """``yes``, ``no`` or ``unclear`` (anything else; taken as not a classification task, as published)."""
    answer = strip_stop(text, CLASSIFY_STOP).strip()
    if answer in ("Yes", "yes", "YES"):
        return "yes"
    if answer in ("No", "no", "NO"):
        return "no"
    return "unclear"


def instance_stop(max_instances: int) -> tuple[str, ...]:
    return (f"Example {max_instances + 1}", "Task:")


def render_instance_prompt(instruction: str, is_classification: bool) -> str:
    """Output-first for a classification task (a label, then an input for it), input-first otherwise."""
    name = "self_instruct_output_first" if is_classification else "self_instruct_input_first"
    return f"{template(name)} {instruction.strip()}\n"


_EXAMPLE = re.compile(r"Example\s?\d*\.?")
_OUTPUT = re.compile(r"Output\s*\d*\s*:")
_INPUT = re.compile(r"Input\s*\d*\s*:")
CLASS_LABEL = "Class label:"


def _input_output(text: str) -> tuple[str, str]:
    """One "Input: ... Output: ..." example; without an Output label the whole text is the output."""
    parts = _OUTPUT.split(text)
    inp, out = (parts[0], parts[1]) if len(parts) > 1 else ("", text)
    out = _INPUT.split(out)[0]  # a second example run on after the output
    inp = re.sub(r"^\s*" + _INPUT.pattern, "", inp.strip())
    return inp.strip(), out.strip()


def parse_input_first(text: str, bare_output: bool = False) -> list[tuple[str, str]]:
    """(input, output) examples of an input-first generation: split at "Example N", or one example when
    there is an "Output:" label; none otherwise (with ``bare_output``, the text is one output)."""
    text = text.strip()
    if _EXAMPLE.search(text):
        return [_input_output(t.strip()) for t in _EXAMPLE.split(text) if t.strip()]
    if _OUTPUT.search(text):
        return [_input_output(text)]
    return [("", text)] if bare_output and text else []


def parse_output_first(text: str) -> list[tuple[str, str]]:
    """(input, label) examples of an output-first generation: each "Class label:" line, then its input."""
    if CLASS_LABEL not in text:
        return []
    out = []
    for piece in text.split(CLASS_LABEL)[1:]:
        label, _, inp = piece.strip().partition("\n")
        out.append((inp.strip(), label.strip()))
    return out


def clean_instances(examples: list[tuple[str, str]], finished: bool, max_chars: int, max_instances: int,
                    rng: random.Random) -> tuple[list[tuple[str, str]], list[tuple[tuple[str, str], str]]]:
    """(kept, dropped with reason) for one task's parsed examples.

    In order: the last example of a generation that ran out of tokens (``unfinished``); examples with
    an empty output, an output equal to the input, or an input or output ending in ":" (``invalid``);
    longer than ``max_chars`` together (``too_long``); when two examples share an input but not the
    output, all of the task's examples (``conflicting``); repeats (``duplicate``); beyond
    ``max_instances``, a random sample is kept (``over_limit``)."""
    dropped: list[tuple[tuple[str, str], str]] = []
    pool = list(examples)
    if not finished and pool:
        dropped.append((pool.pop(), "unfinished"))
    kept = []
    for ex in pool:
        inp, out = ex
        if not out or inp == out or inp.endswith(":") or out.endswith(":"):
            dropped.append((ex, "invalid"))
        elif len(inp) + len(out) > max_chars:
            dropped.append((ex, "too_long"))
        else:
            kept.append(ex)
    outputs: dict[str, set] = {}
    for inp, out in kept:
        if inp:
            outputs.setdefault(inp, set()).add(out)
    if any(len(v) > 1 for v in outputs.values()):
        return [], dropped + [(ex, "conflicting") for ex in kept]
    unique = []
    for ex in kept:
        (dropped.append((ex, "duplicate")) if ex in unique else unique.append(ex))
    if len(unique) > max_instances:
        chosen = set(rng.sample(range(len(unique)), max_instances))
        dropped += [(ex, "over_limit") for i, ex in enumerate(unique) if i not in chosen]
        unique = [ex for i, ex in enumerate(unique) if i in chosen]
    return unique, dropped


def pair_instruction(instruction: str, inp: str) -> str:
    """The instruction of a training pair: the task, then its input after a blank line (as the seed
    loader joins a Self-Instruct instance)."""
    return f"{instruction}\n\n{inp}" if inp else instruction
