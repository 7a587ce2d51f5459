import json

import pytest

from humpback.errors import StoreError
from humpback.store import RunStore, atomic_path, read_table, write_table


def make_store(tmp_path, lines):
    return RunStore(tmp_path / "run", log=lines.append)


def plain(store, name, deps, outputs, work, **declared):
    """A plain stage written as the stages are (declare -> work -> finish); ``work()`` returns its stats."""
    stage = store.stage(name, deps, outputs, **declared)
    if not stage.runs:
        return stage.result()
    with stage.running():
        stats = work() or {}
    return stage.finish(stats)


def test_atomic_path_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "x.json"
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("crash")
    assert not target.exists() and list(tmp_path.iterdir()) == []


def test_table_round_trip_file_and_shard_folder(tmp_path):
    write_table(tmp_path / "a.parquet", [{"id": "1", "x": 1.5}])
    assert read_table(tmp_path / "a.parquet") == [{"id": "1", "x": 1.5}]
    shards = tmp_path / "shards"
    write_table(shards / "part-00001.parquet", [{"id": "2"}])
    write_table(shards / "part-00000.parquet", [{"id": "1"}])
    assert read_table(shards) == [{"id": "1"}, {"id": "2"}]
    import datasets

    assert datasets.load_dataset("parquet", data_files=str(shards / "*.parquet"), split="train")["id"] == ["1", "2"]


def test_stage_runs_once_then_skips_and_reruns_on_change(tmp_path):
    lines = []
    store = make_store(tmp_path, lines)
    calls = []

    def work(value):
        def fn():
            calls.append(value)
            store.write_rows("a/out.parquet", [{"v": value}])
            return {"n": value}
        return fn

    r1 = plain(store, "a", {"k": 1}, ["a/out.parquet"], work(1))
    assert r1.ran and r1.reason == "new" and r1.stats == {"n": 1}
    r2 = plain(RunStore(store.root, log=lines.append), "a", {"k": 1}, ["a/out.parquet"], work(2))
    assert not r2.ran and r2.stats == {"n": 1} and calls == [1]
    r3 = plain(store, "a", {"k": 2}, ["a/out.parquet"], work(3))
    assert r3.ran and r3.reason == "changed: k" and calls == [1, 3]
    r4 = plain(store, "a", {"k": 2}, ["a/out.parquet"], work(4), force=True)
    assert r4.reason == "forced"
    manifest = json.loads((store.root / "manifest.json").read_text())
    assert manifest["stages"]["a"]["status"] == "done" and "a/out.parquet" in manifest["stages"]["a"]["outputs"]
    assert manifest["packages"]["torch"]
    assert "[a] up to date, skipped" in lines and "[a] running (changed: k)" in lines


def test_changed_input_reruns_downstream_only(tmp_path):
    store = make_store(tmp_path, [])
    runs = []

    def up(v):
        def fn():
            runs.append("up")
            store.write_rows("up.parquet", [{"v": v}])
        return fn

    def down():
        runs.append("down")
        store.write_rows("down.parquet", [{"v": 0}])

    plain(store, "up", {}, ["up.parquet"], up(1))
    plain(store, "down", {}, ["down.parquet"], down, inputs=["up.parquet"])
    plain(store, "up", {}, ["up.parquet"], up(1))
    r = plain(store, "down", {}, ["down.parquet"], down, inputs=["up.parquet"])
    assert runs == ["up", "down"] and not r.ran
    plain(store, "up", {"v": 2}, ["up.parquet"], up(2))
    r = plain(store, "down", {}, ["down.parquet"], down, inputs=["up.parquet"])
    assert r.ran and r.reason == "changed: up.parquet" and runs == ["up", "down", "up", "down"]


def test_tampered_or_missing_output_is_redone(tmp_path):
    store = make_store(tmp_path, [])

    def fn():
        store.write_rows("o.parquet", [{"v": 1}])

    plain(store, "s", {}, ["o.parquet"], fn)
    (store.root / "o.parquet").write_bytes(b"garbage")
    assert plain(store, "s", {}, ["o.parquet"], fn).reason == "output o.parquet does not match its recorded hash"
    (store.root / "o.parquet").unlink()
    assert plain(store, "s", {}, ["o.parquet"], fn).reason == "output o.parquet is missing"


def test_unfinished_stage_is_rerun_and_missing_output_is_an_error(tmp_path):
    store = make_store(tmp_path, [])
    with pytest.raises(StoreError, match="stage s finished without writing o.parquet"):
        plain(store, "s", {}, ["o.parquet"], lambda: None)
    assert plain(store, "s", {}, [], lambda: None).reason == "did not finish last time"


def test_input_not_produced_is_an_error(tmp_path):
    store = make_store(tmp_path, [])
    with pytest.raises(StoreError, match="no finished stage has produced this file"):
        plain(store, "s", {}, [], lambda: None, inputs=["nope.parquet"])


def test_corrupt_manifest_is_a_clear_error(tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "manifest.json").write_text("{")
    with pytest.raises(StoreError, match="manifest.json: not valid JSON"):
        RunStore(tmp_path / "run")


def test_sharded_and_round_stages_open_and_finish_as_a_plain_stage_does(tmp_path):
    from humpback import layout

    lines = []
    store = make_store(tmp_path, lines)
    done = []

    def do_shard(s, start, end):
        done.append(s)
        store.write_rows(layout.shard_file("out", s), [{"i": i} for i in range(start, end)])
        return {"n": end - start}

    def sharded():
        return store.sharded_stage("sharded", {"k": 1}, ["out"], 2).run(
            5, do_shard, lambda shards: {"n": sum(s["n"] for s in shards)})

    first = sharded()
    assert first.ran and first.reason == "new" and first.stats == {"n": 5, "shards": 3} and done == [0, 1, 2]
    assert first.outputs == ("out",) and first.lineage[0].job == "sharded"
    assert [p.name for p in sorted((store.root / "out").iterdir())] == [
        "part-00000.parquet", "part-00001.parquet", "part-00002.parquet"]
    assert json.loads(store.path(layout.shard_marker("sharded", 2)).read_text())["stats"] == {"n": 1}
    again = sharded()
    assert not again.ran and again.reason == "up to date" and again.stats == first.stats and done == [0, 1, 2]

    rounds_done = []

    def do_round(r):
        rounds_done.append(r)
        store.write_rows(layout.shard_file("rounds", r), [{"r": r}])
        return {"r": r}

    def rounds():
        return store.round_stage("iter_1/rounds", {}, ["rounds"]).run(
            lambda r: None, do_round, lambda so_far: len(so_far) < 2, lambda so_far: {"last": so_far[-1]["r"]})

    made = rounds()
    assert made.ran and made.stats == {"last": 1, "rounds": 2} and rounds_done == [0, 1]
    assert store.path(layout.shard_marker("iter_1/rounds", 1)).is_file()
    assert layout.progress_dir("iter_1/rounds") == ".progress/iter_1_rounds"
    kept = rounds()
    assert not kept.ran and kept.reason == "up to date" and rounds_done == [0, 1]
    assert lines.count("[sharded] up to date, skipped") == 1
    assert lines.count("[iter_1/rounds] up to date, skipped") == 1


def test_store_modules_import_one_way_and_tiny_and_worlds_not_each_other():
    """Inside humpback/store/ no module imports (even inside a function) one that imports it back, and
    the built-in tiny assets and the controlled world share the cache module instead of importing each other."""
    import ast
    from pathlib import Path

    import humpback

    package = Path(humpback.__file__).parent

    def imported(path: Path, siblings: set[str]) -> set[str]:
        found = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 1:
                names = [node.module.split(".")[0]] if node.module else [a.name for a in node.names]
                found |= {n for n in names if n in siblings}
        return found

    store = package / "store"
    siblings = {p.stem for p in store.glob("*.py")} - {"__init__"}
    graph = {m: imported(store / f"{m}.py", siblings) for m in siblings}
    order: list[str] = []
    while len(order) < len(graph):  # peel off the modules whose imports are all placed
        ready = sorted(m for m in graph if m not in order and graph[m] <= set(order))
        assert ready, f"an import circle among {sorted(set(graph) - set(order))}: {graph}"
        order += ready
    assert "io" not in siblings  # a standard-library name

    def mentions(path: Path, name: str) -> bool:
        return any(isinstance(n, ast.ImportFrom) and (name in (n.module or "").split(".") or
                                                     any(a.name == name for a in n.names))
                   for n in ast.walk(ast.parse(path.read_text())))

    assert not mentions(package / "tiny.py", "worlds")
    assert not any(mentions(p, "tiny") for p in (package / "worlds").glob("*.py"))
