"""scripts/bench_preferences.py end to end in its reduced mode on the tiny model: the JSON carries each step's
rate and the cost per 1,000 prompts (their values are not checked: they measure the machine)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "bench_preferences.py"


def test_script_opens_with_its_command():
    assert SCRIPT.read_text().splitlines()[1] == "# python scripts/bench_preferences.py --output runs/benchmark"


@pytest.mark.slow  # three measurements, each training a tiny adapter first: about 2 minutes on 2 busy cores
def test_reduced_run_writes_the_cost_of_each_step(tmp_path, tiny_model_dir, docs_seed_path):
    proc = subprocess.run([sys.executable, str(SCRIPT), "--reduced", "--output", str(tmp_path)], capture_output=True,
                          text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads((tmp_path / "bench_preferences.json").read_text())
    r = report["results"]
    assert r["generation"]["sample"]["answers_per_s"] > 0 and r["generation"]["sample"]["n"] == 2
    assert r["judging"]["additive"]["reps"][0]["failures"] == 0 and r["judging"]["additive"]["mode"] == "logits"
    assert r["dpo"]["train"]["reps"][0]["steps"] == 2 and r["dpo"]["train"]["pairs_per_step"] == 2
    cost = report["cost_per_1000_prompts_s"]
    assert all(cost[k] > 0 for k in ("generation", "judging", "dpo")) and cost["total"] == pytest.approx(
        cost["generation"] + cost["judging"] + cost["dpo"], rel=1e-3)
    assert "| dpo | train |" in (tmp_path / "bench_preferences.md").read_text()
