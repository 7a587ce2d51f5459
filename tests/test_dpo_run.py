"""Issue 22 on the tiny recipe with train.objective dpo: two iterations of SFT, then model K's answers judged
and paired, then DPO; a kill in the preference stage resumed without sampling the finished shards again;
a replay of the saved corpora that gives the run's model bit for bit; export with a card; a judge that
cannot rank stops with the counts instead of an empty DPO run.

Every test here runs the loop (a few minutes on 2 busy cores), hence slow."""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from humpback.errors import DataError, StoreError
from humpback.export import export_preferences
from humpback.replay import replay
from humpback.store import hash_json, read_table
from tiny_runs import TINY_RUNS

pytestmark = pytest.mark.slow  # each test runs the tiny loop or a replay of it: minutes on 2 cores

ROOT = Path(__file__).parent.parent
TINY = ROOT / "recipes" / "tiny-cpu.yaml"
# conftest's shared run "dpo" (tests/tiny_runs.py): train.objective=dpo, 12 prompts in three answer shards per
# iteration. The kill test reruns the same overrides from scratch in a subprocess (it kills the process).
FAST = TINY_RUNS["dpo"]


@pytest.fixture(scope="module")
def baseline(tiny_run):
    """The uninterrupted run every test here reads (never changes: a test that damages it copies it first)."""
    return tiny_run("dpo").run_dir


def stages(run_dir: Path) -> dict:
    return json.loads((run_dir / "manifest.json").read_text())["stages"]


def rows(run_dir: Path, rel: str) -> list:
    return sorted(hash_json(r) for r in read_table(run_dir / rel))


def tensors(folder: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(folder / "adapter_model.safetensors")


def test_two_iterations_of_sft_then_preferences_then_dpo(baseline):
    s = stages(baseline)
    for k in (1, 2):
        assert set(s[f"iter_{k}/train"]["outputs"]) == {f"iter_{k}/train.parquet", f"iter_{k}/sft_model"}
        assert s[f"iter_{k}/responses"]["depends_on"]["inputs"].keys() == {f"iter_{k}/sft_model",
                                                                            f"iter_{k}/curated.parquet"}
        assert set(s[f"iter_{k}/dpo"]["outputs"]) == {f"iter_{k}/model"}
        responses = s[f"iter_{k}/responses"]["stats"]
        assert (responses["prompts"], responses["responses"], responses["judge_kind"]) == (12, 24, "additive")
        pairs = s[f"iter_{k}/preferences"]["stats"]
        assert pairs["pairs"] + sum(pairs[x] for x in ("tie", "below_margin", "none_scored", "one_scored")) == 12
        assert pairs["pairs"] == len(read_table(baseline / f"iter_{k}" / "preferences.parquet")) > 0
        assert s[f"iter_{k}/dpo"]["stats"]["steps"] == 2
    # The DPO model of iteration 1 judges iteration 2's pool, as model K-1 does in the paper's loop.
    assert "iter_1/model" in s["iter_2/score"]["depends_on"]["inputs"]
    first = read_table(baseline / "iter_1" / "preferences.parquet")[0]
    assert [m["role"] for m in first["prompt"]] == ["system", "user"] and first["chosen"][0]["role"] == "assistant"
    assert first["chosen_score"] > first["rejected_score"] and first["judge"] == "builtin:tiny-llama+iter_1/sft_model"
    # Losses, reward margins and accuracies per step: metrics.jsonl, stats.json and the report.
    metrics = [json.loads(line) for line in (baseline / "metrics.jsonl").read_text().splitlines()]
    dpo = [m for m in metrics if m["stage"] == "iter_1_model"]
    assert [m["name"] for m in dpo if m["name"] in ("dpo/loss", "dpo/margin", "dpo/accuracy")] == \
        ["dpo/loss", "dpo/margin", "dpo/accuracy"] * 2
    stats = json.loads((baseline / "iter_1" / "stats.json").read_text())
    assert stats["dpo/steps"] == 2 and len(stats["dpo_curve"]) == 2 and stats["preferences/pairs"] == pairs["pairs"]
    report = (baseline / "report.html").read_text()
    assert "DPO reward accuracy" in report and "data-plot='dpo'" in report


def test_sigkill_in_the_preference_stage_then_resume_keeps_finished_shards(baseline, tmp_path):
    run_dir = tmp_path / "run"
    env = {**os.environ, "HUMPBACK_POLL_SECONDS": "0.2", "PYTHONUNBUFFERED": "1"}
    pause = [str(ROOT / "tests" / "paused_humpback.py"), "3:iter_1/responses"]  # a pause after each answer shard
    cmd = ["run", str(TINY), "--run-dir", str(run_dir), *FAST]
    proc = subprocess.Popen([sys.executable, *pause, *cmd], env=env, stdout=open(tmp_path / "1.log", "w"),
                            stderr=subprocess.STDOUT)
    progress = run_dir / ".progress" / "iter_1_responses"
    deadline = time.time() + 600
    while not (progress.exists() and list(progress.glob("part-*.json"))):
        assert proc.poll() is None, (tmp_path / "1.log").read_text()
        assert time.time() < deadline, "no answer shard finished in time"
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert stages(run_dir)["iter_1/responses"]["status"] == "running"
    done = sorted(p.stem for p in progress.glob("part-*.json"))
    assert 1 <= len(done) < 3
    first = run_dir / "iter_1" / "responses" / "part-00000.parquet"
    stamp = first.stat().st_mtime_ns
    proc = subprocess.run([sys.executable, "-m", "humpback", *cmd], env=env, capture_output=True, text=True,
                          timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    log = " ".join(proc.stdout.split())
    assert "[iter_1/train] up to date, skipped" in log
    assert re.search(rf"\[iter_1/responses\] running \(did not finish last time\); reads [^;]+; {len(done)} of 3 "
                     rf"shards done", log), log
    assert first.stat().st_mtime_ns == stamp  # the finished shard was kept, not sampled again
    # The same answers, scores and pairs as the uninterrupted run, and the same DPO model.
    for k in (1, 2):
        for rel in (f"iter_{k}/responses", f"iter_{k}/response_scores", f"iter_{k}/preferences.parquet"):
            assert rows(run_dir, rel) == rows(baseline, rel), rel


def test_replay_trains_the_same_model_bit_for_bit(baseline, tmp_path):
    import torch

    out = tmp_path / "replay"
    result = replay(baseline, out, 2, overrides=["tracking.progress=false"], log=lambda _: None)
    recorded = stages(baseline)
    assert result["preferences_sha256"] == recorded["iter_2/preferences"]["outputs"]["iter_2/preferences.parquet"]
    assert set(stages(out)) == {"import/data/heldout.parquet", "import/iter_2/train.parquet",
                                "import/iter_2/preferences.parquet", "iter_2/train", "iter_2/dpo"}  # nothing sampled
    for folder in ("sft_model", "model"):
        mine, theirs = tensors(out / "iter_2" / folder), tensors(baseline / "iter_2" / folder)
        assert mine.keys() == theirs.keys() and all(torch.equal(mine[k], theirs[k]) for k in mine), folder
    assert json.loads((out / "iter_2" / "stats.json").read_text())["dpo/steps"] == 2


def test_replay_refuses_tampered_preference_pairs(baseline, tmp_path):
    src = tmp_path / "src"
    shutil.copytree(baseline, src)
    (src / "iter_1" / "preferences.parquet").write_bytes(b"not the saved pairs")
    with pytest.raises(StoreError, match="preferences.parquet does not match the hash its manifest recorded"):
        replay(src, tmp_path / "out", 1, log=lambda _: None)


def test_a_new_margin_re_pairs_the_saved_answers_and_no_pair_is_an_error(baseline, tmp_path):
    # A margin no two expected additive scores reach: the saved judged answers are re-paired, none passes,
    # and the run stops with the counts before any DPO.
    lines: list[str] = []
    with pytest.raises(DataError, match=r"preferences: 12 prompts -> 0 pairs; not paired: 12 below margin\. DPO has "
                                        r"nothing to train on"):
        replay(baseline, tmp_path / "out", 1, overrides=["tracking.progress=false", "preferences.min_margin=5"],
               log=lines.append)
    assert "[replay] iteration 1: re-pairing the run's judged answers" in lines
    s = stages(tmp_path / "out")
    assert "iter_1/responses" not in s and s["iter_1/preferences"]["status"] == "failed" and "iter_1/dpo" not in s


def test_a_replay_with_the_candidates_bank_reads_the_pool(baseline, tmp_path):
    """preferences.prompts=candidates on a replay that kept the mixture: the pool's candidates come from the
    source run, the answers stage depends on them; in this run every candidate was curated, so the bank's
    prompts, the answers and the pairs are the run's own."""
    lines: list[str] = []
    replay(baseline, tmp_path / "out", 1, overrides=["tracking.progress=false", "preferences.prompts=candidates"],
           log=lines.append)
    assert "[replay] iteration 1: sampling and judging the replayed model's answers" in lines
    responses = stages(tmp_path / "out")["iter_1/responses"]
    assert responses["depends_on"]["inputs"].keys() == {"iter_1/sft_model", "augment/candidates"}
    assert (responses["stats"]["bank"]["bank"], responses["stats"]["prompts"]) == ("candidates", 12)
    for rel in ("iter_1/responses", "iter_1/response_scores", "iter_1/preferences.parquet"):
        assert rows(tmp_path / "out", rel) == rows(baseline, rel), rel


CONSTANT = "def check(row):\n    return 1.0\n"


def test_a_judge_that_cannot_rank_stops_with_the_counts(baseline, tmp_path, monkeypatch):
    (tmp_path / "constant_checks.py").write_text(CONSTANT)
    monkeypatch.syspath_prepend(str(tmp_path))
    lines: list[str] = []
    with pytest.raises(DataError, match=r"12 prompts -> 0 pairs; not paired: 12 tie\. DPO has nothing to train on"):
        replay(baseline, tmp_path / "out", 1, overrides=["tracking.progress=false", "preferences.judge_kind=verifier",
                                                         "curate.verifier=constant_checks:check"], log=lines.append)
    assert "[replay] iteration 1: sampling and judging the replayed model's answers" in lines
    scores = read_table(tmp_path / "out" / "iter_1" / "response_scores")
    assert len(scores) == 24 and {s["value"] for s in scores} == {1.0}


def test_export_writes_the_pairs_with_a_card(baseline, tmp_path):
    path = export_preferences(baseline, 1, "jsonl", tmp_path / "e")
    exported = [json.loads(line) for line in path.read_text().splitlines()]
    saved = read_table(baseline / "iter_1" / "preferences.parquet")
    assert [e["chosen"] for e in exported] == [s["chosen"] for s in saved] and len(exported) > 0
    assert set(exported[0]) == {"prompt", "chosen", "rejected", "chosen_score", "rejected_score", "margin",
                                "prompt_id", "judge", "judge_kind", "generator"}
    card = (tmp_path / "e" / "README.md").read_text()
    counts = stages(baseline)["iter_1/preferences"]["stats"]
    for needle in ("Prompt source: `{\"bank\": \"curated\"",
                   "Sampler: `builtin:tiny-llama+iter_1/sft_model`, 2 answers",
                   "Judge: `builtin:tiny-llama+iter_1/sft_model` (additive, mode logits)",
                   '"pair": "best_vs_worst"', f"12 prompts, 24 answers (24 cut at the token limit), {counts['pairs']} "
                   f"pairs", "Review the user\u2019s question and the corresponding response"):
        assert needle in card, needle
