"""Issue 11: a run folder whose records say what really happened (the selection rule, the model really
served), guarded against a second process and against another recipe, with attempts kept apart, files
shared by the umask, and errors that say what is wrong and where."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from humpback import layout
from humpback.config import load_config
from humpback.errors import ConfigError
from humpback.export import export
from humpback.loop import open_run, run
from humpback.run import recipe_differences
from humpback.scoring import describe_rule, selection_rule
from humpback.stages.curate import select_stage
from humpback.stages.prepare import seed_stage
from humpback.store import read_table, shard_file, write_json
from humpback.view.read import read_run
from humpback.view.report import write_report
from tiny_runs import TINY_RUNS

ROOT = Path(__file__).parent.parent
TINY = ROOT / "recipes" / "tiny-cpu.yaml"
QUIET = ["tracking.progress=false"]
# Runs of their own, not conftest's tiny_run: killed midway, fake servers, guards against a second recipe. The
# settings are TINY_RUNS["small"] (tests/tiny_runs.py), one iteration: 8 segments in two shards of 4.
FAST = [*TINY_RUNS["small"], "iterations=1"]


def _fake_pool(rt, scores: list[float]) -> None:
    """Candidates and iteration-1 scores written through the store, as the augment and score stages would."""
    def augment():
        rows = [{"candidate_id": f"c{i}", "segment_id": f"s{i}", "instruction": f"q{i}", "output": f"a{i}"}
                for i in range(len(scores))]
        rt.store.write_rows(shard_file(layout.CANDIDATES, 0), rows)

    def score():
        rows = [{"candidate_id": f"c{i}", "score": 3, "logits_score": 3, "expected_score": e, "parse_status": "ok",
                 "raw": "{}", "judge": "models/m0"} for i, e in enumerate(scores)]
        rt.store.write_rows(shard_file(layout.iteration(1).scores, 0), rows)
        return {"judge": "builtin:tiny-llama+models/m0", "scored": len(rows), "parse_failures": 0,
                "parse_failure_rate": 0.0, "histogram": {"1": 0, "2": 0, "3": len(rows), "4": 0, "5": 0, "none": 0}}

    for name, outputs, inputs, work in (("augment", [layout.CANDIDATES], [], augment),
                                        (layout.iteration(1).stage("score"), [layout.iteration(1).scores],
                                         [layout.CANDIDATES], score)):
        stage = rt.store.stage(name, {}, outputs, inputs=inputs)
        with stage.running():
            stats = work() or {}
        stage.finish(stats)


# --------------------------------------------------------------------------- provenance


def test_a_top_fraction_selection_is_stated_as_such(tmp_path):
    cfg = load_config(TINY, QUIET)  # the demo keeps the better half by expected score
    rt = open_run(cfg, tmp_path / "run", log=lambda _: None)
    seed_stage(rt)
    _fake_pool(rt, [3.1, 3.4, 3.2, 3.3])
    result = select_stage(rt, 1)
    assert result.stats["rule"] == {"select": "top_fraction", "score_field": "expected_score", "top_fraction": 0.5}
    assert result.stats["threshold"] is None
    assert [r["candidate_id"] for r in read_table(tmp_path / "run" / layout.iteration(1).curated)] == ["c1", "c3"]
    rt.close()

    card = (export(tmp_path / "run", 1, "jsonl", tmp_path / "out").parent / "README.md").read_text()
    assert "the best 50% of the pool by expected score were kept" in card
    assert "top 50% by expected score" in card
    assert "at least" not in card and "threshold 5" not in card
    figures = read_run(tmp_path / "run").iterations[0].figures
    assert figures["selection"] == "top 50% by expected score" and figures["threshold"] is None
    assert describe_rule(selection_rule(load_config(TINY, ["curate.select=threshold", "curate.threshold=4",
                                                           "curate.select_on=argmax"]).curate)) == \
        "pairs whose argmax score is at least 4 were kept"


def test_config_yaml_says_where_builtin_assets_were_built(tmp_path):
    rt = open_run(load_config(TINY, QUIET), tmp_path / "run", log=lambda _: None)
    head = (tmp_path / "run" / layout.CONFIG).read_text().split("\nname:")[0]
    assert f"# builtin:tiny-llama was built in {rt.sources.base_model}" in head
    assert f"cached under {os.environ['HUMPBACK_CACHE']}" in head
    assert load_config(tmp_path / "run" / layout.CONFIG) == rt.cfg  # still a recipe replay can read
    rt.close()


# --------------------------------------------------------------------------- the openai backend


def test_openai_run_serves_each_stage_its_own_adapter_and_records_the_name(tmp_path, tiny_model_dir):
    from lora_server import LoraServer

    run_dir = tmp_path / "run"
    server = LoraServer(str(tiny_model_dir), {"hb-backward": str(run_dir / layout.BACKWARD),
                                              "hb-m0": str(run_dir / layout.M0)})
    try:
        cfg = load_config(TINY, FAST + ["generation.backend=openai", f"generation.api_base={server.url}",
                                        "generation.concurrency=2", "eval.enabled=false",  # eval would serve base, M1
                                        "generation.served_models={backward: hb-backward, m0: hb-m0}"])
        run(open_run(cfg, run_dir, log=lambda _: None))
    finally:
        server.close()
    used = {r["model"] for r in server.requests if r["path"].endswith("/completions")}
    assert used == {"hb-backward", "hb-m0"}
    manifest = json.loads((run_dir / layout.MANIFEST).read_text())["stages"]
    assert manifest["augment"]["stats"]["served_by"] == [
        f"hb-backward@{server.url} (adapter {run_dir / layout.BACKWARD})"]
    assert manifest["iter_1/score"]["stats"]["served_by"] == [f"hb-m0@{server.url} (adapter {run_dir / layout.M0})"]
    # The rows keep the run's own name for the model; the stats say what served it.
    assert {c["generator"] for c in read_table(run_dir / layout.CANDIDATES)} == {"builtin:tiny-llama+models/backward"}


def test_one_served_model_for_every_stage_is_refused_or_loudly_allowed(tmp_path):
    base = FAST + ["generation.backend=openai", "generation.api_base=http://127.0.0.1:9/v1"]
    cfg = load_config(TINY, base + ["generation.served_model_name=one"])
    with pytest.raises(ConfigError, match=r"one served model would stand in for several models of the run "
                                          r"\('one' would serve backward, m0\)"):
        open_run(cfg, tmp_path / "a", log=lambda _: None)
    lines: list[str] = []
    rt = open_run(load_config(TINY, base + ["generation.served_model_name=one", "generation.share_served_model=true"]),
                  tmp_path / "b", log=lines.append)
    assert any(line.startswith("WARNING: one served model stands in") for line in lines)
    rt.close()
    with pytest.raises(ConfigError, match="'x' would serve backward, m0"):
        open_run(load_config(TINY, base + ["generation.served_models={backward: x, m0: x}"]), tmp_path / "c",
                 log=lambda _: None)
    # Runtime-loaded adapters get names of their own: nothing to refuse.
    open_run(load_config(TINY, base + ["generation.load_adapters=true"]), tmp_path / "d", log=lambda _: None).close()


def test_adapters_are_registered_at_run_time_under_their_hash(tmp_path, tiny_model_dir):
    from lora_server import LoraServer

    from humpback.generation import SamplingParams
    from humpback.stages.finetune import m0_stage

    server = LoraServer(str(tiny_model_dir), {})
    try:
        cfg = load_config(TINY, FAST + ["generation.backend=openai", f"generation.api_base={server.url}",
                                        "generation.load_adapters=true"])
        rt = open_run(cfg, tmp_path / "run", log=lambda _: None)
        seed_stage(rt)
        m0_stage(rt)
        model = rt.model(layout.M0)
        name = f"tiny-cpu-m0-{rt.store.output_hash(layout.M0)[:12]}"
        assert model.generator.generate(["hello"], SamplingParams(max_new_tokens=2)) is not None
        assert server.modules[name] == str(tmp_path / "run" / layout.M0)
        assert [r["model"] for r in server.requests if r["path"].endswith("/completions")] == [name]
        rt.model(layout.M0).generator  # registering again is fine: the server already has it
        assert sum(r["path"].endswith("/load_lora_adapter") for r in server.requests) == 2
        rt.close()
    finally:
        server.close()


# --------------------------------------------------------------------------- the guarded folder


def _start(run_dir: Path, log: Path, pause: str | None = None) -> subprocess.Popen:
    entry = [str(Path(__file__).parent / "paused_humpback.py"), pause] if pause else ["-m", "humpback"]
    return subprocess.Popen([sys.executable, *entry, "run", str(TINY), "--run-dir", str(run_dir), *FAST],
                            env={**os.environ, "PYTHONUNBUFFERED": "1"}, stdout=open(log, "w"),
                            stderr=subprocess.STDOUT)


def _wait_for(path: Path, proc: subprocess.Popen, limit: float = 900) -> None:
    deadline = time.time() + limit
    while not path.exists():
        assert proc.poll() is None, "the run ended first"
        assert time.time() < deadline, f"{path} did not appear"
        time.sleep(0.1)


def test_a_second_run_on_the_folder_stops_at_once_and_a_killed_runs_lock_is_taken_over(tmp_path):
    run_dir = tmp_path / "run"
    # killed during augmentation: it holds after its first shard until the kill
    first = _start(run_dir, tmp_path / "1.log", pause="augment")
    _wait_for(run_dir / layout.PROGRESS / "augment" / "part-00000.json", first)
    second = subprocess.run([sys.executable, "-m", "humpback", "run", str(TINY), "--run-dir", str(run_dir), *FAST],
                            capture_output=True, text=True, timeout=300)
    # it stopped at once: it did not wait for the first, which holds until it is killed
    assert second.returncode == 2 and first.poll() is None
    holder = f"pid {first.pid}, host {os.uname().nodename}, since "
    assert f"humpback: error: another humpback run holds {run_dir} ({holder}" in second.stderr
    first.send_signal(signal.SIGKILL)
    first.wait()

    third = subprocess.run([sys.executable, "-m", "humpback", "run", str(TINY), "--run-dir", str(run_dir), *FAST],
                           capture_output=True, text=True, timeout=600)
    assert third.returncode == 0, third.stderr[-2000:]
    assert f"[run] taking over the lock a killed run left (pid {first.pid}" in third.stdout
    assert "[augment] did not finish last time (attempt 1" in third.stdout
    for rel in (layout.CANDIDATES, layout.iteration(1).scores):
        ids = [r["candidate_id"] for r in read_table(run_dir / rel)]
        assert len(ids) == len(set(ids)) == 8  # nothing lost, nothing twice
    assert (run_dir / layout.RUN_LOCK).read_text() == ""  # released at the end
    attempts = json.loads((run_dir / layout.MANIFEST).read_text())["attempts"]
    assert [a["attempt"] for a in attempts] == [1, 2]  # the refused run never became an attempt


def test_another_recipe_is_refused_unless_overwrite(tmp_path):
    run_dir = tmp_path / "run"
    rt = open_run(load_config(TINY, QUIET), run_dir, log=lambda _: None)
    seed_stage(rt)
    rt.close()
    other = load_config(TINY, QUIET + ["base_model=some/other-model", "seed.max_examples=5"])
    with pytest.raises(ConfigError) as e:
        open_run(other, run_dir, log=lambda _: None)
    assert str(e.value) == (f"{run_dir} holds the run of another recipe (base_model: 'builtin:tiny-llama' -> "
                            f"'some/other-model'; seed.max_examples: None -> 5); use another --run-dir, or give "
                            f"--overwrite to delete that run and start afresh")
    # A changed downstream key is not another recipe: only what depends on it re-runs.
    open_run(load_config(TINY, QUIET + ["curate.top_fraction=0.25"]), run_dir, log=lambda _: None).close()
    lines: list[str] = []
    rt = open_run(other, run_dir, log=lines.append, overwrite=True)
    assert lines[0].startswith(f"[run] --overwrite: deleting the run of another recipe in {run_dir}")
    assert not (run_dir / layout.MANIFEST).exists()  # the old run is gone; the new one has written nothing yet
    assert not (run_dir / layout.SEED).exists()
    rt.close()
    assert recipe_differences({"seed": {"path": "a"}}, {"seed": {"path": "a", "new_key": 1}}) == []


def test_attempts_are_kept_apart_in_metrics_and_the_report(tmp_path):
    run_dir = tmp_path / "run"
    rt = open_run(load_config(TINY, QUIET), run_dir, log=lambda _: None)
    seed_stage(rt)
    rt.metric("train", "loss", 9.0, iteration=1)
    rt.metric("augment", "candidates", 40)
    rt.close()
    rt = open_run(load_config(TINY, QUIET), run_dir, log=lambda _: None)
    rt.metric("train", "loss", 2.0, iteration=1)  # the re-run stage's figure replaces the first attempt's
    rt.close()
    rows = [json.loads(line) for line in (run_dir / layout.METRICS).read_text().splitlines()]
    assert [(r["name"], r["value"], r["attempt"]) for r in rows] == [("loss", 9.0, 1), ("candidates", 40, 1),
                                                                     ("loss", 2.0, 2)]
    current = {(m["name"], m["value"]) for m in read_run(run_dir).metrics}
    assert current == {("loss", 2.0), ("candidates", 40)}  # a stage the second attempt skipped keeps its figure
    html = write_report(run_dir).read_text()
    assert "<td>train</td><td>loss</td><td>2</td>" in html and "<td>9</td>" not in html


def test_files_are_written_with_the_process_umask(tmp_path):
    old = os.umask(0o002)
    try:
        write_json(tmp_path / "a.json", {"x": 1})
        os.umask(0o022)
        write_json(tmp_path / "b.json", {"x": 1})
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "a.json").stat().st_mode) == 0o664
    assert stat.S_IMODE((tmp_path / "b.json").stat().st_mode) == 0o644


# --------------------------------------------------------------------------- a stage that crashed


def test_a_failed_stage_says_so_on_the_next_start(tmp_path):
    run_dir = tmp_path / "run"
    rt = open_run(load_config(TINY, QUIET), run_dir, log=lambda _: None)

    def boom():
        raise ValueError("the disk is full")

    with pytest.raises(ValueError):
        with rt.store.stage("seed", {}, [layout.SEED]).running():
            boom()
    entry = json.loads((run_dir / layout.MANIFEST).read_text())["stages"]["seed"]
    assert (entry["status"], entry["error"], entry["attempt"]) == ("failed", "ValueError: the disk is full", 1)
    rt.close()
    lines: list[str] = []
    rt = open_run(load_config(TINY, QUIET), run_dir, log=lines.append)
    assert any(line.startswith("[seed] failed last time: ValueError: the disk is full (attempt 1, started ")
               for line in lines)
    assert seed_stage(rt).reason == "failed last time: ValueError: the disk is full"
    rt.close()
