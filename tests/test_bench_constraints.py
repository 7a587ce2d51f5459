"""scripts/bench_constraints.py end to end on the tiny model with few prompts: every arm of every built-in
is in the JSON and the Markdown table (the rates are not checked here: tokens/s measure the machine, and
whether every answer matches is tests/test_constraints.py's business)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "bench_constraints.py"


@pytest.mark.slow  # 12 arms, each with a warm-up round: over a minute on a busy 2-core machine
def test_engines_part_writes_every_arm(tmp_path, tiny_model_dir):
    out = tmp_path / "bench.json"
    proc = subprocess.run([sys.executable, str(SCRIPT), "--out", str(out), "--prompts", "2", "--repeats", "2",
                           "--max-new-tokens", "16"], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = json.loads(out.read_text())["engines"]["rows"]
    arms = {(r["constraint"], r["engine"]) for r in rows}
    assert arms == {(f"builtin:{b}", e) for b in ("instruction-line", "score", "task-list", "verdict")
                    for e in ("none", "xgrammar", "outlines-core")}
    rate = {(r["constraint"], r["engine"]): r["match_rate"] for r in rows}
    assert all(0 <= x <= 1 for x in rate.values()) and rate[("builtin:score", "none")] == 0.0
    assert all(r["tokens_per_s"] > 0 and len(r["tokens_per_s_ci95"]) == 2 for r in rows)
    table = out.with_suffix(".md").read_text()
    assert table.count("| builtin:") == len(rows) and "| builtin:score | none | 0% |" in table


def test_wilson_interval():
    # The script's parse-failure interval is the library's Wilson interval.
    from humpback.evaluation.exact import wilson_interval as wilson

    lo, hi = wilson(0, 48)
    assert lo == 0.0 and abs(hi - 0.0741) < 1e-3
    lo, hi = wilson(47, 48)
    assert abs(lo - 0.8910) < 1e-3 and hi > 0.99
