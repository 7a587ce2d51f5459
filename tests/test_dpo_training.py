"""Issue 22: DPO of a trained model K with TRL, the reference being model K itself (LoRA: TRL's frozen copy of
the adapter; a full model: its log-probabilities computed first), in process and under `accelerate launch`."""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import pytest

from humpback.config import DPOSettings, TrainConfig
from humpback.training import PreferenceJob, TrainJob, launch, train_dpo, train_sft

ROOT = Path(__file__).parent.parent
CFG = dict(max_steps=1, per_device_train_batch_size=2, gradient_accumulation_steps=1, logging_steps=1, max_length=96,
           warmup_ratio=0.0, lora_r=4, lora_alpha=8)
DPO = DPOSettings(learning_rate=5e-3, max_steps=2, per_device_train_batch_size=2, gradient_accumulation_steps=1,
                  min_lr_ratio=None)
SFT_ROWS = [{"messages": [{"role": "user", "content": f"Question {i}?"},
                          {"role": "assistant", "content": f"Answer {i}."}]} for i in range(4)]
PAIRS = [{"prompt": [{"role": "system", "content": "S"}, {"role": "user", "content": f"Question {i}?"}],
          "chosen": [{"role": "assistant", "content": f"Answer {i}."}],
          "rejected": [{"role": "assistant", "content": f"No idea, {i} {i} {i}."}],
          "chosen_score": 4.0} for i in range(4)]


def _weights(folder: Path, name: str) -> dict:
    from safetensors.torch import load_file

    return load_file(folder / name)


@pytest.fixture(scope="module")
def model_k(tiny_model_dir, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("k") / "sft_model"
    train_sft(TrainJob(str(tiny_model_dir), TrainConfig(**CFG), seed=0, progress=False), SFT_ROWS, out)
    return out


def test_lora_dpo_starts_from_model_k_as_its_own_reference(model_k, tiny_model_dir, tmp_path):
    import torch

    out = tmp_path / "dpo"
    job = PreferenceJob(str(tiny_model_dir), str(model_k), TrainConfig(**CFG), DPO, seed=0, progress=False)
    result = train_dpo(job, PAIRS, out).summary()
    first, last = result["curve"][0], result["curve"][-1]
    # Step 1 is scored before any update: the policy is the reference, every reward is 0, the loss log 2.
    assert first["margin"] == 0.0 and first["chosen_reward"] == 0.0 and first["loss"] == pytest.approx(math.log(2))
    assert result["steps"] == 2 and last["margin"] > 0 and last["accuracy"] > 0 and result["num_examples"] == 4
    assert result["final_margin"] == last["margin"] and result["dropped_examples"] == 0
    # The saved model is model K's adapter trained on, on the base model: TRL's frozen copy is not kept.
    files = {p.name for p in out.iterdir()}
    assert {"adapter_config.json", "adapter_model.safetensors", "tokenizer_config.json"} <= files
    assert "ref" not in files and "training_args.bin" not in files
    before, after = _weights(model_k, "adapter_model.safetensors"), _weights(out, "adapter_model.safetensors")
    assert set(before) == set(after) and any(not torch.equal(before[k], after[k]) for k in before)
    adapter = json.loads((out / "adapter_config.json").read_text())
    assert adapter["r"] == 4 and adapter["target_modules"] == sorted(adapter["target_modules"])


def test_full_model_dpo_precomputes_its_reference(tiny_model_dir, tmp_path):
    import torch

    start = tmp_path / "full"
    train_sft(TrainJob(str(tiny_model_dir), TrainConfig(**CFG, full_finetune=True), seed=0, progress=False),
              SFT_ROWS, start)
    out = tmp_path / "dpo"
    job = PreferenceJob(str(tiny_model_dir), str(start), TrainConfig(**CFG, full_finetune=True), DPO, seed=0,
                        progress=False)
    assert job.full_model
    result = train_dpo(job, PAIRS, out).summary()
    assert result["curve"][0]["loss"] == pytest.approx(math.log(2)) and result["curve"][-1]["margin"] > 0
    assert (out / "model.safetensors").is_file() and not (out / "adapter_config.json").exists()
    before, after = _weights(start, "model.safetensors"), _weights(out, "model.safetensors")
    assert any(not torch.equal(before[k], after[k]) for k in before)


def test_no_pairs_is_an_error_not_an_empty_run(model_k, tiny_model_dir, tmp_path):
    from humpback.errors import DataError

    job = PreferenceJob(str(tiny_model_dir), str(model_k), TrainConfig(**CFG), DPO, seed=0, progress=False)
    with pytest.raises(DataError, match="no preference pairs to train on"):
        train_dpo(job, [], tmp_path / "dpo")


def test_dpo_job_round_trips_through_the_launch_spec(model_k, tiny_model_dir):
    job = PreferenceJob(str(tiny_model_dir), str(model_k), TrainConfig(**CFG), DPO, seed=3, progress=False)
    spec = json.loads(json.dumps({"kind": job.kind, "job": job.to_dict()}))
    assert launch.job_from_dict(spec["kind"], spec["job"]) == job and spec["kind"] == "dpo"
    assert (launch.job_from_dict("sft", TrainJob("m", TrainConfig(), seed=1).to_dict())
            == TrainJob("m", TrainConfig(), seed=1))


@pytest.mark.parametrize("accelerate_config", ["single_gpu.yaml", "deepspeed_zero2.yaml"])
def test_dpo_runs_under_accelerate_launch(model_k, tiny_model_dir, tmp_path, monkeypatch, caplog, accelerate_config):
    """The same launch path as SFT (tests/test_launch.py): the launched process trains, the parent moves
    the model into place and reads the result."""
    from humpback.store import write_table

    monkeypatch.chdir(ROOT)  # the accelerate files name the DeepSpeed JSONs relative to the repository root
    monkeypatch.setenv("DS_BUILD_OPS", "0")
    monkeypatch.setenv("DS_SKIP_CUDA_CHECK", "1")
    cfg = TrainConfig(**CFG, accelerate_config=f"configs/accelerate/{accelerate_config}", num_processes=1)
    rows = tmp_path / "preferences.parquet"
    write_table(rows, PAIRS)
    job = PreferenceJob(str(tiny_model_dir), str(model_k), cfg, DPO, seed=0, progress=False)
    with caplog.at_level(logging.INFO, logger="humpback.details"):
        result = launch.train_model(job, PAIRS, rows, tmp_path / "model")
    launched = [r.getMessage() for r in caplog.records if r.name == "humpback.details.launch"]
    assert any("trainer step 2" in m and "rewards/margins" in m for m in launched), launched
    assert result["steps"] == 2 and result["curve"][0]["loss"] == pytest.approx(math.log(2), abs=1e-4)
    assert (tmp_path / "model" / "adapter_model.safetensors").is_file() and not (tmp_path / "model" / "ref").exists()


def test_sft_weight_adds_the_chosen_answers_nll_to_the_loss(model_k, tiny_model_dir, tmp_path):
    """RPO: DPO's loss plus sft_weight x the chosen answers' mean NLL. Before the first update DPO's part is
    log 2, so the first loss is log 2 + w x NLL: doubling w doubles what lies above log 2."""
    import dataclasses

    first = {}
    for w in (1.0, 2.0):
        job = PreferenceJob(str(tiny_model_dir), str(model_k), TrainConfig(**CFG),
                            dataclasses.replace(DPO, sft_weight=w), seed=0, progress=False)
        first[w] = train_dpo(job, PAIRS, tmp_path / f"dpo-{w}").summary()["curve"][0]["loss"] - math.log(2)
    assert first[1.0] > 0.1 and first[2.0] == pytest.approx(2 * first[1.0], rel=1e-4)


def test_a_negative_sft_weight_is_named():
    from humpback.config import load_config
    from humpback.errors import ConfigError

    with pytest.raises(ConfigError, match=r"command line: 'dpo.sft_weight' must be >= 0, got -1.0"):
        load_config(ROOT / "recipes" / "tiny-cpu.yaml", ["dpo.sft_weight=-1"])
