"""Training under `accelerate launch` (train.accelerate_config), as a GPU run does it, here on CPU."""

import json
import logging
from pathlib import Path

import pytest

from humpback.config import load_config
from humpback.loop import open_run
from humpback.stages.finetune import m0_stage
from humpback.stages.prepare import seed_stage
from humpback.training import launch

ROOT = Path(__file__).parent.parent
TINY = ROOT / "recipes" / "tiny-cpu.yaml"


@pytest.mark.parametrize("accelerate_config", ["single_gpu.yaml", "deepspeed_zero2.yaml"])
def test_training_runs_under_accelerate_launch(tmp_path, monkeypatch, caplog, accelerate_config):
    monkeypatch.chdir(ROOT)  # the accelerate files name the DeepSpeed JSONs relative to the repository root
    monkeypatch.setenv("DS_BUILD_OPS", "0")
    monkeypatch.setenv("DS_SKIP_CUDA_CHECK", "1")
    cfg = load_config(TINY, ["train.max_steps=2", "train.logging_steps=1", "train.max_length=128",
                             f"train.accelerate_config=configs/accelerate/{accelerate_config}",
                             "train.num_processes=1"])
    lines: list[str] = []
    rt = open_run(cfg, tmp_path / "run", log=lines.append)
    seed_stage(rt)
    events: list[dict] = []
    monkeypatch.setattr(launch, "StepBar", lambda show: _Recorder(show, events))
    with caplog.at_level(logging.INFO, logger="humpback.details"):
        result = m0_stage(rt)
    records = [(r.name, r.getMessage()) for r in caplog.records]
    assert any(name == "humpback.details" and "accelerate.commands.launch" in message and accelerate_config in message
               for name, message in records)
    # The launched process's output is in the log, line by line; its training events drove the parent's bar.
    launched = [message for name, message in records if name == "humpback.details.launch"]
    assert any("trainer step 2" in message and "train_runtime" in message for message in launched), launched
    assert not any(message.startswith("@humpback-train") for message in launched)
    assert [e["event"] for e in events] == ["begin", "step", "log", "step", "log", "end"]
    assert events[0]["total"] == 2 and events[-2]["step"] == 2 and events[-2]["loss"] > 0
    assert any(line.startswith("  m0: ") and "2 steps" in line for line in lines)
    assert result.stats["steps"] == 2 and len(result.stats["losses"]) == 2
    assert json.loads((tmp_path / "run" / "models" / "m0" / "adapter_config.json").read_text())["r"] == 8
    assert not (tmp_path / "run" / "models" / "m0.partial.spec").exists()


class _Recorder:
    """The parent's bar, recording the events it is given."""

    def __init__(self, show, events):
        self.show, self.events = show, events

    def __call__(self, event):
        self.events.append(event)

    def close(self):
        pass
