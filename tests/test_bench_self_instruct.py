"""scripts/bench_self_instruct.py end to end in its reduced mode: the ROUGE-L filter against rouge_score on a
sample, and the rubric judge against the rating judge on the tiny model. The report has the harness's shape
(settings with the machine, a result per measurement with its memory, the headline ratios) and the markdown
its table; the timings' values are not checked (they measure the machine), the counts are."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "bench_self_instruct.py"
MEMORY = {"rss_before_mb", "peak_rss_mb", "cuda_max_allocated_mb"}
ROUGE_KEYS = {"new_instructions", "pool_start", "kept", "dropped_as_similar", "pool_end", "humpback_cpu_seconds",
              "humpback_wall_seconds", "humpback_index_cpu_seconds", "humpback_exact_lcs_pairs", "all_pairs",
              "reference_sampled_instructions", "reference_sampled_pairs", "reference_sampled_cpu_seconds",
              "reference_sampled_wall_seconds", "reference_cpu_us_per_pair", "reference_cpu_seconds_extrapolated",
              "speedup", "decisions_equal_on_sample", "note"} | MEMORY
JUDGE_KEYS = {"pairs", "principles", "repeats", "model", "timed_on", "backend", "rating_logits_pairs_per_s",
              "rubric_pairs_per_s", "rubric_forward_passes_per_s", "rating_over_rubric", "cpu_seconds",
              "wall_seconds"} | MEMORY


@pytest.fixture(scope="module")
def reduced_run(tmp_path_factory, tiny_model_dir, docs_seed_path):
    out = tmp_path_factory.mktemp("bench-self-instruct")
    proc = subprocess.run([sys.executable, str(SCRIPT), "--reduced", "--output", str(out)], capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out, json.loads((out / "bench_self_instruct.json").read_text())


def test_script_opens_with_its_command():
    assert SCRIPT.read_text().splitlines()[1] == "# python scripts/bench_self_instruct.py --output runs/benchmark"


def test_reduced_run_reports_both_measurements(reduced_run):
    out, report = reduced_run
    assert set(report) == {"speedups", "settings", "results"}
    s = report["settings"]
    assert ({k: s[k] for k in ("new", "pool", "reference_sample", "judge_pairs", "reps")}
            == {"new": 300, "pool": 300, "reference_sample": 3, "judge_pairs": 4, "reps": 1})
    assert (s["reduced"], s["isolated"]) == (True, False) and {"python", "cpu", "packages"} <= set(s["machine"])
    assert {g: set(v) for g, v in report["results"].items()} == {"rouge": {"filter"}, "judges": {"rubric-vs-rating"}}

    rouge = report["results"]["rouge"]["filter"]
    assert set(rouge) == ROUGE_KEYS
    assert (rouge["new_instructions"], rouge["pool_start"], rouge["reference_sampled_instructions"]) == (300, 300, 3)
    assert rouge["kept"] + rouge["dropped_as_similar"] == 300 and rouge["pool_end"] == 300 + rouge["kept"]
    assert 0 < rouge["kept"] < 300  # near-copies are dropped, new instructions kept: both verdicts occur
    assert rouge["decisions_equal_on_sample"] == "3/3"

    judges = report["results"]["judges"]["rubric-vs-rating"]
    assert set(judges) == JUDGE_KEYS
    assert (judges["pairs"], judges["repeats"], judges["model"]) == (4, 1, "builtin:tiny-llama")
    assert {k: len(v) for k, v in judges["cpu_seconds"].items()} == {"rating_logits": 1, "rubric": 1}
    assert judges["rubric_forward_passes_per_s"] == pytest.approx(
        judges["rubric_pairs_per_s"] * judges["principles"], rel=0.01)
    assert report["speedups"] == {"rouge_filter": rouge["speedup"], "rating_over_rubric": judges["rating_over_rubric"]}


def test_markdown_has_the_table(reduced_run):
    out, report = reduced_run
    md = (out / "bench_self_instruct.md").read_text()
    assert "`python scripts/bench_self_instruct.py --output OUTPUT --reduced`" in md
    assert "| rouge | filter |" in md and "| judges | rubric-vs-rating |" in md
    assert "decisions equal on 3/3 sampled" in md


def test_only_runs_the_groups_it_names(tmp_path):
    proc = subprocess.run([sys.executable, str(SCRIPT), "--reduced", "--only", "rouge", "--new", "40", "--pool", "40",
                           "--output", str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads((tmp_path / "bench_self_instruct.json").read_text())
    assert set(report["results"]) == {"rouge"} and report["speedups"]["rating_over_rubric"] is None
    assert report["results"]["rouge"]["filter"]["new_instructions"] == 40
    proc = subprocess.run([sys.executable, str(SCRIPT), "--only", "nope", "--output", str(tmp_path)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "unknown group(s) ['nope']" in proc.stderr
