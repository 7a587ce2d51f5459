"""humpback.data.segment: sectioning, each filter alone, dedup, the funnel and its empty-result error."""

import hashlib
import random

import pytest

from humpback.config import CorpusConfig
from humpback.data.corpus import Document
from humpback.data.dedup import LSHIndex, MinHasher, lsh_params
from humpback.data.funnel import check_not_empty, describe_funnel
from humpback.data.segment import (
    Segment, Segmenter, boilerplate_fraction,
    has_repeated_sentences, is_bad_header, is_boilerplate, is_boilerplate_line, is_too_long, is_too_short,
    split_paragraphs, split_sections,
)
from humpback.errors import DataError

SYLLABLES = ["ka", "lo", "mi", "ten", "rus", "pa", "vo", "zi", "bel", "dor", "fa", "gu", "hin", "jo", "qua", "sto"]


def prose(seed: int, sentences: int = 10) -> str:
    """Non-repetitive made-up prose: no English word, so no filter fires by accident."""
    rng = random.Random(seed)
    out = []
    for _ in range(sentences):
        words = ["".join(rng.choice(SYLLABLES) for _ in range(rng.randint(2, 3))) for _ in range(rng.randint(9, 14))]
        out.append(" ".join(words).capitalize() + ".")
    return " ".join(out)


def cfg(**kw) -> CorpusConfig:
    base = dict(path="unused", min_chars=100, max_chars=2000)
    return CorpusConfig(**{**base, **kw})


NESTED = """Intro text here.

# Title

Body of title.

## Sub A

Text A paragraph one.

Text A paragraph two.

```python
# not a header: inside a code fence
```

### Sub A.1

Deep text.

## Sub B

Text B.
"""


def test_sectioning_nested_markdown_whole_subtree_when_it_fits():
    assert split_sections(NESTED, 1000) == [
        (None, "Intro text here."),
        ("Title", NESTED[NESTED.index("# Title"):].strip()),
    ]


def test_sectioning_nested_markdown_recurses_into_children():
    assert split_sections(NESTED, 120) == [
        (None, "Intro text here."),
        ("Title", "# Title\n\nBody of title."),
        ("Sub A", "## Sub A\n\nText A paragraph one.\n\nText A paragraph two.\n\n"
                  "```python\n# not a header: inside a code fence\n```"),
        ("Sub A.1", "### Sub A.1\n\nDeep text."),
        ("Sub B", "## Sub B\n\nText B."),
    ]


def test_sectioning_splits_a_long_leaf_at_paragraphs():
    assert split_sections(NESTED, 40) == [
        (None, "Intro text here."),
        ("Title", "# Title\n\nBody of title."),
        ("Sub A", "## Sub A\n\nText A paragraph one."),
        ("Sub A", "Text A paragraph two."),
        ("Sub A", "```python\n# not a header: inside a code fence\n```"),
        ("Sub A.1", "### Sub A.1\n\nDeep text."),
        ("Sub B", "## Sub B\n\nText B."),
    ]


def test_sectioning_underlined_headers_and_empty_sections():
    doc = "Guide\n=====\n\nAbout it.\n\nPart one\n--------\n\nFirst.\n\nPart two\n--------\n\nSecond.\n\n## Empty\n"
    assert split_sections(doc, 30) == [
        ("Guide", "Guide\n=====\n\nAbout it."),
        ("Part one", "Part one\n--------\n\nFirst."),
        ("Part two", "Part two\n--------\n\nSecond."),
    ]
    assert split_sections("Short\n---\n\nno: the underline is shorter than the title", 1000)[0][0] is None


def test_split_paragraphs_packs_greedily():
    assert split_paragraphs("aaaa\n\nbbbb\n\ncccc\n\n" + "d" * 12, 10) == ["aaaa\n\nbbbb", "cccc", "d" * 12]
    assert split_paragraphs("  \n\n", 10) == []


def test_length_filters():
    assert is_too_short("x" * 99, 100) and not is_too_short("x" * 100, 100)
    assert is_too_long("x" * 11, 10) and not is_too_long("x" * 10, 10)


@pytest.mark.parametrize("header", ["", "   ", "FREQUENTLY ASKED QUESTIONS", "Advertisement", "Quick Links",
                                    "Free Newsletter", "Related posts", "Share this", "Comments", "Main menu",
                                    "Site navigation", "Community Forum"])
def test_bad_header_positive(header):
    assert is_bad_header(header)


@pytest.mark.parametrize("header", [None, "How to bake bread", "Using the API", "Step 2", "2024"])
def test_bad_header_negative(header):
    assert not is_bad_header(header)


def test_boilerplate_lines_and_fraction():
    assert is_boilerplate_line("We use cookies to improve your experience.")
    assert is_boilerplate_line("© 2024 Example Inc. All rights reserved.")
    assert is_boilerplate_line("Home | About | Contact")
    assert is_boilerplate_line("Home » Recipes")
    assert not is_boilerplate_line("| cell one | cell two |")  # a markdown table row
    assert not is_boilerplate_line("A sentence that is plain prose.")
    assert not is_boilerplate_line("x " * 80 + "privacy policy")  # a long prose line
    text = "We use cookies.\nHome | About | Contact\n\nReal prose one.\nReal prose two."
    assert boilerplate_fraction(text) == 0.5
    assert is_boilerplate(text, 0.3) and not is_boilerplate(text, 0.6)
    assert not is_boilerplate(prose(1), 0.0)


def test_repetitive_sentences():
    near = "The big cat sat on the warm mat near the door. Pa lo mi. The big cat sat on the warm mat near the window."
    assert has_repeated_sentences(near, 3, 0.8)  # 8 shared of 10 trigrams: Jaccard 0.8
    assert not has_repeated_sentences(near, 3, 0.81)
    assert has_repeated_sentences("Buy now and save. Other words here please.\nBuy now and save!", 3, 0.8)
    assert not has_repeated_sentences(prose(2, 40), 3, 0.8)
    wrapped = "Alpha beta gamma delta\nepsilon zeta. Alpha beta gamma delta\nomega psi chi phi."
    assert not has_repeated_sentences(wrapped, 3, 0.8)  # a line break inside a sentence is not an end
    assert has_repeated_sentences(wrapped.replace("\n", "\n\n"), 3, 0.8)  # a blank line is


def test_minhash_is_deterministic_and_bands_fit_the_threshold():
    sig = MinHasher().signature("the quick brown fox jumps over the lazy dog")
    assert sig[:4].tolist() == [265684122, 416023117, 2468073220, 308517468]
    assert lsh_params(0.8) == (18, 7)


def one_word_changed(text: str) -> str:
    words = text.split(" ")
    words[len(words) // 2] = "zzzq"
    return " ".join(words)


def test_funnel_counts_every_filter_exactly():
    good, seed_out = prose(10, 12), prose(99, 12)
    docs = [
        f"# Good one\n\n{good}",
        "# Short\n\nTiny.",
        "x" * 2500,
        f"# ADVERTISEMENT\n\n{prose(11)}",
        "# Links\n\nWe use cookies.\nSign up for our newsletter\nHome | About | Contact\n"
        + prose(12, 3).replace(". ", ".\n"),
        f"# Repeats\n\nThe big cat sat on the warm mat today. {prose(13)} The big cat sat on the warm mat today.",
        f"#  good   ONE\n\n{good.upper()}",  # the same text, up to case and spacing
        f"# Good one\n\n{one_word_changed(good)}",
        seed_out,
        one_word_changed(seed_out),
        f"# Two\n\n{prose(14)}\n\n## Sections\n\n" + prose(15) + "\n\n## Here\n\n" + prose(16),
    ]
    seg = Segmenter(cfg(), seed_outputs=[seed_out])
    kept = list(seg.segments(Document(f"d{i}", t, "test") for i, t in enumerate(docs)))
    assert seg.funnel == {"documents": 11, "pages": 0, "sections": 13, "no_header": 0, "too_short": 1,
                          "too_long": 1, "bad_header": 1, "boilerplate": 1, "repetitive": 1, "other_language": 0,
                          "exact_duplicate": 1, "near_duplicate": 1, "seed_overlap": 2, "kept": 4}
    assert list(seg.funnel) == ["documents", "pages", "sections", "no_header", "too_short", "too_long", "bad_header",
                                "boilerplate", "repetitive", "other_language", "exact_duplicate", "near_duplicate",
                                "seed_overlap", "kept"]
    assert [(s.doc_id, s.header) for s in kept] == [("d0", "Good one"), ("d10", "Two"), ("d10", "Sections"),
                                                    ("d10", "Here")]
    first = kept[0]
    norm = " ".join(first.text.lower().split())
    assert first == Segment(hashlib.blake2b(norm.encode()).hexdigest()[:16], "d0", "Good one", f"# Good one\n\n{good}")


def test_switches_keep_near_duplicates_and_seed_overlap():
    good, seed_out = prose(20, 12), prose(21, 12)
    docs = [Document("a", good, "t"), Document("b", one_word_changed(good), "t"), Document("c", seed_out, "t")]
    seg = Segmenter(cfg(near_dedup=False, drop_seed_overlap=False), seed_outputs=[seed_out])
    assert [s.doc_id for s in seg.segments(docs)] == ["a", "b", "c"]


def test_seed_overlap_is_checked_without_near_dedup():
    good, seed_out = prose(22, 12), prose(23, 12)
    docs = [Document("a", good, "t"), Document("b", one_word_changed(good), "t"),
            Document("c", one_word_changed(seed_out), "t")]
    seg = Segmenter(cfg(near_dedup=False), seed_outputs=[seed_out])
    assert [s.doc_id for s in seg.segments(docs)] == ["a", "b"]
    assert seg.funnel["seed_overlap"] == 1


def test_lsh_index_finds_stored_signatures_only():
    hasher = MinHasher()
    index = LSHIndex(0.8)
    a, b = hasher.signature(prose(50, 12).lower()), hasher.signature(prose(51, 12).lower())
    index.add(a)
    index.add(a)  # a second entry in the same buckets
    assert index.query(a) and not index.query(b)
    index.add(b)
    assert index.query(b) and index.size == 3


def test_near_duplicate_needs_the_threshold():
    a, b = prose(30, 12), prose(31, 12)
    seg = Segmenter(cfg())
    assert len(list(seg.segments([Document("a", a, "t"), Document("b", b, "t")]))) == 2
    assert seg.funnel["near_duplicate"] == 0


def test_max_segments_stops_early_and_keeps_the_funnel_consistent():
    docs = [Document(f"d{i}", prose(40 + i), "t") for i in range(5)]
    seg = Segmenter(cfg(max_segments=2))
    assert [s.doc_id for s in seg.segments(iter(docs))] == ["d0", "d1"]
    assert seg.funnel["documents"] == 2 and seg.funnel["sections"] == 2 and seg.funnel["kept"] == 2


def test_describe_funnel_table():
    funnel = {"documents": 4, "sections": 10, "too_short": 5, "kept": 5}
    assert describe_funnel(funnel) == (
        "documents                    4\n"
        "sections                    10\n"
        "  - too_short                5  (50.0% of sections)\n"
        "kept                         5  (50.0% of sections)"
    )


def test_empty_result_names_the_filters():
    funnel = {"documents": 40, "sections": 63, "too_short": 50, "too_long": 0, "boilerplate": 13, "kept": 0}
    with pytest.raises(DataError) as e:
        check_not_empty(funnel)
    assert str(e.value) == ("no segment survived filtering: 40 documents -> 63 sections; too_short removed 50, "
                            "boilerplate 13; lower corpus.min_chars; raise corpus.boilerplate_threshold")
    seg = Segmenter(cfg(min_chars=600))
    assert list(seg.segments([Document("a", "# A\n\nshort", "t"), Document("b", "tiny", "t")])) == []
    with pytest.raises(DataError, match=r"2 documents -> 2 sections; too_short removed 2; lower corpus.min_chars"):
        check_not_empty(seg.funnel)
    check_not_empty({"documents": 1, "sections": 1, "kept": 1})
