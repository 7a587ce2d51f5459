#!/usr/bin/env python
# python scripts/bench_ray.py --output runs/benchmark
"""The augment stage on a local Ray cluster of CPU workers against the single-process run (issue 25).

    python scripts/bench_ray.py --output runs/benchmark
    python scripts/bench_ray.py --segments 24 --reps 2 --output /tmp/bench-ray         (a quick look)
    python scripts/bench_ray.py --reduced --output /tmp/bench                          (the test suite's mode)

One run folder of the recipe (``--recipe RECIPE [key=value ...]``, default ``recipes/tiny-cpu.yaml``, with
the counts below as overrides before the recipe's own) is prepared once (segments, backward model); then
the augment stage runs ``--reps`` times each way, alternating, on copies of it:
- local: ``workers.engine: local``, one process (torch's threads over every core);
- local-1: the same with one torch thread (``torch.set_num_threads(1)``), as each Ray worker has: it
  tells Ray's own cost apart from what torch's threading costs or gains on this machine;
- ray: ``workers.engine: ray`` on a local cluster of ``--cpus`` CPUs with ``--workers`` workers (one CPU
  and one torch thread each), started once for all repeats, so the figure is the stage's own: the
  workers load the model, then take the shards.
Every repeat's shard files are checked against the first local run's (same checksums). Written: each
repeat's wall-clock seconds, the ratios ray / local and ray / local-1 per repeat with a Student t
interval over the repeats, the overhead per row ((ray - local) / rows, and against local-1, same
interval; it includes the workers' model loads), and the cluster's start time, paid once per run.
The machine is shared: wall-clock time is what a user waits for, and the pairs are interleaved so that
another job's load falls on both arms alike. The three arms are one measurement (``augment/ray-vs-local``),
run in its own process (``--no-isolate`` keeps it in this one); its peak memory is the driver's (the Ray
workers are processes of their own). Writes OUTPUT/bench_ray.json and OUTPUT/bench_ray.md; the exit status
is 1 when a run's shard files differ.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import harness

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_RECIPE = str(ROOT / "recipes" / "tiny-cpu.yaml")
OUTPUTS = ("augment/candidates", "augment/rejected")
GROUPS = ("augment",)
MEASUREMENTS = (("augment", "ray-vs-local"),)
FULL = {"segments": 96, "shard_size": 12, "max_new_tokens": 48, "batch_size": 4, "workers": 2, "cpus": 2, "reps": 3}
REDUCED = {"segments": 8, "shard_size": 4, "max_new_tokens": 4, "batch_size": 4, "workers": 2, "cpus": 2, "reps": 1}
HELP = {"segments": "corpus segments augmented", "shard_size": "rows per shard", "max_new_tokens": "per instruction",
        "batch_size": "generation batch size", "workers": "Ray workers", "cpus": "CPUs of the local Ray cluster",
        "reps": "repeats of the three arms, interleaved"}


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    harness.add_common_args(p, GROUPS, "the recipe whose augment stage is measured, with dotted overrides "
                                       "(default recipes/tiny-cpu.yaml)")
    harness.add_count_args(p, FULL, REDUCED, HELP)
    args = p.parse_args(argv)
    harness.apply_counts(args, FULL, REDUCED)
    if min(getattr(args, k) for k in FULL) < 1:
        p.error(f"{', '.join('--' + k.replace('_', '-') for k in FULL)} must be >= 1")
    return args


def recipe(spec: dict) -> str:
    return spec["recipe"] or DEFAULT_RECIPE


def overrides(spec: dict) -> list[str]:
    """The counts as overrides, then the recipe's own from the command line (which win)."""
    return [f"corpus.max_segments={spec['segments']}", f"shard_size={spec['shard_size']}", "train.max_steps=2",
            "train.max_length=256", f"augment.max_new_tokens={spec['max_new_tokens']}",
            f"generation.batch_size={spec['batch_size']}", "tracking.progress=false", "eval.enabled=false",
            *spec["overrides"]]


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.worker:
        return harness.worker_main(args.worker, measure)
    groups = harness.chosen_groups(args, GROUPS, "the other steps: scripts/benchmark.py")
    if groups is None:
        return 2
    from humpback.config import load_config
    from humpback.errors import HumpbackError

    settings = {**harness.recipe_settings(args), **{k: getattr(args, k) for k in FULL},
                "machine": harness.machine()}
    try:
        load_config(recipe(settings), overrides(settings))
    except HumpbackError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    out_dir = Path(args.output)
    report = {"settings": settings, "results": {}}

    def write(results: dict) -> None:
        report["results"] = results
        (out_dir / "bench_ray.json").write_text(json.dumps(report, indent=2) + "\n")
        (out_dir / "bench_ray.md").write_text(render_markdown(report))

    failed = harness.run_all(__file__, MEASUREMENTS, groups, settings, out_dir, args.isolate, measure, write)
    harness.log(f"wrote {out_dir / 'bench_ray.json'} and {out_dir / 'bench_ray.md'}")
    differ = report["results"].get("augment", {}).get("ray-vs-local", {}).get("identical_shard_files") is False
    if differ:
        harness.log("the shard files of some runs differ from the first local run's")
    return 1 if failed or differ else 0


# =========================================================================== measurement


def checksums(run_dir: Path) -> dict:
    from humpback.store import hash_file

    return {str(p.relative_to(run_dir)): hash_file(p) for out in OUTPUTS for p in sorted((run_dir / out).glob("*"))}


def augment_once(prepared: Path, work: Path, extra: list[str], spec: dict,
                 threads: int = 0) -> tuple[float, dict, int]:
    """(seconds, shard checksums, rows) of one augment stage on a fresh copy of the prepared folder;
    ``threads``: torch's threads in this process for the run (0: as they are)."""
    import torch

    from humpback import loop
    from humpback.config import load_config
    from humpback.stages.augment import augment_stage

    run_dir = work / "run"
    shutil.rmtree(run_dir, ignore_errors=True)
    shutil.copytree(prepared, run_dir)
    rt = loop.open_run(load_config(recipe(spec), overrides(spec) + extra), run_dir, log=lambda _: None)
    default = torch.get_num_threads()
    try:
        torch.set_num_threads(threads or default)
        started = time.perf_counter()
        result = augment_stage(rt)
        seconds = time.perf_counter() - started
    finally:
        torch.set_num_threads(default)
        rt.close()
    return seconds, checksums(run_dir), result.stats["segments"]


def measure(spec: dict) -> dict:
    """Prepare once, then the three arms ``reps`` times, interleaved, on copies of the prepared folder."""
    with harness.PeakMemory(interval_s=0.05) as mem:
        out = compare(spec)
    return {**out, **mem.figures()}


def compare(spec: dict) -> dict:
    import ray

    from humpback import loop
    from humpback.config import WorkersConfig, load_config
    from humpback.evaluation.replicates import mean_interval
    from humpback.generation.remote import RayEngine
    from humpback.stages.finetune import backward_stage

    work = Path(tempfile.mkdtemp(prefix="bench-ray-"))
    try:
        prepared = work / "prepared"
        rt = loop.open_run(load_config(recipe(spec), overrides(spec)), prepared, log=lambda _: None)
        loop.prepare(rt)
        backward_stage(rt)
        rt.close()

        started = time.perf_counter()
        engine = RayEngine(WorkersConfig(engine="ray", local_cpus=spec["cpus"]), log=harness.log)
        cluster_start = time.perf_counter() - started
        ray_extra = ["workers.engine=ray", f"workers.count={spec['workers']}"]
        local_s, local1_s, ray_s, same, rows, reference = [], [], [], [], None, None
        try:
            for r in range(spec["reps"]):
                for arm, extra, threads, into in (("local", [], 0, local_s), ("local-1", [], 1, local1_s),
                                                  ("ray", ray_extra, 0, ray_s)):
                    seconds, sums, rows = augment_once(prepared, work, extra, spec, threads)
                    reference = reference or sums
                    same.append(sums == reference)
                    into.append(seconds)
                    harness.log(f"repeat {r + 1}/{spec['reps']} {arm}: {seconds:.2f} s for {rows} segments"
                                f"{'' if sums == reference else ' (DIFFERENT shard files)'}")
        finally:
            engine.close()
        if ray.is_initialized():
            raise RuntimeError("the Ray engine left ray initialised after close()")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    ratio = lambda base: mean_interval([b / a for a, b in zip(base, ray_s)])  # noqa: E731
    overhead = lambda base: mean_interval([1000 * (b - a) / rows for a, b in zip(base, ray_s)])  # noqa: E731
    return {
        "what": f"augment stage, {Path(recipe(spec)).name}, on CPU: single process vs a local Ray cluster",
        "segments": rows, "shard_size": spec["shard_size"], "shards": -(-rows // spec["shard_size"]),
        "max_new_tokens": spec["max_new_tokens"], "batch_size": spec["batch_size"],
        "ray_workers": spec["workers"], "ray_cluster_cpus": spec["cpus"], "repeats": spec["reps"],
        "ray_version": ray.__version__, "torch_threads_local": torch_threads(),
        "local_seconds": local_s, "local_1_thread_seconds": local1_s, "ray_seconds": ray_s,
        "ray_cluster_start_seconds": cluster_start,
        "ratio_ray_over_local": ratio(local_s), "overhead_ms_per_row": overhead(local_s),
        "ratio_ray_over_local_1_thread": ratio(local1_s), "overhead_ms_per_row_vs_1_thread": overhead(local1_s),
        "local_ms_per_row": mean_interval([1000 * s / rows for s in local_s]),
        "local_1_thread_ms_per_row": mean_interval([1000 * s / rows for s in local1_s]),
        "ray_ms_per_row": mean_interval([1000 * s / rows for s in ray_s]),
        "identical_shard_files": all(same),
    }


def shown(m: dict, fmt: str) -> str:
    """A mean with its 95% interval (none from one repeat)."""
    ci = (f" (95% CI {m['ci'][0]:{fmt}}..{m['ci'][1]:{fmt}})" if m["ci"][0] is not None
          else " (one repeat: no interval)")
    return f"{m['mean']:{fmt}}{ci}"


def torch_threads() -> int:
    import torch

    return torch.get_num_threads()


# =========================================================================== report


def render_markdown(report: dict) -> str:
    s, r = report["settings"], report["results"]
    lines = ["# The augment stage: a local Ray cluster against one process", "",
             f"`{harness.command_line('bench_ray.py', s)}`", "",
             harness.machine_line(s) + " Peak memory is the driver's; the Ray workers are processes of their own.",
             ""]
    lines += harness.table(MEASUREMENTS, r, ["ray / local", "ray / local-1", "cluster start s", "peak RSS (MB)",
                                             "notes"], _row)
    res = r.get("augment", {}).get("ray-vs-local", {})
    if "ratio_ray_over_local" in res:
        lines += ["", "| arm | seconds per repeat | ms per row |", "|---|---|---|"]
        for arm, key, per_row in (("local", "local_seconds", "local_ms_per_row"),
                                  ("local-1", "local_1_thread_seconds", "local_1_thread_ms_per_row"),
                                  ("ray", "ray_seconds", "ray_ms_per_row")):
            lines.append(f"| {arm} | {', '.join(f'{x:.2f}' for x in res[key])} | {shown(res[per_row], ',.0f')} |")
        lines += ["", f"ray / local: {shown(res['ratio_ray_over_local'], '.2f')}; overhead per row "
                      f"{shown(res['overhead_ms_per_row'], ',.0f')} ms; ray / local with 1 thread: "
                      f"{shown(res['ratio_ray_over_local_1_thread'], '.2f')}; overhead per row "
                      f"{shown(res['overhead_ms_per_row_vs_1_thread'], ',.0f')} ms; identical shard files: "
                      f"{'yes' if res['identical_shard_files'] else 'NO'}."]
    return "\n".join(lines) + "\n"


def _row(group: str, variant: str, res: dict) -> list[str]:
    return [shown(res["ratio_ray_over_local"], ".2f"), shown(res["ratio_ray_over_local_1_thread"], ".2f"),
            harness.fmt(res["ray_cluster_start_seconds"]), harness.peak_rss(res),
            f"{res['segments']} segments in {res['shards']} shards, {res['ray_workers']} workers on "
            f"{res['ray_cluster_cpus']} CPUs, {res['repeats']} repeat(s), Ray {res['ray_version']}; shard files "
            f"{'identical' if res['identical_shard_files'] else 'DIFFER'}"]


if __name__ == "__main__":
    sys.exit(main())
