#!/usr/bin/env python
# python scripts/assistant_seed_card.py --write
"""The figures of the built-in assistant seed set's data card, computed from the set itself.

    python scripts/assistant_seed_card.py            # print the card's generated section
    python scripts/assistant_seed_card.py --write    # replace that section of the card
    python scripts/assistant_seed_card.py --check    # exit 1 if the card does not match the set

The generated section (the category table and the length statistics) sits between the markers
``<!-- generated:begin -->`` and ``<!-- generated:end -->`` of the card; everything else in the card is
written by hand. tests/test_assistant_seed.py checks that the card matches the set.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

ASSETS = Path(__file__).resolve().parent.parent / "humpback" / "assets"
SEED = ASSETS / "assistant-seed.jsonl"
CARD = ASSETS / "assistant-seed.md"
BEGIN, END = "<!-- generated:begin -->", "<!-- generated:end -->"

# The documented categories, in the order the set is written; every pair belongs to one of them.
CATEGORIES = {
    "python": "Python language features, statements, built-in types and standard-library modules",
    "programming": "general programming: algorithms, git, shell, SQL, HTTP, debugging",
    "explanation": "science, history and how everyday things work",
    "how-to": "step-by-step practical instructions",
    "writing": "short emails, notes, a story, poems, descriptions",
    "rewriting": "rewrite, shorten, correct or change the tone of a given text",
    "summarization": "summarise a given paragraph",
    "classification": "label or sort given items, or extract names, dates and other fields",
    "brainstorming": "lists of ideas",
    "math": "worked arithmetic and word problems",
    "advice": "study, work and everyday health tips (no diagnosis)",
    "comparison": "X versus Y",
}


def read_pairs(path: Path = SEED) -> list[dict]:
    """The set's records, in file order."""
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def _stats(values: list[int]) -> str:
    return (f"{statistics.mean(values):.1f} | {statistics.median(values):.1f} | "
            f"{min(values)} | {max(values)}")


def generated_section(pairs: list[dict]) -> str:
    """The card's generated Markdown: categories with their counts, then length statistics in characters."""
    counts = {name: 0 for name in CATEGORIES}
    for p in pairs:
        counts[p["category"]] = counts.get(p["category"], 0) + 1
    lines = ["| Category | What it covers | Pairs |", "|---|---|---:|"]
    lines += [f"| {name} | {CATEGORIES.get(name, '(not documented)')} | {n} |" for name, n in counts.items()]
    lines += [f"| **total** | | **{len(pairs)}** |", "",
              "Lengths in characters (Python's `len` of the stored strings):", "",
              "| Field | Mean | Median | Min | Max |", "|---|---:|---:|---:|---:|",
              f"| instruction | {_stats([len(p['instruction']) for p in pairs])} |",
              f"| output | {_stats([len(p['output']) for p in pairs])} |",
              f"| instruction + output | {_stats([len(p['instruction'] + p['output']) for p in pairs])} |"]
    return "\n".join(lines)


def card_section(card_text: str) -> str:
    """The text between the card's markers (stripped)."""
    if card_text.count(BEGIN) != 1 or card_text.count(END) != 1:
        raise ValueError(f"the card must hold {BEGIN} and {END} once each")
    return card_text.split(BEGIN, 1)[1].split(END, 1)[0].strip()


def with_section(card_text: str, section: str) -> str:
    card_section(card_text)  # checks the markers
    head, rest = card_text.split(BEGIN, 1)
    return f"{head}{BEGIN}\n{section}\n{END}{rest.split(END, 1)[1]}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode = ap.add_mutually_exclusive_group()
    mode.add_argument("--write", action="store_true", help=f"rewrite the generated section of {CARD.name}")
    mode.add_argument("--check", action="store_true", help="exit 1 if the card does not match the set")
    args = ap.parse_args(argv)
    section = generated_section(read_pairs())
    if args.write:
        CARD.write_text(with_section(CARD.read_text(encoding="utf-8"), section), encoding="utf-8")
        print(f"wrote the generated section of {CARD}")
    elif args.check:
        if card_section(CARD.read_text(encoding="utf-8")) != section:
            print(f"{CARD}: the generated section does not match {SEED.name}; "
                  f"run python scripts/assistant_seed_card.py --write", file=sys.stderr)
            return 1
        print(f"{CARD.name} matches {SEED.name}")
    else:
        print(section)
    return 0


if __name__ == "__main__":
    sys.exit(main())
