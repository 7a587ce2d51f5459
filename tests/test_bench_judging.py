"""scripts/bench_judging.py end to end in its reduced mode on the tiny model: the report has the harness's
shape (settings with the machine, one result per judging mode with its reps, medians and memory, the ratio)
and the markdown its table (the rates' values are not checked: they measure the machine)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "bench_judging.py"
RESULT_KEYS = {"reps", "median_seconds", "pairs_per_s", "rss_before_mb", "peak_rss_mb", "cuda_max_allocated_mb",
               "judgements_per_pair", "prompt_tokens_median", "max_new_tokens"}


@pytest.fixture(scope="module")
def reduced_run(tmp_path_factory, tiny_model_dir, docs_seed_path):
    out = tmp_path_factory.mktemp("bench-judging")
    proc = subprocess.run([sys.executable, str(SCRIPT), "--reduced", "--output", str(out)], capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out, json.loads((out / "bench_judging.json").read_text())


def test_script_opens_with_its_command():
    assert SCRIPT.read_text().splitlines()[1] == "# python scripts/bench_judging.py --output runs/bench-judging"


def test_reduced_run_reports_both_modes(reduced_run):
    out, report = reduced_run
    assert set(report) == {"logits_vs_generate", "settings", "results"}
    s = report["settings"]
    assert (s["pairs"], s["reps"], s["max_new_tokens"], s["batch_size"]) == (4, 1, 4, 4)
    assert (s["model"], s["backend"], s["reduced"], s["isolated"], s["recipe"]) == (
        "builtin:tiny-llama", "hf", True, False, None)
    assert {"python", "cpu", "cpu_count", "torch", "packages"} <= set(s["machine"])
    assert set(report["results"]) == {"judging"} and set(report["results"]["judging"]) == {"generate", "logits"}
    for mode, new_tokens in (("generate", 4), ("logits", 1)):
        r = report["results"]["judging"][mode]
        assert set(r) == RESULT_KEYS, mode
        assert [set(rep) for rep in r["reps"]] == [{"seconds", "pairs", "parse_failures"}]
        assert r["reps"][0]["pairs"] == 4 and r["judgements_per_pair"] == 2 and r["max_new_tokens"] == new_tokens
        assert r["prompt_tokens_median"] > 100 and r["median_seconds"] == r["reps"][0]["seconds"]
    assert report["results"]["judging"]["logits"]["reps"][0]["parse_failures"] == 0
    rates = {m: report["results"]["judging"][m]["pairs_per_s"] for m in ("generate", "logits")}
    assert report["logits_vs_generate"] == pytest.approx(rates["logits"] / rates["generate"], rel=1e-3)


def test_markdown_has_the_table(reduced_run):
    out, report = reduced_run
    md = (out / "bench_judging.md").read_text()
    assert md.splitlines()[2] == "`python scripts/bench_judging.py --output OUTPUT --reduced`"
    for row in ("| judging | generate |", "| judging | logits |"):
        assert row in md
    assert f"logits / generate: {report['logits_vs_generate']:,.2f}x pairs/s." in md


def test_the_judge_comes_from_the_recipe_unless_named(tmp_path):
    sys.path.insert(0, str(REPO / "scripts"))
    try:
        import bench_judging
    finally:
        sys.path.remove(str(REPO / "scripts"))
    recipe = str(REPO / "recipes" / "tiny-cpu.yaml")
    args = bench_judging.parse_args(["--recipe", recipe, "generation.device=cpu", "eval.judge=some/judge"])
    assert bench_judging.judge_settings(args) == {"model": "some/judge", "backend": "hf", "api_base": None,
                                                  "device": "cpu", "dtype": "auto"}
    args = bench_judging.parse_args(["--recipe", recipe, "--model", "other/judge", "--device", "cuda"])
    assert bench_judging.judge_settings(args)["model"] == "other/judge"
    assert bench_judging.judge_settings(args)["device"] == "cuda"
    assert bench_judging.judge_settings(bench_judging.parse_args([]))["model"] == "builtin:tiny-llama"
