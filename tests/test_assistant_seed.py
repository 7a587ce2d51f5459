"""The built-in assistant seed set (humpback/assets/assistant-seed.jsonl) and its data card: it loads as an
alpaca seed with nothing skipped or dropped, its pairs are distinct, categorised and within the length
bounds the real CPU recipe needs, no answer opens by restating its instruction, and the card's table and
statistics are what the file holds (scripts/assistant_seed_card.py computes them)."""

import importlib.util
import json
import re
from collections import Counter
from pathlib import Path

import pytest

import humpback
from humpback.config import SeedConfig
from humpback.data.seed import load_seed

ASSETS = Path(humpback.__file__).parent / "assets"
SEED = ASSETS / "assistant-seed.jsonl"
CARD = ASSETS / "assistant-seed.md"
CARD_SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "assistant_seed_card.py"

MIN_PAIRS = 180
MIN_PER_CATEGORY = 10
INSTRUCTION_CHARS = (20, 400)
OUTPUT_CHARS = (200, 1400)
MAX_PAIR_CHARS = 1800  # instruction + output: about 450 tokens, inside the recipe's 512
FILLER_OPENERS = ("sure", "certainly", "of course", "great question", "as an ai")


def _card_module():
    spec = importlib.util.spec_from_file_location("assistant_seed_card", CARD_SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def records():
    lines = SEED.read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines]


def _words(text):
    return re.findall(r"[a-z0-9]+", text.lower())


def _restates(instruction, output):
    """Whether ``output`` opens by repeating ``instruction``: the same first six words, or the
    instruction's first clause (four words or more) within the output's first 200 characters."""
    iw, ow = _words(instruction), _words(output)
    n = min(6, len(iw))
    if ow[:n] == iw[:n]:
        return True
    clause = _words(re.split(r"[?.!:\n]", instruction, maxsplit=1)[0])
    return len(clause) >= 4 and " ".join(clause) in " ".join(_words(output[:200]))


def test_restating_check_catches_a_restatement():
    assert _restates("Why is the sky blue?", "Why is the sky blue? Because of scattering.")
    assert _restates("Explain how binary search works.", "Sure. Explain how binary search works: it halves.")
    assert not _restates("Why is the sky blue?", "Sunlight is scattered by the air, blue most of all.")


def test_loads_as_an_alpaca_seed_with_nothing_skipped_or_dropped(records):
    res = load_seed(SeedConfig(path=str(SEED), format="alpaca", skip_invalid=True))
    assert res.format == "alpaca"
    assert res.stats["records_read"] == len(records)
    assert res.stats["skipped"] == {}
    assert "duplicates" not in res.stats
    expected = [(r["instruction"], r["output"]) for r in records]
    assert [(p.instruction, p.output) for p in res.pairs] == expected
    assert load_seed(SeedConfig(path=str(SEED), format="auto")).format == "alpaca"


def test_records_have_the_documented_fields(records):
    assert len(records) >= MIN_PAIRS
    for r in records:
        assert set(r) == {"id", "category", "instruction", "output"}, r.get("id")
        for key, value in r.items():
            assert isinstance(value, str) and value, (r["id"], key)
            assert value == value.strip(), (r["id"], key)
            assert "\r" not in value and "\t" not in value, (r["id"], key)
            assert all(line == line.rstrip() for line in value.split("\n")), (r["id"], key, "trailing spaces")


def test_ids_and_instructions_are_unique(records):
    ids = [r["id"] for r in records]
    assert ids == [f"as-{i:03d}" for i in range(1, len(records) + 1)]
    normalised = Counter(" ".join(r["instruction"].lower().split()) for r in records)
    assert [i for i, n in normalised.items() if n > 1] == []


def test_categories_are_documented_and_each_has_enough_pairs(records):
    documented = _card_module().CATEGORIES
    counts = Counter(r["category"] for r in records)
    assert set(counts) <= set(documented), set(counts) - set(documented)
    assert {c: counts[c] for c in documented if counts[c] < MIN_PER_CATEGORY} == {}


def test_lengths_fit_the_recipe(records):
    for r in records:
        n_in, n_out = len(r["instruction"]), len(r["output"])
        assert INSTRUCTION_CHARS[0] <= n_in <= INSTRUCTION_CHARS[1], (r["id"], n_in)
        assert OUTPUT_CHARS[0] <= n_out <= OUTPUT_CHARS[1], (r["id"], n_out)
        assert n_in + n_out <= MAX_PAIR_CHARS, (r["id"], n_in + n_out)


def test_no_output_restates_its_instruction_or_opens_with_filler(records):
    assert [r["id"] for r in records if _restates(r["instruction"], r["output"])] == []
    assert [r["id"] for r in records if r["output"].lower().startswith(FILLER_OPENERS)] == []


def test_card_matches_the_file(records):
    card = _card_module()
    assert card.read_pairs(SEED) == records
    assert card.card_section(CARD.read_text(encoding="utf-8")) == card.generated_section(records)
