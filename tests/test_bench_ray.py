"""scripts/bench_ray.py: its command line and recipe overrides (fast), and end to end in its reduced mode on
the tiny model and a local Ray cluster (slow): the report has the harness's shape (settings with the
machine, the one measurement with its memory) and every figure the script promises, the three arms ran
once each and their shard files are the same (the timings' values are not checked: they measure the
machine)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "bench_ray.py"
INTERVALS = ("ratio_ray_over_local", "overhead_ms_per_row", "ratio_ray_over_local_1_thread",
             "overhead_ms_per_row_vs_1_thread", "local_ms_per_row", "local_1_thread_ms_per_row", "ray_ms_per_row")
RESULT_KEYS = {"what", "segments", "shard_size", "shards", "max_new_tokens", "batch_size", "ray_workers",
               "ray_cluster_cpus", "repeats", "ray_version", "torch_threads_local", "local_seconds",
               "local_1_thread_seconds", "ray_seconds", "ray_cluster_start_seconds", "identical_shard_files",
               "rss_before_mb", "peak_rss_mb", "cuda_max_allocated_mb", *INTERVALS}


def _script():
    sys.path.insert(0, str(REPO / "scripts"))
    try:
        import bench_ray
    finally:
        sys.path.remove(str(REPO / "scripts"))
    return bench_ray


def test_script_opens_with_its_command():
    assert SCRIPT.read_text().splitlines()[1] == "# python scripts/bench_ray.py --output runs/benchmark"


def test_the_recipe_and_its_overrides_come_after_the_counts():
    bench_ray = _script()
    args = bench_ray.parse_args(["--reduced", "--recipe", "r.yaml", "shard_size=2", "--workers", "3"])
    assert (args.segments, args.shard_size, args.workers, args.reps, args.isolate) == (8, 4, 3, 1, False)
    spec = {**bench_ray.harness.recipe_settings(args), **{k: getattr(args, k) for k in bench_ray.FULL}}
    assert bench_ray.recipe(spec) == "r.yaml"
    assert bench_ray.overrides(spec)[:2] == ["corpus.max_segments=8", "shard_size=4"]
    assert bench_ray.overrides(spec)[-1] == "shard_size=2"  # the command line's own override wins
    assert bench_ray.recipe({"recipe": None}) == str(REPO / "recipes" / "tiny-cpu.yaml")
    assert bench_ray.parse_args([]).isolate is True and bench_ray.parse_args(["--repeats", "5"]).reps == 5


def test_bad_command_lines_are_one_line_errors(tmp_path):
    proc = subprocess.run([sys.executable, str(SCRIPT), "--only", "nope", "--output", str(tmp_path)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "unknown group(s) ['nope']" in proc.stderr
    recipe = str(REPO / "recipes" / "tiny-cpu.yaml")
    proc = subprocess.run([sys.executable, str(SCRIPT), "--reduced", "--recipe", recipe, "no_such_key=1", "--output",
                           str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and proc.stderr.startswith("error: ") and "Traceback" not in proc.stderr


@pytest.mark.slow  # prepares a run (segments, a backward model), starts a Ray cluster, runs augment 3 times:
# about 1.5 minutes on 2 busy cores
def test_reduced_run_reports_every_figure(tmp_path, tiny_model_dir, docs_corpus_path, docs_seed_path):
    proc = subprocess.run([sys.executable, str(SCRIPT), "--reduced", "--output", str(tmp_path)], capture_output=True,
                          text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads((tmp_path / "bench_ray.json").read_text())
    assert set(report) == {"settings", "results"}
    s = report["settings"]
    assert ({k: s[k] for k in ("segments", "shard_size", "max_new_tokens", "workers", "cpus", "reps")}
            == {"segments": 8, "shard_size": 4, "max_new_tokens": 4, "workers": 2, "cpus": 2, "reps": 1})
    assert (s["recipe"], s["reduced"], s["isolated"]) == (None, True, False)
    assert {"python", "cpu", "packages"} <= set(s["machine"])
    assert set(report["results"]) == {"augment"} and set(report["results"]["augment"]) == {"ray-vs-local"}
    r = report["results"]["augment"]["ray-vs-local"]
    assert set(r) == RESULT_KEYS
    assert (r["segments"], r["shards"], r["repeats"], r["identical_shard_files"]) == (8, 2, 1, True)
    assert [len(r[k]) for k in ("local_seconds", "local_1_thread_seconds", "ray_seconds")] == [1, 1, 1]
    for key in INTERVALS:
        assert set(r[key]) >= {"mean", "ci"} and r[key]["ci"] == [None, None], key  # one repeat: no interval
    md = (tmp_path / "bench_ray.md").read_text()
    assert "| augment | ray-vs-local |" in md and "identical shard files: yes." in md
    for arm in ("local", "local-1", "ray"):
        assert f"\n| {arm} | " in md
