"""scripts/bench_corpus.py end to end in its reduced mode: the real corpus and the synthetic stream go
through the Segmenter and the JSON and markdown carry the figures (their values are not checked)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "bench_corpus.py"


@pytest.fixture(scope="module")
def reduced_run(tmp_path_factory, docs_corpus_path):
    out = tmp_path_factory.mktemp("bench-corpus")
    proc = subprocess.run([sys.executable, str(SCRIPT), "--reduced", "--output", str(out)], capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out, json.loads((out / "bench_corpus.json").read_text())


def test_script_opens_with_its_command():
    assert SCRIPT.read_text().splitlines()[1].startswith("# python scripts/bench_corpus.py")


def test_reduced_run_reports_every_figure(reduced_run):
    out, report = reduced_run
    r = report["results"]
    assert r["corpus"]["docs"]["docs_per_s"] > 0 and r["corpus"]["docs"]["peak_rss_mb"] > 0
    assert len(r["corpus"]["docs"]["reps"]) == report["settings"]["reps"]
    scale = r["scale"]["synthetic"]
    assert scale["docs"] == report["settings"]["corpus_docs"] and scale["docs_per_s"] > 0 and scale["peak_rss_mb"] > 0
    funnel = scale["funnel"]
    assert funnel["documents"] == scale["docs"] and funnel["kept"] == scale["segments"]
    assert funnel["exact_duplicate"] > 0 and funnel["near_duplicate"] > 0 and funnel["too_short"] > 0
    assert isinstance(report["targets_met"]["corpus_peak_rss_under_2gb"], bool)
    assert report["settings"]["corpus"]["min_chars"] == 600  # the defaults, without a recipe


def test_markdown_has_the_table(reduced_run):
    out, report = reduced_run
    md = (out / "bench_corpus.md").read_text()
    for row in ("| corpus | docs |", "| scale | synthetic |"):
        assert row in md
    assert f"{report['results']['scale']['synthetic']['segments']:,} segments kept" in md


def test_a_recipe_sets_the_filters(tmp_path, docs_corpus_path):
    proc = subprocess.run([sys.executable, str(SCRIPT), "--reduced", "--only", "corpus", "--recipe",
                           str(REPO / "recipes" / "tiny-cpu.yaml"), "corpus.max_chars=1200", "--output",
                           str(tmp_path)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads((tmp_path / "bench_corpus.json").read_text())
    corpus = report["settings"]["corpus"]
    assert ((corpus["min_chars"], corpus["max_chars"], corpus["path"], corpus["max_segments"])
            == (400, 1200, None, None))
    assert report["results"]["corpus"]["docs"]["segments_per_s"] > 0 and "scale" not in report["results"]
