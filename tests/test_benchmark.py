"""scripts/benchmark.py end to end in its reduced mode: every measurement runs on the tiny model and the
JSON and markdown carry the figures and the two headline ratios (their values are not checked).
The corpus and scale measurements are scripts/bench_corpus.py's: tests/test_bench_corpus.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "benchmark.py"


@pytest.fixture(scope="module")
def reduced_run(tmp_path_factory, tiny_model_dir, docs_corpus_path, docs_seed_path):
    out = tmp_path_factory.mktemp("bench")
    proc = subprocess.run([sys.executable, str(SCRIPT), "--reduced", "--output", str(out)], capture_output=True,
                          text=True, timeout=600, env={**os.environ, "TOKENIZERS_PARALLELISM": "false"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out, json.loads((out / "benchmark.json").read_text()), proc.stderr


def test_script_opens_with_its_command():
    assert SCRIPT.read_text().splitlines()[1].startswith("# python scripts/benchmark.py")


def test_reduced_run_reports_every_figure(reduced_run):
    out, report, _ = reduced_run
    for key in ("augment_sorted_vs_single", "curate_logits_vs_generate"):
        assert isinstance(report[key], float) and report[key] > 0
        assert isinstance(report["targets_met"][key], bool)
    r = report["results"]
    for variant in ("single", "batched", "sorted", "transformers"):
        a = r["augment"][variant]
        assert a["docs_per_s"] > 0 and a["generated_tokens_per_s"] > 0 and a["peak_rss_mb"] > 0
        assert a["token_count"] == "exact" and len(a["reps"]) == report["settings"]["reps"]
    assert (r["augment"]["single"]["batch_size"], r["augment"]["sorted"]["sort_by_length"]) == (1, True)
    assert r["augment"]["transformers"]["runner"] == "transformers generate()"
    assert r["augment"]["transformers"]["sort_by_length"] is False
    for variant in ("generate", "logits", "transformers"):
        assert r["curate"][variant]["pairs_per_s"] > 0 and r["curate"][variant]["peak_rss_mb"] > 0
    assert r["train"]["plain"]["tokens_per_s"] > 0 and r["train"]["packed"]["tokens_per_s"] > 0
    assert r["train"]["packed"]["packing"] is True and r["train"]["plain"]["packing"] is False
    assert set(report["other_ratios"]) == {"augment_batched_vs_single", "augment_sorted_vs_batched",
                                           "train_packed_vs_plain", "augment_sorted_vs_transformers",
                                           "curate_generate_vs_transformers", "curate_logits_vs_transformers"}
    ratio = report["other_ratios"]["augment_sorted_vs_transformers"]
    assert ratio == pytest.approx(r["augment"]["sorted"]["docs_per_s"] / r["augment"]["transformers"]["docs_per_s"],
                                  rel=1e-3)


def test_markdown_has_the_table(reduced_run):
    out, report, _ = reduced_run
    md = (out / "benchmark.md").read_text()
    assert "`augment_sorted_vs_single`" in md and "`curate_logits_vs_generate`" in md
    for row in ("| augment | single |", "| augment | sorted |", "| augment | transformers |", "| curate | logits |",
                "| curate | transformers |", "| train | packed |"):
        assert row in md
    assert f"{report['augment_sorted_vs_single']:,.2f}x" in md


def test_a_failed_measurement_is_recorded_not_fatal(tmp_path):
    # No server listens on this port: the openai measurements fail, the report still gets written
    # (training, which generates nothing, still runs).
    proc = subprocess.run([sys.executable, str(SCRIPT), "--reduced", "--only", "curate,train", "--backend", "openai",
                           "--api-base", "http://127.0.0.1:9/v1", "--output", str(tmp_path)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1
    report = json.loads((tmp_path / "benchmark.json").read_text())
    assert "127.0.0.1:9" in report["results"]["curate"]["generate"]["error"]
    assert report["curate_logits_vs_generate"] is None and report["targets_met"]["curate_logits_vs_generate"] is None
    assert report["results"]["train"]["plain"]["tokens_per_s"] > 0
    assert "failed" in (tmp_path / "benchmark.md").read_text()


def test_a_recipe_is_benchmarked_with_its_own_settings(tmp_path, tiny_model_dir, docs_seed_path):
    proc = subprocess.run([sys.executable, str(SCRIPT), "--reduced", "--only", "curate", "--recipe",
                           str(REPO / "recipes" / "tiny-cpu.yaml"), "curate.system_prompt=null", "train.lora_r=4",
                           "--output", str(tmp_path)], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "TOKENIZERS_PARALLELISM": "false"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads((tmp_path / "benchmark.json").read_text())
    s = report["settings"]
    assert s["recipe"].endswith("tiny-cpu.yaml") and s["overrides"] == ["curate.system_prompt=null", "train.lora_r=4"]
    config = s["config"]
    assert (config["name"] == "tiny-cpu" and config["curate"]["mode"] == "logits"
            and config["curate"]["system_prompt"] is None)
    assert (config["train"]["lora_r"], config["train"]["learning_rate"]) == (4, 1.0e-3)
    # --reduced sizes win over the recipe's, so the suite stays fast.
    assert (s["batch_size"], config["augment"]["max_new_tokens"], s["train_steps"]) == (2, 4, 1)
    assert report["results"]["curate"]["logits"]["pairs_per_s"] > 0
    assert "--recipe " in (tmp_path / "benchmark.md").read_text()


def test_a_bad_recipe_key_is_a_clear_error(tmp_path):
    proc = subprocess.run([sys.executable, str(SCRIPT), "--reduced", "--recipe",
                           str(REPO / "recipes" / "tiny-cpu.yaml"), "curate.no_such_key=1", "--output", str(tmp_path)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "curate.no_such_key" in proc.stderr and "Traceback" not in proc.stderr
