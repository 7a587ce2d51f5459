"""The controlled world's task families: instructions with one checkable answer, answers phrased so
that their instruction can be read back from them, wrong and off-task answers, and the verifier.

Every function here is pure: a family renders an instruction and its correct answer from a word,
corrupts an answer with a given random stream, and parses an instruction back into (family, word).
The payload words are upper-case letters (A-J) (the world's tokenizer keeps each capital and digit a token
of its own, so a tiny model can copy, reverse and count them); the prose around them is fixed.

- ``reverse``: "Reverse the word CAGE." -> "The reverse of CAGE is EGAC."
- ``sort``: "Sort the letters of CAGE." -> "The letters of CAGE in order are ACEG."
- ``count``: "How many letters are in CAGE?" -> "CAGE has 4 letters."
- ``spell``: "Spell the word CAGE with dashes." -> "CAGE with dashes is C-A-G-E."
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from typing import Callable

# Ten letters: a model this small learns to copy, reverse and sort them in a few hundred steps (with all
# 26 it takes several times as long); ten letters still make over a million words of 3-6 letters.
LETTERS = "ABCDEFGHIJ"
MIN_WORD, MAX_WORD = 3, 6


@dataclass(frozen=True)
class Family:
    name: str
    instruction: str  # format string with {w}
    answer: str  # format string with {w} and {a} (the result)
    solve: Callable[[str], str]
    pattern: re.Pattern  # reads the word back from an instruction


def _count(w: str) -> str:
    return str(len(w))


def _dashes(w: str) -> str:
    return "-".join(w)


FAMILIES = (
    Family("reverse", "Reverse the word {w}.", "The reverse of {w} is {a}.", lambda w: w[::-1],
           re.compile(r"Reverse the word ([A-Z]+)\.")),
    Family("sort", "Sort the letters of {w}.", "The letters of {w} in order are {a}.", lambda w: "".join(sorted(w)),
           re.compile(r"Sort the letters of ([A-Z]+)\.")),
    Family("count", "How many letters are in {w}?", "{w} has {a} letters.", _count,
           re.compile(r"How many letters are in ([A-Z]+)\?")),
    Family("spell", "Spell the word {w} with dashes.", "{w} with dashes is {a}.", _dashes,
           re.compile(r"Spell the word ([A-Z]+) with dashes\.")),
)
BY_NAME = {f.name: f for f in FAMILIES}

# Off-task answers: text about the word that answers no task (a forum reply, a blog aside).
OFF_TASK = (
    "I think {w} is a nice word.",
    "Nobody knows what {w} means.",
    "My friend told me about {w} once.",
    "{w} is not a word I would use.",
)


def random_word(rng: random.Random) -> str:
    return "".join(rng.choice(LETTERS) for _ in range(rng.randint(MIN_WORD, MAX_WORD)))


def instruction_for(family: str, word: str) -> str:
    return BY_NAME[family].instruction.format(w=word)


def answer_for(family: str, word: str) -> str:
    """The correct answer, phrased so that the instruction can be read back from it."""
    f = BY_NAME[family]
    return f.answer.format(w=word, a=f.solve(word))


# The web's common mistakes, one per family: the word not reversed, sorted backwards, counted one too
# many, spelled backwards. Systematic errors compete with the right answer (random ones only blur it).
CONFUSIONS = {"reverse": lambda w: w, "sort": lambda w: "".join(sorted(w, reverse=True)),
              "count": lambda w: str(len(w) + 1), "spell": lambda w: "-".join(w[::-1])}


def wrong_answer(family: str, word: str, rng: random.Random) -> str:
    """An answer of the right form with a wrong result: half the time the family's common mistake
    (:data:`CONFUSIONS`), else the letters shuffled or a count off by one or two. Never the right one."""
    f = BY_NAME[family]
    right = f.solve(word)
    wrong = CONFUSIONS[family](word) if rng.random() < 0.5 else _shuffled(family, word, right, rng)
    if wrong == right:
        wrong = _shuffled(family, word, right, rng)
    return f.answer.format(w=word, a=wrong)


def _shuffled(family: str, word: str, right: str, rng: random.Random) -> str:
    if family == "count":
        wrong = str(max(1, len(word) + rng.choice((-2, -1, 1, 2))))
        return wrong if wrong != right else str(len(word) + 1)
    letters = list(word)
    for _ in range(20):
        rng.shuffle(letters)
        wrong = _dashes("".join(letters)) if family == "spell" else "".join(letters)
        if wrong != right:
            return wrong
    other = next(c for c in LETTERS if c != right[0])  # a word like "AAA": nothing to shuffle
    return right.replace(right[0], other, 1)


def off_task_answer(word: str, rng: random.Random) -> str:
    return rng.choice(OFF_TASK).format(w=word)


def parse_instruction(instruction: str) -> tuple[str, str] | None:
    """(family, word) for an instruction of the world, None for anything else."""
    text = instruction.strip()
    for f in FAMILIES:
        m = f.pattern.fullmatch(text)
        if m:
            return f.name, m.group(1)
    return None


def normalise(text: str) -> str:
    """What exact match compares: the text with runs of whitespace made one space, ends stripped."""
    return " ".join(text.split())


def verify(row: dict) -> float:
    """The world's verifier (a ``curate.verifier``): 1.0 when ``row["output"]`` is the correct answer to
    ``row["instruction"]``, else 0.0 (an instruction outside the world's families scores 0.0)."""
    parsed = parse_instruction(row["instruction"])
    if parsed is None:
        return 0.0
    return 1.0 if normalise(row["output"]) == answer_for(*parsed) else 0.0
