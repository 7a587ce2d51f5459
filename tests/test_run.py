"""The whole loop on the tiny recipe: the run folder matches the contract, and a second run resumes."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from humpback import cli
from humpback.config import load_config
from humpback.loop import open_run, run
from humpback.store import read_table
from humpback.view.run_summary import format_summary
from tiny_runs import TINY_RUNS

ROOT = Path(__file__).parent.parent
TINY = ROOT / "recipes" / "tiny-cpu.yaml"
# The tiny recipe, smaller still: the point is the plumbing. Selection by threshold on the expected score, which
# these tests change (the demo keeps a top fraction): conftest's shared run "expected" (tests/tiny_runs.py).
FAST = TINY_RUNS["expected"]


@pytest.fixture(scope="module")
def expected_run(tiny_run):
    """(run folder, summaries, console lines) of the shared run; a test that reruns it works on a copy."""
    shared = tiny_run("expected")
    return shared.run_dir, shared.summaries, shared.lines


def test_run_folder_matches_the_contract(expected_run):
    run_dir, summaries, _ = expected_run
    for rel in ["config.yaml", "manifest.json", "metrics.jsonl", "data/seed.parquet", "data/segments.parquet",
                "models/backward/adapter_config.json", "models/m0/adapter_config.json", "augment/candidates"]:
        assert (run_dir / rel).exists(), rel
    candidates = read_table(run_dir / "augment/candidates")
    rejected = read_table(run_dir / "augment/rejected")
    segments = read_table(run_dir / "data/segments.parquet")
    assert len(candidates) + len(rejected) == len(segments) == 12
    assert {"candidate_id", "segment_id", "instruction", "raw_generation", "generator", "temperature", "top_p",
            "truncated"} <= set(candidates[0])
    # The random tiny model never stops before augment.max_new_tokens: every generation is flagged, and
    # counted; the demo recipe keeps them (augment.keep_truncated).
    augment_stats = json.loads((run_dir / "manifest.json").read_text())["stages"]["augment"]["stats"]
    assert augment_stats["truncated"] == sum(r["truncated"] for r in candidates + rejected) > 0
    seed = read_table(run_dir / "data/seed.parquet")
    for k in (1, 2):
        it = run_dir / f"iter_{k}"
        scores = read_table(it / "scores")
        # one score row per candidate, in every iteration
        assert sorted(s["candidate_id"] for s in scores) == sorted(c["candidate_id"] for c in candidates)
        assert all(s["parse_status"] == "ok" and 1 <= s["score"] <= 5 for s in scores)
        assert all(abs(sum(s["probs"]) - 1) < 1e-6 and 1 <= s["expected_score"] <= 5 for s in scores)
        curated = read_table(it / "curated.parquet")
        kept = {s["candidate_id"] for s in scores if s["score"] >= 3}
        assert {c["candidate_id"] for c in curated} == kept
        train = read_table(it / "train.parquet")
        assert len(train) == len(seed) + len(curated)
        systems = [r["messages"][0]["content"] for r in train]
        assert systems.count("Answer in the style of an AI Assistant.") == len(seed)
        assert systems.count("Answer with knowledge from web search.") == len(curated)
        assert (it / "model" / "adapter_model.safetensors").exists()
        stats = json.loads((it / "stats.json").read_text())
        assert stats["candidates"] == len(candidates) and stats["curated"] == len(curated)
        assert sum(stats["score_histogram"].values()) == len(candidates)
        assert stats["parse_failure_rate"] == 0 and stats["train_loss"] > 0 and stats["losses"]
    assert [s["iteration"] for s in summaries] == [1, 2]
    # The tiny random judge is not judging, and the summary says so.
    health = summaries[0]["judge_health"]
    assert health["choice_mass_mean"] < 0.5 and health["warnings"]
    assert "WARNING: iteration 1 judge: the judge put" in format_summary(summaries, run_dir)
    assert read_table(run_dir / "iter_1/scores")[0]["judge"].endswith("models/m0")
    assert read_table(run_dir / "iter_2/scores")[0]["judge"].endswith("iter_1/model")
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert all(s["status"] == "done" for s in manifest["stages"].values())
    # 11 stages of the loop, the eval prompt set, and loss, answers and judge for base, M0, M1 and M2
    assert len(manifest["stages"]) == 11 + 1 + 3 * 4
    metrics = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert {(m["iteration"], m["name"]) for m in metrics} >= {(1, "curated"), (2, "curated"),
                                                              (2, "parse_failure_rate")}


def test_rerun_resumes_and_a_new_threshold_reselects_only(expected_run, tmp_path):
    import shutil

    run_dir = tmp_path / "run"
    shutil.copytree(expected_run[0], run_dir)  # the shared run stays as it was
    lines: list[str] = []
    run(open_run(load_config(TINY, FAST), run_dir, log=lines.append))
    assert not any("running" in line for line in lines), lines
    # A threshold that changes A(1): selection and everything downstream re-run, generation does not.
    scores = sorted(s["expected_score"] for s in read_table(run_dir / "iter_1/scores"))
    threshold = round(scores[len(scores) // 2], 6)
    assert sum(s >= threshold for s in scores) != sum(s >= 1 for s in scores)
    lines.clear()
    run(open_run(load_config(TINY, FAST + [f"curate.threshold={threshold}"]), run_dir, log=lines.append))
    ran = [line.split("]")[0][1:] for line in lines if line.startswith("[") and "running" in line]
    assert ran == ["iter_1/select", "iter_1/train", "iter_1/eval/loss", "iter_1/eval/answers", "iter_1/eval/judge",
                   "iter_2/score", "iter_2/select", "iter_2/train", "iter_2/eval/loss", "iter_2/eval/answers",
                   "iter_2/eval/judge"]
    assert "[iter_1/select] running (changed: threshold); reads augment/candidates, iter_1/scores" in lines
    assert "[augment] up to date, skipped" in lines


def test_both_mode_writes_two_scores_per_pair(expected_run, tmp_path):
    import shutil

    run_dir = tmp_path / "both"
    shutil.copytree(expected_run[0], run_dir)
    lines: list[str] = []
    cfg = load_config(TINY, FAST + ["iterations=1", "curate.mode=both", "curate.max_new_tokens=24"])
    summaries = run(open_run(cfg, run_dir, log=lines.append))
    scores = read_table(run_dir / "iter_1" / "scores")
    assert len(scores) == len(read_table(run_dir / "augment" / "candidates"))
    for s in scores:
        assert s["mode"] == "both" and 1 <= s["logits_score"] <= 5 and abs(sum(s["probs"]) - 1) < 1e-6
        assert s["parse_status"] != "ok" or 1 <= s["score"] <= 5  # the generated score, or a recorded failure
        assert s["raw"] and not s["raw"].startswith("{")  # the judge's generated text is kept
    stats = json.loads((run_dir / "manifest.json").read_text())["stages"]["iter_1/score"]["stats"]
    assert sum(stats["logits_histogram"].values()) == len(scores)
    assert stats["agreement"]["pairs"] == sum(s["score"] is not None for s in scores)
    assert summaries[0]["parse_failures"] == sum(s["parse_status"] != "ok" for s in scores)
    assert "[augment] up to date, skipped" in lines


def test_cli_prepare_prints_the_funnel(tmp_path, capsys):
    assert cli.main(["prepare", str(TINY), "--run-dir", str(tmp_path / "p"), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "documents" in out and "kept" in out and "Data prepared" in out
    assert (tmp_path / "p" / "data" / "segments.parquet").exists()
    assert not (tmp_path / "p" / "models").exists()


def test_cli_errors_are_one_line_without_traceback(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"base_model: x\nseed: {{path: {tmp_path / 'missing.jsonl'}}}\ncorpus: {{path: {tmp_path}}}\n")
    proc = subprocess.run([sys.executable, "-m", "humpback", "prepare", str(recipe), "--run-dir", str(tmp_path / "r")],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert proc.stderr.startswith("humpback: error:") and "missing.jsonl" in proc.stderr
    proc = subprocess.run([sys.executable, "-m", "humpback", "run", str(TINY), "curate.threshold=9"],
                          capture_output=True, text=True)
    assert proc.returncode == 2 and "'curate.threshold' must be between 1 and 5" in proc.stderr


def test_malformed_seed_line_names_file_and_line(tmp_path):
    seed = tmp_path / "seed.jsonl"
    seed.write_text('{"instruction": "a", "output": "b"}\n{"instruction": "c", "output": \n')
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"base_model: x\nseed: {{path: {seed}}}\ncorpus: {{path: {tmp_path}}}\n")
    proc = subprocess.run([sys.executable, "-m", "humpback", "prepare", str(recipe), "--run-dir", str(tmp_path / "r")],
                          capture_output=True, text=True)
    assert proc.returncode == 2 and f"{seed}:2" in proc.stderr and "Traceback" not in proc.stderr
