"""The augment stage on a local Ray cluster of CPU workers against the single-process run (issue 25).
    python scripts/bench_ray.py --output bench-ray.json
    python scripts/bench_ray.py --segments 24 --repeats 2          (a quick look)

One run folder of the tiny recipe is prepared once (segments, backward model); then the augment stage
runs ``--repeats`` times each way, alternating, on copies of it:
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
another job's load falls on both arms alike.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

ROOT = Path(__file__).resolve().parent.parent
OUTPUTS = ("augment/candidates", "augment/rejected")


def overrides(args: argparse.Namespace) -> list[str]:
    return [f"corpus.max_segments={args.segments}", f"shard_size={args.shard_size}", "train.max_steps=2",
            "train.max_length=256", f"augment.max_new_tokens={args.max_new_tokens}",
            f"generation.batch_size={args.batch_size}", "tracking.progress=false", "eval.enabled=false"]


def checksums(run_dir: Path) -> dict:
    from humpback.store import hash_file

    return {str(p.relative_to(run_dir)): hash_file(p) for out in OUTPUTS for p in sorted((run_dir / out).glob("*"))}


def augment_once(prepared: Path, work: Path, extra: list[str], args, threads: int = 0) -> tuple[float, dict, int]:
    """(seconds, shard checksums, rows) of one augment stage on a fresh copy of the prepared folder;
    ``threads``: torch's threads in this process for the run (0: as they are)."""
    import torch

    from humpback import loop
    from humpback.config import load_config
    from humpback.stages.augment import augment_stage

    run_dir = work / "run"
    shutil.rmtree(run_dir, ignore_errors=True)
    shutil.copytree(prepared, run_dir)
    rt = loop.open_run(load_config(ROOT / "recipes" / "tiny-cpu.yaml", overrides(args) + extra), run_dir,
                       log=lambda _: None)
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


def shown(m: dict, fmt: str) -> str:
    """A mean with its 95% interval (none from one repeat)."""
    ci = (f" (95% CI {m['ci'][0]:{fmt}}..{m['ci'][1]:{fmt}})" if m["ci"][0] is not None
          else " (one repeat: no interval)")
    return f"{m['mean']:{fmt}}{ci}"


def torch_threads() -> int:
    import torch

    return torch.get_num_threads()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--output", default="bench-ray.json")
    p.add_argument("--segments", type=int, default=96)
    p.add_argument("--shard-size", type=int, default=12)
    p.add_argument("--max-new-tokens", type=int, default=48)
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--cpus", type=int, default=2)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()

    import ray

    from humpback import loop
    from humpback.config import WorkersConfig, load_config
    from humpback.evaluation.replicates import mean_interval
    from humpback.generation.remote import RayEngine
    from humpback.stages.finetune import backward_stage

    work = Path(tempfile.mkdtemp(prefix="bench-ray-"))
    try:
        prepared = work / "prepared"
        rt = loop.open_run(load_config(ROOT / "recipes" / "tiny-cpu.yaml", overrides(args)), prepared,
                           log=lambda _: None)
        loop.prepare(rt)
        backward_stage(rt)
        rt.close()

        started = time.perf_counter()
        engine = RayEngine(WorkersConfig(engine="ray", local_cpus=args.cpus), log=print)
        cluster_start = time.perf_counter() - started
        ray_extra = ["workers.engine=ray", f"workers.count={args.workers}"]
        local_s, local1_s, ray_s, same, rows, reference = [], [], [], [], None, None
        try:
            for r in range(args.repeats):
                for arm, extra, threads, into in (("local", [], 0, local_s), ("local-1", [], 1, local1_s),
                                                  ("ray", ray_extra, 0, ray_s)):
                    seconds, sums, rows = augment_once(prepared, work, extra, args, threads)
                    reference = reference or sums
                    same.append(sums == reference)
                    into.append(seconds)
                    print(f"repeat {r + 1}/{args.repeats} {arm}: {seconds:.2f} s for {rows} segments"
                          f"{'' if sums == reference else ' (DIFFERENT shard files)'}", flush=True)
        finally:
            engine.close()
        assert not ray.is_initialized()
        ratio = lambda base: mean_interval([b / a for a, b in zip(base, ray_s)])  # noqa: E731
        overhead = lambda base: mean_interval([1000 * (b - a) / rows for a, b in zip(base, ray_s)])  # noqa: E731
        out = {
            "what": "augment stage, tiny recipe, hf backend on CPU: single process vs a local Ray cluster",
            "segments": rows, "shard_size": args.shard_size, "shards": -(-rows // args.shard_size),
            "max_new_tokens": args.max_new_tokens, "batch_size": args.batch_size,
            "ray_workers": args.workers, "ray_cluster_cpus": args.cpus, "repeats": args.repeats,
            "ray_version": ray.__version__, "machine": platform.platform(), "python": platform.python_version(),
            "torch_threads_local": torch_threads(),
            "local_seconds": local_s, "local_1_thread_seconds": local1_s, "ray_seconds": ray_s,
            "ray_cluster_start_seconds": cluster_start,
            "ratio_ray_over_local": ratio(local_s), "overhead_ms_per_row": overhead(local_s),
            "ratio_ray_over_local_1_thread": ratio(local1_s), "overhead_ms_per_row_vs_1_thread": overhead(local1_s),
            "local_ms_per_row": mean_interval([1000 * s / rows for s in local_s]),
            "local_1_thread_ms_per_row": mean_interval([1000 * s / rows for s in local1_s]),
            "ray_ms_per_row": mean_interval([1000 * s / rows for s in ray_s]),
            "identical_shard_files": all(same),
        }
    finally:
        shutil.rmtree(work, ignore_errors=True)
    Path(args.output).write_text(json.dumps(out, indent=2) + "\n")
    print(f"ray / local: {shown(out['ratio_ray_over_local'], '.2f')}; overhead per row "
          f"{shown(out['overhead_ms_per_row'], '.0f')} ms; ray / local with 1 thread: "
          f"{shown(out['ratio_ray_over_local_1_thread'], '.2f')}; overhead per row "
          f"{shown(out['overhead_ms_per_row_vs_1_thread'], '.0f')} ms; identical shard files: "
          f"{out['identical_shard_files']}"
          f"; written to {args.output}")
    return 0 if out["identical_shard_files"] else 1


if __name__ == "__main__":
    sys.exit(main())
