"""The judge study's labelled variants of real pairs: exact, deterministic, and what each condition says."""

from __future__ import annotations

import random

import pytest

from humpback.judges.study import CONDITIONS, sentences, shuffled, study_rows, truncated, with_off_topic


def test_truncated_keeps_whole_words():
    assert truncated("one two three four five six seven eight nine ten") == "one two three"  # 50 chars * 0.4 = 20
    assert truncated("abcdefghij", 0.5) == "abcde"  # one word: cut inside it
    assert truncated("short", 1.0) == "short"


def test_sentences_and_shuffled():
    text = "First one. Second one! Third?\nFourth."
    assert sentences(text) == ["First one.", "Second one!", "Third?", "Fourth."]
    out = shuffled(text, random.Random(0))
    assert sorted(sentences(out)) == sorted(sentences(text)) and out != "First one. Second one! Third? Fourth."
    assert shuffled("The reverse of abc is cba.", random.Random(1)) != "The reverse of abc is cba."  # words
    assert shuffled("alone", random.Random(0)) == "alone"


def test_off_topic_is_appended_after_a_blank_line():
    assert with_off_topic("Answer.  ", "  Other text. ") == "Answer.\n\nOther text."


PAIRS = [{"id": f"p{i}", "category": "ab"[i % 2], "instruction": f"Q{i}?", "output": f"A{i} first. A{i} second."}
         for i in range(4)]


def test_study_rows():
    rows = study_rows(PAIRS, ["Off topic paragraph."], seed=3)
    assert [r["condition"] for r in rows[:5]] == list(CONDITIONS) and len(rows) == 20
    assert [r["positive"] for r in rows] == [c == "real" for _ in PAIRS for c in CONDITIONS]
    by = {r["candidate_id"]: r for r in rows}
    # p0 (category a): half the list away is p2, also a, so the next one of another category, p3.
    assert by["p0:mismatched"]["output"] == "A3 first. A3 second."
    assert by["p1:mismatched"]["output"] == "A0 first. A0 second."  # p3 is b too; p0 is a
    assert by["p0:off_topic"]["output"] == "A0 first. A0 second.\n\nOff topic paragraph."
    assert by["p2:shuffled"]["output"] == "A2 second. A2 first."
    assert by["p1:truncated"]["output"] == "A1"
    assert all(r["instruction"] == f"Q{r['pair'][1:]}?" for r in rows)
    assert study_rows(PAIRS, ["Off topic paragraph."], seed=3) == rows


def test_study_rows_refuses_what_it_cannot_build():
    with pytest.raises(ValueError, match="at least two pairs"):
        study_rows(PAIRS[:1], ["x"])
    with pytest.raises(ValueError, match="off-topic paragraphs"):
        study_rows(PAIRS, [])
