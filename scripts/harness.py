"""What the benchmark scripts share: one measurement per process, timed reps and their medians, peak
memory, the machine's description, and number formatting. Imported by ``benchmark.py``, ``bench_corpus.py``,
``bench_preferences.py``, ``bench_llama_cpp.py``, ``bench_judging.py``, ``bench_constraints.py``,
``bench_self_instruct.py``, ``bench_ray.py`` and ``judge_study.py`` (which run as scripts, so this folder is on
``sys.path``); it imports no model code. (Not :mod:`humpback.evaluation.lm_harness`, which runs
lm-evaluation-harness on a model of a run.)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Callable

Measure = Callable[[dict], dict]


# =========================================================================== command line


def add_common_args(p: argparse.ArgumentParser, groups: tuple[str, ...], recipe_help: str) -> None:
    """--output, --recipe, --reduced, --only, --isolate and the hidden --worker."""
    p.add_argument("--output", default="runs/benchmark", help="folder for the JSON and markdown reports and logs/")
    p.add_argument("--recipe", nargs="+", metavar=("RECIPE", "KEY=VALUE"), help=recipe_help)
    p.add_argument("--reduced", action="store_true", help="tiny counts, one rep, in process: the test suite's mode")
    p.add_argument("--only", help=f"comma-separated groups to run, of {', '.join(groups)}, or single measurements "
                                  f"as group/variant (augment/sorted)")
    p.add_argument("--isolate", action=argparse.BooleanOptionalAction, default=None,
                   help="one process per measurement, so peak memory is its own (default: on, off with --reduced)")
    p.add_argument("--worker", help=argparse.SUPPRESS)


def add_count_args(p: argparse.ArgumentParser, full: dict, reduced: dict, helps: dict) -> None:
    """One integer option per key of ``full`` (``reps`` also as ``--repeats``), defaulting to ``full``'s
    value, or ``reduced``'s with --reduced (:func:`apply_counts` fills them in after parsing)."""
    for key, value in full.items():
        names = ["--" + key.replace("_", "-")] + (["--repeats"] if key == "reps" else [])
        p.add_argument(*names, dest=key, type=int,
                       help=f"{helps[key]} (default {value:,}; {reduced[key]:,} with --reduced)")


def apply_counts(args: argparse.Namespace, full: dict, reduced: dict) -> None:
    """The counts left unset take their --reduced or full defaults; --isolate defaults to not --reduced."""
    for key, value in (reduced if args.reduced else full).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.isolate is None:
        args.isolate = not args.reduced


def chosen_groups(args: argparse.Namespace, groups: tuple[str, ...], elsewhere: str) -> set[str] | None:
    """The groups ``--only`` names (all by default); None, with a message, if it names an unknown one."""
    chosen = set(groups) if not args.only else {g.strip() for g in args.only.split(",") if g.strip()}
    unknown = {c for c in chosen if c.split("/", 1)[0] not in groups}
    if unknown:
        print(f"unknown group(s) {sorted(unknown)}; known: {', '.join(groups)} ({elsewhere})", file=sys.stderr)
        return None
    return chosen


def recipe_settings(args: argparse.Namespace) -> dict:
    return {"recipe": args.recipe[0] if args.recipe else None, "overrides": args.recipe[1:] if args.recipe else [],
            "reduced": args.reduced, "isolated": args.isolate}


def command_line(script: str, settings: dict) -> str:
    """The command that makes a report like this one (the report's first line)."""
    line = f"python scripts/{script} --output OUTPUT" + " --reduced" * settings["reduced"]
    return line + (f" --recipe {' '.join([settings['recipe'], *settings['overrides']])}" if settings["recipe"] else "")


# =========================================================================== running measurements


def run_all(script: str, measurements: tuple[tuple[str, str], ...], groups: set[str], settings: dict,
            out_dir: Path, isolate: bool, measure: Measure, write: Callable[[dict], None]) -> list[str]:
    """Every ``(group, variant)`` of ``groups``, one at a time; ``write(results)`` after each, so a
    report exists however far the run gets. Returns the names of the measurements that failed."""
    (out_dir / "logs").mkdir(parents=True, exist_ok=True)
    results: dict = {}
    failed = []
    for group, variant in measurements:
        if group not in groups and f"{group}/{variant}" not in groups:
            continue
        name = f"{group}/{variant}"
        spec = {"group": group, "variant": variant, **settings}
        log(f"{name} ...")
        if isolate:
            result = run_isolated(script, spec, out_dir / "logs" / f"{group}-{variant}.log")
        else:
            result = run_in_process(measure, spec)
        results.setdefault(group, {})[variant] = result
        if "error" in result:
            failed.append(name)
            log(f"{name} failed: {result['error']}")
        else:
            log(f"{name}: {headline(result)}")
        write(results)
    return failed


def run_isolated(script: str, spec: dict, log_path: Path) -> dict:
    """One measurement in a fresh interpreter (``script --worker SPEC``): its peak RSS is its own."""
    with tempfile.TemporaryDirectory(prefix="humpback-bench-") as tmp:
        spec_path, out_path = Path(tmp) / "spec.json", Path(tmp) / "result.json"
        spec_path.write_text(json.dumps({**spec, "result_path": str(out_path)}))
        env = {**os.environ, "TOKENIZERS_PARALLELISM": "false"}
        if spec.get("threads"):
            env["OMP_NUM_THREADS"] = str(spec["threads"])
        with open(log_path, "w") as f:
            try:
                proc = subprocess.run([sys.executable, os.path.abspath(script), "--worker", str(spec_path)],
                                      stdout=f, stderr=subprocess.STDOUT, env=env, timeout=6 * 3600)
                code = proc.returncode
            except subprocess.TimeoutExpired:
                code = "timeout"
        if out_path.is_file():
            return json.loads(out_path.read_text())
        tail = log_path.read_text(errors="replace")[-1500:]
        return {"error": f"worker exited with {code}; log {log_path}: ...{tail}"}


def run_in_process(measure: Measure, spec: dict) -> dict:
    try:
        return measure(spec)
    except Exception as e:  # noqa: BLE001 - a failed measurement is recorded, the others still run
        return {"error": f"{type(e).__name__}: {e}"}


def worker_main(spec_path: str, measure: Measure) -> int:
    """The ``--worker`` side of :func:`run_isolated`: measure, add the process's peak RSS, write the result."""
    spec = json.loads(Path(spec_path).read_text())
    result = run_in_process(measure, spec)
    result["peak_rss_process_mb"] = ru_maxrss_mb()
    Path(spec["result_path"]).write_text(json.dumps(result))
    return 0 if "error" not in result else 1


def timed_reps(reps: int, run: Callable[[], dict]) -> tuple[list[dict], "PeakMemory"]:
    """``run()`` -> dict of counts, ``reps`` times, each with its wall time; memory over all of them."""
    out = []
    with PeakMemory() as mem:
        for _ in range(reps):
            start = time.perf_counter()
            counts = run()
            out.append({"seconds": time.perf_counter() - start, **counts})
    return out, mem


def summary(reps: list[dict], mem: "PeakMemory", per: dict[str, str]) -> dict:
    """Medians over reps of each ``count / seconds`` rate named in ``per`` (rate name -> count key)."""
    out = {"reps": [{k: rnd(v) if isinstance(v, float) else v for k, v in r.items()} for r in reps],
           "median_seconds": rnd(statistics.median(r["seconds"] for r in reps))}
    for rate, key in per.items():
        values = [r[key] / r["seconds"] for r in reps if r.get(key) is not None and r["seconds"] > 0]
        out[rate] = rnd(statistics.median(values)) if values else None
    out.update(mem.figures())
    return out


def ratio(results: dict, group: str, num: str, den: str, key: str) -> float | None:
    a = results.get(group, {}).get(num, {}).get(key)
    b = results.get(group, {}).get(den, {}).get(key)
    return rnd(a / b) if a and b else None


# =========================================================================== memory


class PeakMemory:
    """Peak RSS over a block, sampled every few milliseconds (and CUDA max allocated, on a GPU)."""

    def __init__(self, interval_s: float = 0.005):
        self.interval_s = interval_s
        self.peak_rss_mb = 0.0
        self.cuda_peak_mb = None
        self._stop = threading.Event()

    def __enter__(self) -> "PeakMemory":
        self.start_rss_mb = rss_mb()
        self.peak_rss_mb = self.start_rss_mb or 0.0
        if _cuda():
            import torch

            torch.cuda.reset_peak_memory_stats()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.peak_rss_mb = max(self.peak_rss_mb, rss_mb() or 0.0)

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak_rss_mb = max(self.peak_rss_mb, rss_mb() or 0.0)
        if _cuda():
            import torch

            self.cuda_peak_mb = torch.cuda.max_memory_allocated() / 2**20

    def figures(self) -> dict:
        return {"rss_before_mb": rnd(self.start_rss_mb), "peak_rss_mb": rnd(self.peak_rss_mb),
                "cuda_max_allocated_mb": rnd(self.cuda_peak_mb)}


def rss_mb() -> float | None:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError):
        return None


def ru_maxrss_mb() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rnd(peak / 2**20 if sys.platform == "darwin" else peak / 2**10)


def _cuda() -> bool:
    if "torch" not in sys.modules:  # a measurement that loads no model never imports torch for this
        return False
    import torch

    return torch.cuda.is_available()


# =========================================================================== the machine and numbers


def machine(cuda: str | None = None) -> dict:
    """Where the figures were taken: Python, OS, CPU, the GPU if any, and humpback's packages."""
    from humpback.store import package_versions

    versions = package_versions()
    return {"python": platform.python_version(), "platform": platform.platform(), "cpu": _cpu_name(),
            "cpu_count": os.cpu_count(), "torch": versions.get("torch"), "transformers": versions.get("transformers"),
            "cuda": cuda, "packages": versions}


def machine_line(settings: dict) -> str:
    """The report's sentence on the machine and how the figures were taken."""
    m = settings["machine"]
    return (f"{m['cpu']} ({m['cpu_count']} cores){', GPU ' + m['cuda'] if m['cuda'] else ''}; Python {m['python']}, "
            f"torch {m['torch']}, transformers {m['transformers']}. Median of {settings['reps']} reps; "
            "each measurement "
            f"in {'its own process' if settings['isolated'] else 'this process (peak memory not isolated)'}.")


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def table(measurements: tuple[tuple[str, str], ...], results: dict, columns: list[str],
          row: Callable[[str, str, dict], list[str]]) -> list[str]:
    """A markdown table of the results: step, variant, then ``columns`` (``row`` gives their cells,
    the last being the notes); a failed or skipped measurement says so."""
    lines = ["| step | variant | " + " | ".join(columns) + " |", "|---|---|" + "---:|" * (len(columns) - 1) + "---|"]
    for group, variant in measurements:
        res = results.get(group, {}).get(variant)
        if res is None:
            continue
        if "error" in res or "skipped" in res:
            verdict, why = ("failed", res["error"][:120]) if "error" in res else ("skipped", res["skipped"])
            cells = [verdict] + [""] * (len(columns) - 2) + [why.replace("|", "/")]
        else:
            cells = row(group, variant, res)
        lines.append(f"| {group} | {variant} | " + " | ".join(cells) + " |")
    return lines


def peak_rss(res: dict) -> str:
    """The measurement process's own peak when it ran alone, else the peak over its block."""
    return fmt(res.get("peak_rss_process_mb") or res.get("peak_rss_mb"), 0)


def headline(res: dict) -> str:
    if "skipped" in res:
        return "skipped"
    key = next((k for k in ("docs_per_s", "pairs_per_s", "tokens_per_s") if k in res), None)
    rate = f"{fmt(res.get(key))} {key.replace('_per_s', '/s')}, " if key else ""
    return f"{rate}peak RSS {fmt(res.get('peak_rss_mb'), 0)} MB"


def rnd(x, digits: int = 4):
    return None if x is None else float(f"{x:.{digits}g}")


def fmt(x, decimals: int = 2) -> str:
    return "-" if x is None else f"{x:,.{decimals}f}"


def log(message: str) -> None:
    print(f"[benchmark] {message}", file=sys.stderr, flush=True)
