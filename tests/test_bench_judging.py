"""scripts/bench_judging.py end to end in its reduced mode on the tiny model: the JSON carries the pairs/s
of both judging modes and their ratio (their values are not checked: they measure the machine)."""

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "bench_judging.py"


def test_script_opens_with_its_command():
    assert SCRIPT.read_text().splitlines()[1] == "# python scripts/bench_judging.py --output runs/bench-judging"


def test_reduced_run_writes_both_modes(tmp_path, tiny_model_dir, docs_seed_path):
    proc = subprocess.run([sys.executable, str(SCRIPT), "--reduced", "--output", str(tmp_path)], capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads((tmp_path / "bench_judging.json").read_text())
    for mode in ("generate", "logits"):
        r = report["results"][mode]
        assert r["pairs_per_s"] > 0 and len(r["reps"]) == 1 and r["prompt_tokens_median"] > 100
    assert report["results"]["logits"]["reps"][0]["parse_failures"] == 0
    assert report["logits_vs_generate"] > 0 and report["settings"]["pairs"] == 4
