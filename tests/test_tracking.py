"""Tracking: a tiny run mirrored to an offline wandb run, read back from its `.wandb` files (history,
config, artifacts and their lineage), the TensorBoard mirror, and tracking off importing no wandb."""

import json
import os
import re
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

import pytest

from humpback.config import TrackingConfig, load_config, to_dict
from humpback.loop import open_run, run
from humpback.view.read import read_iteration, tracker_payload
from humpback.store import RunStore, read_table
from humpback.tracking import SCORE_BINS, open_tracker, resolve_mode
from tiny_runs import TINY_RUNS
from wandb_reader import read_wandb_run

ROOT = Path(__file__).parent.parent
TINY = ROOT / "recipes" / "tiny-cpu.yaml"
# A run of its own, not conftest's tiny_run: it logs to wandb (offline) and resumes into the same folder. The
# settings are TINY_RUNS["small"] (tests/tiny_runs.py): threshold 1 keeps every pair, so the curated sets (and
# their length histograms) are not empty.
FAST = [*TINY_RUNS["small"], "tracking.backend=wandb", "tracking.sample_pairs=4"]
FAKE_SECRET = "hf_fake_secret_value_0123456789"


@pytest.fixture(scope="module")
def wandb_run(tmp_path_factory):
    home = tmp_path_factory.mktemp("wandb-home")
    mp = pytest.MonkeyPatch()
    for var in [v for v in os.environ if v.startswith("WANDB_")]:
        mp.delenv(var)
    mp.setenv("WANDB_MODE", "offline")  # never the network
    mp.setenv("WANDB_DIR", str(home / "elsewhere"))  # the run folder must win
    for var, sub in (("WANDB_CACHE_DIR", "cache"), ("WANDB_DATA_DIR", "data"), ("WANDB_CONFIG_DIR", "config"),
                     ("WANDB_ARTIFACT_DIR", "artifacts")):
        mp.setenv(var, str(home / sub))
    mp.setenv("HF_TOKEN", FAKE_SECRET)
    run_dir = tmp_path_factory.mktemp("run") / "tiny"
    cfg = load_config(TINY, FAST)
    run(open_run(cfg, run_dir, log=lambda line: None))
    files = sorted(run_dir.glob("wandb/offline-run-*/run-*.wandb"))
    yield run_dir, cfg, files, home
    mp.undo()


def _runs(files):
    return [read_wandb_run(f) for f in files]


def _main(run_dir, files):
    run_id = json.loads((run_dir / "tracking.json").read_text())["wandb"]["run_id"]
    mains = [r for r in _runs(files) if r["run"]["id"] == run_id]
    assert len(mains) == 1 and mains[0]["run"]["job_type"] == "pipeline"
    return mains[0]


def test_mode_is_offline_without_an_api_key():
    assert resolve_mode("auto", {}) == "offline"
    assert resolve_mode("auto", {"WANDB_API_KEY": "k"}) == "online"
    assert resolve_mode("auto", {"WANDB_API_KEY": "k", "WANDB_MODE": "offline"}) == "offline"
    assert resolve_mode("online", {}) == "online"


def test_one_offline_wandb_run_in_the_run_folder_with_the_resolved_config(wandb_run):
    run_dir, cfg, files, home = wandb_run
    state = json.loads((run_dir / "tracking.json").read_text())["wandb"]
    assert state["mode"] == "offline"
    assert not (home / "elsewhere").exists() or not any((home / "elsewhere").rglob("*.wandb"))
    main = _main(run_dir, files)
    assert main["run"]["group"] == state["group"] and main["run"]["name"] == "tiny-cpu"
    resolved = to_dict(cfg)
    for key in ("seed", "corpus", "curate", "train", "tracking", "iterations", "base_model"):
        assert main["config"][key] == resolved[key], key
    # No secret reaches wandb: not the environment's token, not a secret-named recipe key.
    for f in run_dir.joinpath("wandb").rglob("*"):
        if f.is_file():
            assert FAKE_SECRET.encode() not in f.read_bytes(), f
    assert not [k for k in main["config"] if re.search(r"(^|_)(api_?key|secret|password)$", k)]


def test_history_has_every_iteration_with_its_figures(wandb_run):
    run_dir, cfg, files, _ = wandb_run
    main = _main(run_dir, files)
    rows = {r["iteration"]: r for r in main["history"] if "iter/candidates" in r}
    assert sorted(rows) == [1, 2]
    candidates = read_table(run_dir / "augment/candidates")
    funnel = json.loads((run_dir / "data/funnel.json").read_text())
    for k, row in rows.items():
        scores = read_table(run_dir / f"iter_{k}/scores")
        curated = read_table(run_dir / f"iter_{k}/curated.parquet")
        failures = sum(s["parse_status"] != "ok" for s in scores)
        assert row["iter/candidates"] == len(candidates) == row["iter/scored"]
        assert row["iter/curated"] == len(curated) > 0
        assert row["iter/acceptance_rate"] == pytest.approx(len(curated) / len(candidates))
        assert row["iter/parse_failure_rate"] == pytest.approx(failures / len(scores))
        assert (row["iter/funnel/documents"], row["iter/funnel/sections"], row["iter/funnel/segments"]) == (
            funnel["documents"], funnel["sections"], funnel["kept"])
        hist = row["iter/score_histogram"]
        assert hist["_type"] == "histogram" and hist["bins"] == SCORE_BINS
        assert hist["values"] == [sum(s["score"] == i and s["parse_status"] == "ok" for s in scores)
                                  for i in range(1, 6)]
        for i in range(1, 6):
            assert row[f"iter/score_count/{i}"] == hist["values"][i - 1]
        for name, field in (("instruction_chars", "instruction"), ("output_chars", "output")):
            assert row[f"iter/{name}"]["_type"] == "histogram"
            assert sum(row[f"iter/{name}"]["values"]) == len(curated)
            assert row[f"iter/{name}_median"] == pytest.approx(statistics.median(len(c[field]) for c in curated))
        # The table of sampled pairs: scores and judge text as saved.
        table_ref = row["iter/pairs"]
        assert table_ref["_type"] == "table-file"
        table_file = next(run_dir.glob(f"wandb/offline-run-*-{main['run']['id']}/files/{table_ref['path']}"))
        table = json.loads(table_file.read_text())
        assert ({"candidate_id", "accepted", "score", "expected_score", "instruction", "output", "judge"}
                <= set(table["columns"]))
        by_id = {s["candidate_id"]: s for s in scores}
        assert 0 < len(table["data"]) <= 4
        for values in table["data"]:
            pair = dict(zip(table["columns"], values))
            assert pair["score"] == by_id[pair["candidate_id"]]["score"]
            assert pair["judge"] == by_id[pair["candidate_id"]]["raw"]
    # Loss curves: ours per model against its step, and TRL's own reporting in the same run.
    manifest = json.loads((run_dir / "manifest.json").read_text())
    for model, stage in (("backward", "backward"), ("m0", "m0"), ("iter_1", "iter_1/train"),
                         ("iter_2", "iter_2/train")):
        curve = [(r["loss/step"], r[f"loss/{model}"]) for r in main["history"] if f"loss/{model}" in r]
        expected = [(p["step"], p["loss"]) for p in manifest["stages"][stage]["stats"]["losses"]]
        assert curve == [(s, pytest.approx(v)) for s, v in expected] and len(curve) == 2
    assert sum("train/loss" in r for r in main["history"]) >= 8  # 4 trainings x 2 logging steps
    assert any(r.get("report", {}).get("_type") == "html-file" for r in main["history"])


def test_metrics_jsonl_has_the_same_figures(wandb_run):
    run_dir, _, files, _ = wandb_run
    main = _main(run_dir, files)
    metrics = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert len(metrics) > 40
    for m in metrics:
        key = f"{m['stage']}/{m['name']}"
        logged = [(r.get("iteration"), r[key]) for r in main["history"] if key in r]
        wanted = sum(1 for x in metrics if f"{x['stage']}/{x['name']}" == key and x["iteration"] == m["iteration"]
                     and x["value"] == m["value"])
        assert sum(1 for it, v in logged if it == m["iteration"] and v == pytest.approx(m["value"])) == wanted, key


def test_artifacts_have_the_loops_lineage(wandb_run):
    run_dir, cfg, files, _ = wandb_run
    runs = _runs(files)
    main = _main(run_dir, files)
    assert all(r["run"]["group"] == main["run"]["group"] for r in runs)
    producer = {}
    for r in runs:
        for a in r["logged"]:
            if a["type"] in ("dataset", "model"):
                assert a["name"] not in producer, f"{a['name']} logged twice"
                producer[a["name"]] = (r, a)
    manifest = json.loads((run_dir / "manifest.json").read_text())
    outputs = {rel: h for s in manifest["stages"].values() for rel, h in s.get("outputs", {}).items()}
    for _, a in producer.values():
        assert a["metadata"]["sha256"] == outputs[a["metadata"]["path"]]

    def inputs_of(name):
        step, _ = producer[f"tiny-cpu-{name}"]
        for used in step["used"]:  # an input is the very version its producer logged (same digest)
            assert used["digest"] == producer[used["name"]][1]["digest"], used["name"]
        return sorted(u["name"].removeprefix("tiny-cpu-") for u in step["used"])

    for k, judge in ((1, "model-m0"), (2, "model-1")):
        assert inputs_of(f"curated-{k}") == sorted(["candidates", judge])
        assert producer[f"tiny-cpu-curated-{k}"][0]["run"]["job_type"] == "curate"
        assert inputs_of(f"mixture-{k}") == sorted(["seed", f"curated-{k}"])
        assert inputs_of(f"model-{k}") == [f"mixture-{k}"]
        assert producer[f"tiny-cpu-model-{k}"][1]["type"] == "model"
    assert inputs_of("candidates") == sorted(["segments", "model-backward"])
    assert inputs_of("model-m0") == ["mixture-m0"]


def test_tensorboard_mirror(wandb_run, tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run_dir = tmp_path / "copy"
    shutil.copytree(wandb_run[0], run_dir, ignore=shutil.ignore_patterns("wandb"))
    tracker = open_tracker(TrackingConfig(backend="tensorboard"), RunStore(run_dir, log=lambda line: None), "t",
                           {"a": 1})
    tracker.metric("score", "scored", 8, iteration=1)
    for k in (1, 2):
        tracker.log_iteration(k, *tracker_payload(read_iteration(run_dir, k), 4))
    tracker.log_losses("iter_1", [{"step": 1, "loss": 2.5}, {"step": 2, "loss": 2.0}])
    tracker.finish()
    events = EventAccumulator(str(run_dir / "tensorboard"), size_guidance={"histograms": 0, "scalars": 0}).Reload()
    curated = [len(read_table(run_dir / f"iter_{k}/curated.parquet")) for k in (1, 2)]
    assert [(e.step, e.value) for e in events.Scalars("iter/curated")] == [(1, curated[0]), (2, curated[1])]
    assert [(e.step, e.value) for e in events.Scalars("loss/iter_1")] == [(1, 2.5), (2, 2.0)]
    assert [e.value for e in events.Scalars("score/scored")] == [8]
    counts = events.Histograms("iter/score_histogram")[0].histogram_value.bucket
    scores = read_table(run_dir / "iter_1/scores")
    assert list(counts) == [sum(s["score"] == i for s in scores) for i in range(1, 6)]


def test_tracking_off_imports_no_wandb(tmp_path):
    code = (
        "import sys, json\n"
        "from humpback.config import load_config\n"
        "from humpback.loop import open_run, prepare\n"
        "from humpback.view.report import write_report\n"
        f"cfg = load_config({str(TINY)!r}, ['corpus.max_segments=4', 'tracking.progress=false'])\n"
        f"rt = open_run(cfg, {str(tmp_path / 'r')!r}, log=lambda line: None)\n"
        "prepare(rt); rt.metric('x', 'y', 1, iteration=1); rt.tracker.finish()\n"
        f"write_report({str(tmp_path / 'r')!r})\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] == 'wandb')))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "HUMPBACK_CACHE": os.environ["HUMPBACK_CACHE"]})
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.splitlines()[-1]) == []
    assert not (tmp_path / "r" / "wandb").exists() and (tmp_path / "r" / "report.html").exists()


def test_a_resumed_run_resumes_the_same_wandb_run_and_logs_nothing_twice(wandb_run):
    # Last in this file: it adds a resumed run to the module's run folder.
    run_dir, cfg, files, _ = wandb_run
    run_id = json.loads((run_dir / "tracking.json").read_text())["wandb"]["run_id"]
    run(open_run(cfg, run_dir, log=lambda line: None))
    after = sorted(run_dir.glob("wandb/offline-run-*/run-*.wandb"))
    new = [f for f in after if f not in files]
    assert len(new) == 1 and new[0].name == f"run-{run_id}.wandb"  # no step run was logged again
    # The report is the resumed run's last row: once it is in the file, every row logged before it is too.
    resumed = read_wandb_run(new[0], until=lambda r: any("report" in row for row in r["history"]))
    assert resumed["run"]["id"] == run_id
    assert not [r for r in resumed["history"] if any(k.startswith(("iter/", "loss/")) for k in r)]
    assert json.loads((run_dir / "tracking.json").read_text())["wandb"]["run_id"] == run_id
