"""Issue 25: the sharded stages on a Ray cluster (``workers.engine: ray``) write what a local run writes.

One small local cluster (2 CPUs, 2 workers) serves the module; every run stops its own workers."""

import json
import os
import re
import shutil
import signal
import sys
from pathlib import Path

import pytest

from humpback import loop
from humpback.config import load_config
from humpback.errors import ConfigError
from humpback.stages.augment import augment_stage
from humpback.stages.finetune import backward_stage
from humpback.store import hash_file, shards
from tiny_runs import TINY_RUNS, recipe_of

ROOT = Path(__file__).parent.parent
TINY = ROOT / "recipes" / "tiny-cpu.yaml"
# 12 segments in shards of 4: three augment shards, two in flight at once on the two workers.
FAST = ["corpus.max_segments=12", "shard_size=4", "train.max_steps=2", "train.max_length=256",
        "augment.max_new_tokens=12", "generation.batch_size=4", "tracking.progress=false", "eval.enabled=false"]
RAY = ["workers.engine=ray", "workers.count=2"]
OUTPUTS = ["augment/candidates", "augment/rejected"]


def files(run_dir: Path) -> dict:
    """Every augment shard file by path, with its checksum."""
    return {str(p.relative_to(run_dir)): hash_file(p) for out in OUTPUTS for p in sorted((run_dir / out).glob("*"))}


def augment(run_dir: Path, extra=(), log=None, force=()):
    rt = loop.open_run(load_config(TINY, [*FAST, *extra]), run_dir, log=log or (lambda _: None), force=force)
    try:
        loop.prepare(rt)
        backward_stage(rt)
        return augment_stage(rt), rt
    finally:
        rt.close()


@pytest.fixture(scope="module")
def cluster():
    ray = pytest.importorskip("ray")
    from humpback.config import WorkersConfig
    from humpback.generation.remote import RayEngine

    engine = RayEngine(WorkersConfig(engine="ray", local_cpus=2), log=lambda _: None)
    yield ray
    engine.close()
    assert not ray.is_initialized()


@pytest.fixture(scope="module")
def local_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("local") / "run"
    augment(run_dir)
    return run_dir


def ray_copy(local_run: Path, tmp_path: Path) -> Path:
    """The local run's folder with its augment stage to do again (data and backward model kept)."""
    run_dir = tmp_path / "run"
    shutil.copytree(local_run, run_dir)
    for out in OUTPUTS:
        shutil.rmtree(run_dir / out)
    shutil.rmtree(run_dir / ".progress" / "augment")
    return run_dir


def test_ray_augment_writes_the_local_runs_shards(cluster, local_run, tmp_path):
    run_dir = ray_copy(local_run, tmp_path)
    lines = []
    result, _ = augment(run_dir, RAY, lines.append)
    assert result.ran and result.stats["segments"] == 12
    assert files(run_dir) == files(local_run) and len(files(run_dir)) == 6
    markers = lambda d: {p.name: json.loads(p.read_text())["files"] for p in (d / ".progress" / "augment").glob("*")}  # noqa: E731
    assert markers(run_dir) == markers(local_run)
    assert "[backward] up to date, skipped" in lines
    # the stage's statistics (token counts per shard included) are the local run's too
    local = json.loads((local_run / "manifest.json").read_text())["stages"]["augment"]["stats"]
    assert result.stats["usage"] == local["usage"] and result.stats["candidates"] == local["candidates"]


def test_models_reach_the_workers_through_the_model_store(cluster, local_run, tmp_path):
    """workers.model_store: the driver uploads the base model and the backward adapter once, each worker
    loads its own downloaded copies, and the shards (and the stage's key) are the local run's."""
    from humpback.cache import cache_root

    run_dir = ray_copy(local_run, tmp_path)
    store, lines = tmp_path / "store", []
    result, _ = augment(run_dir, [*RAY, f"workers.model_store=file://{store}"], lines.append)
    assert result.ran and files(run_dir) == files(local_run)
    key = lambda d: json.loads((d / "manifest.json").read_text())["stages"]["augment"]["key"]  # noqa: E731
    assert key(run_dir) == key(local_run)
    published = sorted(p.name for p in store.iterdir())
    uploads = [line for line in lines if line.startswith("[ray] model store: uploaded ")]
    assert len(published) == len(uploads) == 2 and published[0].startswith("backward-"), (published, lines)
    assert uploads[1].startswith(f"[ray] model store: uploaded {run_dir.resolve() / 'models' / 'backward'} to ")
    assert {p.name for p in (cache_root() / "ray-models").iterdir() if not p.name.startswith(".")} >= set(published)


def test_a_killed_worker_is_restarted_and_its_shard_redone(cluster, local_run, tmp_path, monkeypatch):
    """Both workers are SIGKILLed while shards are in flight: Ray restarts them, their calls run again."""
    run_dir = ray_copy(local_run, tmp_path)
    killed = []

    def kill_workers(stage, shard):
        if not killed:
            killed.extend(current["rt"].engine.pids())
            for pid in killed:
                os.kill(pid, signal.SIGKILL)

    current = {}
    real_open = loop.open_run
    monkeypatch.setattr(loop, "open_run", lambda *a, **k: current.setdefault("rt", real_open(*a, **k)))
    monkeypatch.setattr(shards, "after_shard", [kill_workers])
    result, rt = augment(run_dir, RAY)
    assert len(killed) == 2 and result.stats["segments"] == 12
    assert files(run_dir) == files(local_run)


def test_the_local_clusters_workers_run_at_the_drivers_priority(cluster, local_run, tmp_path, monkeypatch):
    """Ray adds 15 to its workers' niceness; a local cluster's workers do the run's work, so humpback starts
    them at the driver's own niceness (at +15, two busy processes beside the run starved it to a crawl).
    Compared with this process's niceness, not 0: under `nice make test` the driver and workers share it."""
    run_dir = ray_copy(local_run, tmp_path)
    current, niceness = {}, []
    real_open = loop.open_run
    monkeypatch.setattr(loop, "open_run", lambda *a, **k: current.setdefault("rt", real_open(*a, **k)))
    monkeypatch.setattr(shards, "after_shard", [lambda stage, shard: niceness.extend(
        os.getpriority(os.PRIO_PROCESS, pid) for pid in current["rt"].engine.pids())])
    augment(run_dir, RAY)
    assert niceness and set(niceness) == {os.getpriority(os.PRIO_PROCESS, 0)}
    assert "RAY_worker_niceness" not in os.environ  # set only while the cluster started


def test_a_run_whose_worker_dies_for_good_resumes_from_its_done_shards(cluster, local_run, tmp_path, monkeypatch):
    """No retries: the killed worker fails the stage; the next run keeps the shards written and redoes the rest."""
    run_dir = ray_copy(local_run, tmp_path)
    current = {}
    real_open = loop.open_run
    monkeypatch.setattr(loop, "open_run", lambda *a, **k: current.setdefault("rt", real_open(*a, **k)))

    def kill_one(stage, shard):
        if not current.get("killed"):
            current["killed"] = True
            os.kill(current["rt"].engine.pids()[0], signal.SIGKILL)

    monkeypatch.setattr(shards, "after_shard", [kill_one])
    with pytest.raises(Exception, match="Ray worker .* died"):
        augment(run_dir, [*RAY, "workers.max_retries=0"])
    done = len(list((run_dir / ".progress" / "augment").glob("*.json")))
    assert 1 <= done < 3
    monkeypatch.setattr(shards, "after_shard", [])
    monkeypatch.setattr(loop, "open_run", real_open)
    lines = []
    augment(run_dir, RAY, lines.append)
    said = " ".join(" ".join(lines).split())
    assert re.search(rf"\[augment\] running \(failed last time: WorkerError: a Ray worker holding \S+ died after "
                     rf"being restarted 0 times .*\); reads [^;]+; {done} of 3 shards done", said), said
    assert files(run_dir) == files(local_run)


def test_a_worker_that_cannot_read_the_model_names_the_path(cluster, tmp_path):
    from humpback.config import GenerationConfig, WorkersConfig
    from humpback.generation.base import SamplingParams
    from humpback.generation.remote import ModelSpec, RayEngine, WorkerError

    missing = tmp_path / "models" / "backward"
    spec = ModelSpec(GenerationConfig(), str(tmp_path / "base"), str(missing), None, 0)
    engine = RayEngine(WorkersConfig(engine="ray", count=1), log=lambda _: None)
    try:
        with pytest.raises(WorkerError, match=f"cannot read {re.escape(str(tmp_path / 'base'))}: no such file"):
            engine.generator(spec).generate(["hi"], SamplingParams())
    finally:
        engine.close()


def test_without_ray_the_key_says_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray raises ImportError
    cfg = load_config(TINY, [*FAST, *RAY])
    with pytest.raises(ConfigError) as e:
        loop.open_run(cfg, tmp_path / "run", log=lambda _: None)
    assert str(e.value) == "workers.engine 'ray' needs Ray: pip install 'humpback[ray]' (or: pip install 'ray>=2.40')"
    assert not (tmp_path / "run").exists()


def test_the_workers_keys_are_checked():
    with pytest.raises(ConfigError, match="'workers.address' is only used by workers.engine ray"):
        load_config(TINY, ["workers.address=auto"])
    with pytest.raises(ConfigError, match="workers.engine 'ray' runs a model in each Ray worker"):
        load_config(TINY, [*RAY, "generation.backend=openai", "generation.api_base=http://127.0.0.1:8000/v1"])
    with pytest.raises(ConfigError, match="'workers.count' must be > 0"):
        load_config(TINY, [*RAY, "workers.count=0"])
    with pytest.raises(ConfigError, match="command line.*'workers.engine'"):
        load_config(TINY, ["workers.engine=dask"])


@pytest.mark.slow  # two whole tiny runs (every generating, scoring and evaluation stage): about 3 min on 2 cores
def test_the_whole_tiny_run_on_ray_writes_the_local_runs_files(cluster, tmp_path):
    """Augment, both scoring passes, the evaluation's answers and judgements: every shard file the same."""
    full = [o for o in FAST if o != "eval.enabled=false"]

    def whole(run_dir, extra):
        loop.run(loop.open_run(load_config(TINY, [*full, *extra]), run_dir, log=lambda _: None))
        return {str(p.relative_to(run_dir)): hash_file(p) for p in sorted(run_dir.rglob("part-*.parquet"))}

    local, on_ray = whole(tmp_path / "local", []), whole(tmp_path / "ray", RAY)
    assert {Path(p).parts[0] for p in local} >= {"augment", "iter_1", "iter_2", "eval"}, sorted(local)
    assert on_ray == local


# Self-Instruct's generation steps (seed tasks' rounds, instances) and the preference step's answers and
# their judging (train.objective dpo) call the same generators: on Ray they must write the local run's files.
SELF_INSTRUCT = (ROOT / "recipes" / recipe_of("self-instruct"), [*TINY_RUNS["self-instruct"], "eval.enabled=false"])
DPO = (TINY, [*TINY_RUNS["dpo"], "iterations=1"])


@pytest.mark.slow  # two whole runs per recipe: about 2-3 min each on 2 cores
@pytest.mark.parametrize("recipe, overrides", [SELF_INSTRUCT, DPO], ids=["self-instruct", "dpo"])
def test_self_instruct_and_preference_runs_on_ray_write_the_local_runs_files(cluster, tmp_path, recipe, overrides):
    def whole(run_dir, extra):
        loop.run(loop.open_run(load_config(recipe, [*overrides, *extra]), run_dir, log=lambda _: None))
        keys = {name: entry["key"] for name, entry in json.loads((run_dir / "manifest.json").read_text())["stages"]
                .items()}
        return keys, {str(p.relative_to(run_dir)): hash_file(p) for p in sorted(run_dir.rglob("*.parquet"))}

    local, on_ray = whole(tmp_path / "local", []), whole(tmp_path / "ray", RAY)
    stages = set(local[0])
    assert stages >= ({"seed_tasks", "tasks", "augment"} if recipe != TINY else {"iter_1/responses", "iter_1/dpo"}), \
        sorted(stages)
    assert on_ray == local
