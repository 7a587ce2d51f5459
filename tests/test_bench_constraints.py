"""scripts/bench_constraints.py end to end on the tiny model in its reduced mode: the report has the harness's
shape (settings with the machine, one result per measurement with its memory), every arm of a built-in is in
the JSON and the Markdown table, and the judge part reports both arms (the rates are not checked here:
tokens/s measure the machine, and whether every answer matches is tests/test_constraints.py's business)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "bench_constraints.py"
ENGINES = ("none", "xgrammar", "outlines-core")
MEMORY = {"rss_before_mb", "peak_rss_mb", "cuda_max_allocated_mb"}
ROW_KEYS = {"constraint", "engine", "match_rate", "tokens_per_s", "tokens_per_s_ci95", "compile_s"}
ARM_KEYS = {"constraint", "parse_failures", "parse_failure_rate", "parse_failure_ci95", "auc", "auc_ci95",
            "seconds_per_pair", "scores", "labels"}


def _run(out: Path, *extra: str) -> dict:
    proc = subprocess.run([sys.executable, str(SCRIPT), "--reduced", "--output", str(out), *extra],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads((out / "bench_constraints.json").read_text())


def _check_engines(result: dict, name: str) -> None:
    assert set(result) == {"model", "prompts", "max_new_tokens", "temperature", "repeats", "rows"} | MEMORY
    assert [(r["constraint"], r["engine"]) for r in result["rows"]] == [(f"builtin:{name}", e) for e in ENGINES]
    for row in result["rows"]:
        assert set(row) == ROW_KEYS and 0 <= row["match_rate"] <= 1 and row["tokens_per_s"] > 0
        assert len(row["tokens_per_s_ci95"]) == 2 and (row["compile_s"] is None) == (row["engine"] == "none")


def test_script_opens_with_its_command():
    assert SCRIPT.read_text().splitlines()[1] == "# python scripts/bench_constraints.py --output runs/benchmark"


def test_the_constraints_are_the_builtins():
    sys.path.insert(0, str(REPO / "scripts"))
    try:
        import bench_constraints
    finally:
        sys.path.remove(str(REPO / "scripts"))
    from humpback.generation.constraints import BUILTINS

    assert bench_constraints.CONSTRAINTS == BUILTINS


def test_reduced_run_of_one_constraint_and_the_judge(tmp_path, tiny_model_dir):
    report = _run(tmp_path, "--only", "engines/score,judge", "--judge-model", "builtin:tiny-llama")
    assert set(report) == {"settings", "results"}
    s = report["settings"]
    assert ({k: s[k] for k in ("prompts", "max_new_tokens", "reps", "batch_size", "pairs", "judge_tokens")}
            == {"prompts": 2, "max_new_tokens": 8, "reps": 1, "batch_size": 2, "pairs": 4, "judge_tokens": 16})
    assert (s["model"], s["judge_model"], s["reduced"], s["isolated"]) == (
        "builtin:tiny-llama", "builtin:tiny-llama", True, False)
    assert {"python", "cpu", "packages"} <= set(s["machine"])
    assert {g: set(v) for g, v in report["results"].items()} == {"engines": {"score"}, "judge": {"score"}}
    _check_engines(report["results"]["engines"]["score"], "score")
    rate = {r["engine"]: r["match_rate"] for r in report["results"]["engines"]["score"]["rows"]}
    assert rate["none"] == 0.0 and rate["xgrammar"] == 1.0  # a random model never writes "Score: N" unasked

    judge = report["results"]["judge"]["score"]
    assert set(judge) == {"model", "pairs", "max_new_tokens", "arms"} | MEMORY and judge["pairs"] == 4
    assert [a["constraint"] for a in judge["arms"]] == [None, "builtin:score"]
    for arm in judge["arms"]:
        assert set(arm) == ARM_KEYS and len(arm["scores"]) == len(arm["labels"]) == 4
        assert arm["parse_failure_rate"] == arm["parse_failures"] / 4 and len(arm["parse_failure_ci95"]) == 2
    assert judge["arms"][1]["parse_failures"] == 0  # the constraint makes every judgement parse

    md = (tmp_path / "bench_constraints.md").read_text()
    assert [f"| builtin:score | {e} |" in md for e in ENGINES] == [True] * 3 and "| builtin:score | none | 0% |" in md
    assert "| builtin:score | 0/4 (0%; 0%-49%) |" in md and "\n| none | " in md


def test_the_judge_is_skipped_without_its_model(tmp_path):
    report = _run(tmp_path, "--only", "judge")
    assert report["results"] == {"judge": {"score": {"skipped": "no --judge-model"}}}
    assert "- judge/score: skipped: no --judge-model" in (tmp_path / "bench_constraints.md").read_text()


@pytest.mark.slow  # 12 arms, each with a warm-up round and an outlines-core vocabulary: over a minute on 2 cores
def test_reduced_run_writes_every_arm_of_every_builtin(tmp_path, tiny_model_dir):
    report = _run(tmp_path, "--reps", "2", "--max-new-tokens", "16")
    engines = report["results"]["engines"]
    assert set(engines) == {"instruction-line", "score", "task-list", "verdict"} and "judge" in report["results"]
    for name, result in engines.items():
        _check_engines(result, name)
        assert all(None not in r["tokens_per_s_ci95"] for r in result["rows"])  # two rounds give an interval
    table = (tmp_path / "bench_constraints.md").read_text()
    assert table.count("| builtin:") == 12 and "| builtin:score | none | 0% |" in table


def test_wilson_interval():
    # The script's parse-failure interval is the library's Wilson interval.
    from humpback.evaluation.exact import wilson_interval as wilson

    lo, hi = wilson(0, 48)
    assert lo == 0.0 and abs(hi - 0.0741) < 1e-3
    lo, hi = wilson(47, 48)
    assert abs(lo - 0.8910) < 1e-3 and hi > 0.99
