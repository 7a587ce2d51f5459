"""``builtin:`` references and the real assets: Python's reference documentation as a corpus cut at its
titles, Debian's HTML docs where installed, the hand-written seed pairs split into seed and a labelled
dev set."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from humpback import assets, tiny, worlds
from humpback.builtin_names import known, resolve
from humpback.errors import ConfigError


def _jsonl(path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines()]


def test_resolve_passes_other_references_through():
    assert resolve("some/local/model") == "some/local/model"
    assert resolve("org/model-id") == "org/model-id"
    path = resolve("builtin:python-docs-seed")
    assert Path(path).is_file() and path.endswith(".jsonl")


def test_an_unknown_builtin_lists_every_name():
    with pytest.raises(ConfigError) as e:
        resolve("builtin:no-such-thing")
    msg = str(e.value)
    assert "no-such-thing" in msg
    names = tiny.BUILTINS + worlds.BUILTINS + assets.BUILTINS + ("smollm2-135m-instruct",)
    assert set(known()) == set(names) and all(name in msg for name in names)


def test_python_reference_is_the_interpreters_topics():
    import pydoc_data.topics

    docs = _jsonl(resolve("builtin:python-reference"))
    topics = pydoc_data.topics.topics
    assert len(docs) == len(topics) and len({d["id"] for d in docs}) == len(docs)
    assert [d["text"] for d in docs] == [topics[k] for k in sorted(topics)]
    assert resolve("builtin:python-reference") == resolve("builtin:python-reference")  # cached, same path


def test_python_reference_is_cut_at_its_titles_with_the_papers_filters():
    from humpback.config import CorpusConfig
    from humpback.data.corpus import iter_documents
    from humpback.data.segment import Segmenter, find_headers

    doc = _jsonl(resolve("builtin:python-reference"))
    formatstrings = next(d for d in doc if d["id"].endswith(":formatstrings"))["text"]
    headers = find_headers(formatstrings.split("\n"))
    # reST: the first underline style (Python's docs: ***) is level 1, the next new one level 2.
    assert (headers[0].title, headers[0].level) == ("Format String Syntax", 1)
    assert {h.level for h in headers[1:]} <= {2, 3} and headers[1].level == 2
    cfg = CorpusConfig(path=resolve("builtin:python-reference"))  # the paper's 600..3,000 characters
    segmenter = Segmenter(cfg)
    segments = list(segmenter.segments(iter_documents(cfg)))
    funnel = segmenter.funnel
    assert funnel["documents"] == len(doc) and funnel["kept"] == len(segments) > 100
    assert funnel["sections"] == funnel["kept"] + sum(funnel[f] for f in ("no_header", "too_short", "too_long",
        "bad_header", "boilerplate", "repetitive", "other_language", "exact_duplicate", "near_duplicate",
        "seed_overlap"))
    assert all(600 <= len(s.text) <= 3000 and s.header for s in segments)
    assert funnel["too_short"] and funnel["repetitive"] and funnel["exact_duplicate"]  # the filters do work here


def test_setext_markdown_keeps_its_levels():
    from humpback.data.segment import find_headers

    lines = "Guide\n=====\n\nText.\n\nPart\n----\n\nMore.\n\nNext\n====\n\nEnd.".split("\n")
    assert [(h.title, h.level) for h in find_headers(lines)] == [("Guide", 1), ("Part", 2), ("Next", 1)]
    lines = "Part\n----\n\nText.\n\nGuide\n=====\n\nMore.".split("\n")  # reST: order of first appearance
    assert [(h.title, h.level) for h in find_headers(lines)] == [("Part", 1), ("Guide", 2)]


def test_debian_html_docs(monkeypatch, tmp_path):
    monkeypatch.setattr(assets, "DEBIAN_DOCS", tmp_path / "missing")
    with pytest.raises(ConfigError, match=r"builtin:python3-doc-html: .*apt-get install python3-doc"):
        resolve("builtin:python3-doc-html")
    link = tmp_path / "html"
    (tmp_path / "python3.11-doc" / "html" / "library").mkdir(parents=True)
    (tmp_path / "python3.11-doc" / "html" / "library" / "json.html").write_text(
        "<html><body><h1>json</h1><p>" + " ".join(f"Sentence {i} of the page says {w} things." for i, w in
                                                   enumerate("how json encodes and decodes values in python".split()))
        + "</p></body></html>")
    link.symlink_to(tmp_path / "python3.11-doc" / "html")
    monkeypatch.setattr(assets, "DEBIAN_DOCS", link)
    folder = resolve("builtin:python3-doc-html")
    assert folder == str((tmp_path / "python3.11-doc" / "html").resolve())

    from humpback.config import CorpusConfig
    from humpback.data.corpus import iter_documents
    from humpback.data.segment import Segmenter

    cfg = CorpusConfig(path=folder, min_chars=100)
    segments = list(Segmenter(cfg).segments(iter_documents(cfg)))
    assert [s.header for s in segments] == ["json"]


PAIRS = [{"id": f"p{i:02d}", "category": cat, "instruction": f"Question {i} about {cat}?",
          "output": f"Answer {i}, on {cat}."} for i, cat in enumerate(["a"] * 7 + ["b"] * 6 + ["c"] * 12)]


def test_the_dev_split_is_every_sixth_pair_of_each_category(monkeypatch):
    monkeypatch.setattr(assets, "DEV_EVERY", 6)
    seed, dev = assets.split_pairs(PAIRS)
    assert [p["id"] for p in dev] == ["p05", "p12", "p18", "p24"]  # a's 6th, b's 6th, c's 6th and 12th
    assert len(seed) + len(dev) == len(PAIRS) and not {p["id"] for p in seed} & {p["id"] for p in dev}


def test_the_dev_set_pairs_each_instruction_with_another_categorys_answer(monkeypatch):
    monkeypatch.setattr(assets, "DEV_EVERY", 6)
    _, dev = assets.split_pairs(PAIRS)
    rows = assets.dev_set(dev)
    assert [(r["id"], r["label"]) for r in rows] == [
        ("p05:real", "good"), ("p12:real", "good"), ("p18:real", "good"), ("p24:real", "good"),
        ("p05:answer-of-p18", "bad"), ("p12:answer-of-p24", "bad"), ("p18:answer-of-p05", "bad"),
        ("p24:answer-of-p12", "bad")]
    by_id = {p["id"]: p for p in PAIRS}
    for r in rows[4:]:
        own, other = r["id"].split(":answer-of-")
        assert r["instruction"] == by_id[own]["instruction"] and r["output"] == by_id[other]["output"]
        assert by_id[own]["category"] != by_id[other]["category"]


def test_seed_and_dev_builtins_load_as_the_run_reads_them(monkeypatch, tmp_path):
    from humpback.config import SeedConfig
    from humpback.data.devset import load_dev_set
    from humpback.data.seed import load_seed

    path = tmp_path / "pairs.jsonl"
    path.write_text("".join(json.dumps(p) + "\n" for p in PAIRS))
    monkeypatch.setattr(assets, "SEED_FILE", path)
    monkeypatch.setattr(assets, "DEV_EVERY", 6)
    seed = load_seed(SeedConfig(path=resolve("builtin:assistant-seed"), format="alpaca"))
    assert [p.instruction for p in seed.pairs] == [p["instruction"] for p in assets.split_pairs(PAIRS)[0]]
    dev = load_dev_set(resolve("builtin:assistant-dev"))
    assert [d["positive"] for d in dev] == [True] * 4 + [False] * 4
