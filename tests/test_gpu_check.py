"""scripts/gpu_check.py, the GPU paths' check, run here in its CPU smoke mode: every step's record lands in
one JSON, the random-weight stand-ins have the architectures' shapes, and what cannot run says why."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "gpu_check.py"


def _run(out: Path, *args: str) -> dict:
    proc = subprocess.run([sys.executable, str(SCRIPT), "--smoke", "--output", str(out), *args], capture_output=True,
                          text=True, timeout=900, env={**os.environ, "TOKENIZERS_PARALLELISM": "false"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads((out / "gpu_check.json").read_text())


def test_scripts_open_with_their_command():
    assert SCRIPT.read_text().splitlines()[1].startswith("# python scripts/gpu_check.py")
    assert (REPO / "scripts" / "gpu_check.sh").read_text().splitlines()[1].startswith("# scripts/gpu_check.sh")


def test_environment_models_and_skips(tmp_path, humpback_cache):
    report = _run(tmp_path, "--only", "environment,models,vllm")
    steps = report["steps"]
    assert list(steps) == ["environment", "models", "vllm"] and report["smoke"] is True
    env = steps["environment"]
    assert env["status"] == "ok" and env["versions"]["transformers"] and env["versions"]["gguf"]
    built = steps["models"]["models"]
    assert set(built) == {"smollm2-135m-arch", "llama-1b-arch"} and steps["models"]["real"] == []
    from transformers import AutoConfig, AutoTokenizer

    for folder in built.values():
        config, tok = AutoConfig.from_pretrained(folder), AutoTokenizer.from_pretrained(folder)
        assert config.vocab_size == len(tok) and tok.chat_template  # every id decodes; prompts render
    try:
        import vllm  # noqa: F401
    except ImportError:
        assert steps["vllm"]["status"] == "skipped" and "vLLM is not installed" in steps["vllm"]["reason"]


@pytest.mark.slow  # about 90 s on 2 cores: the tiny loop and the reduced benchmark on the stand-in model
def test_the_whole_smoke_run(tmp_path, humpback_cache):
    report = _run(tmp_path)
    steps = report["steps"]
    assert [s for s, r in steps.items() if r["status"] == "failed"] == []
    recipe = steps["real_recipe"]["stages"]
    assert recipe["m0"]["train_tokens_per_s"] > 0 and recipe["augment"]["generated_tokens"] > 0
    bench = steps["bench_models"]["models"]["llama-1b-arch"]
    assert bench["figures"]["augment/transformers"]["docs_per_s"] > 0 and bench["ratios"]["augment_sorted_vs_single"]
    assert steps["deepspeed_zero2"]["status"] == "skipped"
