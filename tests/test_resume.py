"""Issue 3: crash safety, resume, parallel workers, replay and export, on the tiny recipe."""

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

from humpback.config import load_config
from humpback.export import export
from humpback.loop import open_run, run
from humpback.replay import replay
from humpback.store import hash_json, read_table
from tiny_runs import TINY_RUNS

ROOT = Path(__file__).parent.parent
TINY = ROOT / "recipes" / "tiny-cpu.yaml"
# conftest's shared run "sharded" (tests/tiny_runs.py): 12 segments in shards of 4, three shards per generation
# stage; selection by threshold on the argmax score, which replay changes (the demo keeps a top fraction).
FAST = TINY_RUNS["sharded"]
TABLES = ["data/seed.parquet", "data/segments.parquet", "augment/candidates", "augment/rejected",
          "iter_1/scores", "iter_1/curated.parquet", "iter_1/train.parquet",
          "iter_2/scores", "iter_2/curated.parquet", "iter_2/train.parquet"]


def contents(run_dir: Path) -> dict:
    """Each table as a sorted list of row hashes (order-independent), after checking for duplicates."""
    out = {}
    for rel in TABLES:
        rows = [hash_json(r) for r in read_table(run_dir / rel)]
        assert len(rows) == len(set(rows)), f"duplicate rows in {rel}"
        out[rel] = sorted(rows)
    return out


@pytest.fixture(scope="module")
def baseline(tiny_run):
    """The uninterrupted run every test here compares with or reads (never changes: a test copies it first)."""
    return tiny_run("sharded").run_dir


def start(run_dir: Path, log: Path, *extra: str, pause: str | None = None) -> subprocess.Popen:
    env = {**os.environ, "HUMPBACK_POLL_SECONDS": "0.2", "PYTHONUNBUFFERED": "1"}
    # With a pause (stage names), the runner holds after the first shard of those stages until the test kills it.
    entry = [str(Path(__file__).parent / "paused_humpback.py"), pause] if pause else ["-m", "humpback"]
    cmd = [sys.executable, *entry, "run", str(TINY), "--run-dir", str(run_dir), *FAST, *extra]
    return subprocess.Popen(cmd, env=env, stdout=open(log, "w"), stderr=subprocess.STDOUT)


def kill_after_first_shard(proc: subprocess.Popen, progress: Path, limit: float = 900) -> int:
    deadline = time.time() + limit
    while time.time() < deadline:
        done = list(progress.glob("part-*.json")) if progress.exists() else []
        if done:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            return len(done)
        assert proc.poll() is None, "the run ended before it could be killed"
        time.sleep(0.05)
    proc.kill()
    raise AssertionError("no shard finished in time")


def stage_status(run_dir: Path, name: str) -> str | None:
    entry = json.loads((run_dir / "manifest.json").read_text())["stages"].get(name)
    return entry and entry["status"]


def test_sigkill_during_augmentation_and_curation_then_resume(baseline, tmp_path):
    run_dir = tmp_path / "run"
    # 1. killed during augmentation, after its first shard (the runner holds there until killed; the
    # evaluation's shards, which would come first, are left out: test_evaluation kills a judging)
    no_eval = "eval.enabled=false"
    proc = start(run_dir, tmp_path / "1.log", no_eval, pause="augment")
    assert kill_after_first_shard(proc, run_dir / ".progress" / "augment") < 3
    assert stage_status(run_dir, "augment") == "running"
    # 2. resumed, then killed during the first curation
    proc = start(run_dir, tmp_path / "2.log", no_eval, pause="iter_1/score")
    assert kill_after_first_shard(proc, run_dir / ".progress" / "iter_1_score") < 3
    log2 = " ".join((tmp_path / "2.log").read_text().split())  # the console wraps long lines off a terminal
    kept = re.search(r"\[augment\] running \(did not finish last time\); reads [^;]+; (\d) of 3 shards done", log2)
    assert kept and int(kept.group(1)) >= 1, log2
    assert stage_status(run_dir, "augment") == "done" and stage_status(run_dir, "iter_1/score") == "running"
    # 3. resumed to the end
    proc = start(run_dir, tmp_path / "3.log", no_eval)
    assert proc.wait(timeout=600) == 0, (tmp_path / "3.log").read_text()
    log3 = " ".join((tmp_path / "3.log").read_text().split())
    assert "[augment] up to date, skipped" in log3 and "[m0] up to date, skipped" in log3
    assert re.search(r"\[iter_1/score\] running \(did not finish last time\); reads [^;]+; [12] of 3 shards done",
                     log3), log3
    # the same records as an uninterrupted run: none lost, none duplicated
    assert contents(run_dir) == contents(baseline)


def test_truncated_shard_is_detected_and_redone(baseline, tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(baseline, run_dir)
    shard = run_dir / "augment" / "candidates" / "part-00001.parquet"
    shard.write_bytes(shard.read_bytes()[: shard.stat().st_size // 2])
    lines: list[str] = []
    run(open_run(load_config(TINY, FAST), run_dir, log=lines.append))
    assert ("[augment] running (output augment/candidates does not match its recorded hash); "
            "reads data/segments.parquet, models/backward; 2 of 3 shards done") in lines
    assert "[iter_1/score] up to date, skipped" in lines  # the redone shard has the same content
    assert contents(run_dir) == contents(baseline)


def test_two_workers_produce_the_same_result_as_one(baseline, tmp_path):
    run_dir = tmp_path / "run"
    procs = [start(run_dir, tmp_path / f"w{i}.log", "--num-workers", "2", "--worker-index", str(i)) for i in (0, 1)]
    for i, p in enumerate(procs):
        assert p.wait(timeout=600) == 0, (tmp_path / f"w{i}.log").read_text()
    assert contents(run_dir) == contents(baseline)
    # Training is worker 0's alone: worker 1 waited for it, or found it done, however the two ran.
    log1 = (tmp_path / "w1.log").read_text()
    stages = json.loads((run_dir / "manifest.json").read_text())["stages"]
    trainings = ["backward", "m0", "iter_1/train", "iter_2/train"]
    assert {stages[name]["worker"] for name in trainings} == {0}
    assert not [name for name in trainings if f"[{name}] running" in log1], log1
    workers = {p.name: json.loads(p.read_text()) for p in (run_dir / ".progress" / "augment").glob("*.json")}
    assert len(workers) == 3


def test_a_worker_announces_once_that_it_waits():
    from humpback.store.workers import wait_until

    answers, said = iter([None, None, {"status": "done"}]), []
    assert wait_until(lambda: next(answers), lambda: said.append("waiting for worker 0"), 0) == {"status": "done"}
    assert said == ["waiting for worker 0"]
    assert wait_until(lambda: 1, lambda: said.append("again"), 0) == 1 and said == ["waiting for worker 0"]


def test_replay_iteration_2_trains_on_the_saved_mixture(baseline, tmp_path):
    out = tmp_path / "replay"
    result = replay(baseline, out, 2, overrides=["tracking.progress=false", "train.lora_r=4"], log=lambda _: None)
    recorded = json.loads((baseline / "manifest.json").read_text())["stages"]["iter_2/train"]["outputs"]
    assert result["mixture_sha256"] == recorded["iter_2/train.parquet"]
    assert (out / "iter_2" / "model" / "adapter_model.safetensors").exists()
    stages = json.loads((out / "manifest.json").read_text())["stages"]
    assert set(stages) == {"import/data/heldout.parquet", "import/iter_2/train.parquet",
                           "iter_2/train"}  # nothing generated
    assert json.loads((out / "iter_2" / "model" / "adapter_config.json").read_text())["r"] == 4


def test_replay_refuses_a_tampered_mixture(baseline, tmp_path):
    src = tmp_path / "src"
    shutil.copytree(baseline, src)
    (src / "iter_2" / "train.parquet").write_bytes(b"not the saved mixture")
    from humpback.errors import StoreError

    with pytest.raises(StoreError, match="does not match the hash its manifest recorded"):
        replay(src, tmp_path / "out", 2, log=lambda _: None)


def test_replay_reselects_from_saved_scores(baseline, tmp_path):
    scores = [s["score"] for s in read_table(baseline / "iter_1" / "scores")]
    threshold = 1 if min(scores) < 3 else 5
    out = tmp_path / "a"
    replay(baseline, out, 1, threshold=threshold, overrides=["tracking.progress=false"], log=lambda _: None)
    curated = read_table(out / "iter_1" / "curated.parquet")
    assert len(curated) == sum(s >= threshold for s in scores)
    stages = json.loads((out / "manifest.json").read_text())["stages"]
    assert not any(name in stages for name in ("augment", "backward", "m0", "iter_1/score"))
    stats = json.loads((out / "iter_1" / "stats.json").read_text())  # the replayed iteration's record
    assert stats["curated"] == len(curated) and stats["rule"]["threshold"] == threshold
    assert stats["rule"]["select"] == "threshold"


@pytest.mark.parametrize("fmt", ["parquet", "jsonl", "alpaca", "messages"])
def test_export_formats_with_provenance_card(baseline, tmp_path, fmt):
    path = export(baseline, 1, fmt, tmp_path / fmt)
    curated = read_table(baseline / "iter_1" / "curated.parquet")
    if fmt == "parquet":
        rows = read_table(path)
    elif fmt == "alpaca":
        rows = json.loads(path.read_text())
    else:
        rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert len(rows) == len(curated)
    first = rows[0] if rows else None
    if first is not None:
        if fmt == "messages":
            assert first["messages"][0] == {"role": "system", "content": "Answer with knowledge from web search."}
            assert first["messages"][1]["content"] == curated[0]["instruction"]
        elif fmt == "alpaca":
            assert first == {"instruction": curated[0]["instruction"], "input": "", "output": curated[0]["output"]}
        else:
            assert first["instruction"] == curated[0]["instruction"] and first["score"] == curated[0]["score"]
    card = (tmp_path / fmt / "README.md").read_text()
    for needle in ("Base model: `builtin:tiny-llama`", "Seed data: `builtin:python-docs-seed`",
                   "Unlabelled text: `builtin:python-docs`", "Filter funnel:", "threshold 3", "Score histogram: 1:",
                   "Write the most likely question", "5-point scale", '"torch":'):
        assert needle in card, needle


def test_export_push_to_hub_uploads_the_folder(baseline, tmp_path, monkeypatch):
    calls = []

    class FakeApi:
        def create_repo(self, repo_id, **kw):
            calls.append(("create", repo_id, kw["repo_type"], kw["private"]))

        def upload_folder(self, folder_path, repo_id, **kw):
            calls.append(("upload", repo_id, sorted(p.name for p in Path(folder_path).iterdir())))

    import huggingface_hub

    monkeypatch.setattr(huggingface_hub, "HfApi", FakeApi)
    export(baseline, 2, "jsonl", tmp_path / "e", push_to_hub="me/corpus")
    assert calls == [("create", "me/corpus", "dataset", True), ("upload", "me/corpus", ["README.md", "train.jsonl"])]


def test_replay_rescores_the_saved_pool_with_another_judge(baseline, tmp_path, tiny_model_dir):
    out = tmp_path / "judge"
    result = replay(baseline, out, 1, judge=str(tiny_model_dir), overrides=["tracking.progress=false"],
                    log=lambda _: None)
    scores = read_table(out / "iter_1" / "scores")
    candidates = read_table(baseline / "augment" / "candidates")
    assert sorted(s["candidate_id"] for s in scores) == sorted(c["candidate_id"] for c in candidates)
    assert {s["judge"] for s in scores} == {str(tiny_model_dir)}
    assert scores != read_table(baseline / "iter_1" / "scores")
    stages = json.loads((out / "manifest.json").read_text())["stages"]
    assert "augment" not in stages and stages["iter_1/score"]["status"] == "done"
    assert (out / "iter_1" / "model" / "adapter_model.safetensors").exists() and result["iteration"] == 1


def test_the_card_says_what_every_kind_of_judge_did():
    import typing

    from humpback.config import CurateConfig
    from humpback.export import JUDGED

    kinds = typing.get_args(typing.get_type_hints(CurateConfig)["judge_kind"])
    assert set(JUDGED) == set(kinds) and "5-point" in JUDGED["rating"] and "likelihood" in JUDGED["likelihood"]
