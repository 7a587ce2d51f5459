"""Finetuning: real SFT runs of a few steps on the tiny local Llama, the completion-only loss mask,
the paper's step table, DeepSpeed ZeRO-2 on CPU, and the launch configs."""

from __future__ import annotations

import json
import math
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from humpback.chat import FALLBACK_CHAT_TEMPLATE
from humpback.config import TrainConfig
from humpback.errors import DataError
from humpback.training import (
    TrainJob,
    build_trainer,
    paper_accumulation,
    paper_batch_size,
    paper_steps,
    to_prompt_completion,
    train_sft,
)
from humpback.training.sft import checkpointing_argument

REPO = Path(__file__).resolve().parents[1]


def _rows(n: int, system: str | None = "Answer in the style of an AI Assistant.") -> list[dict]:
    rows = []
    for i in range(n):
        messages = [{"role": "system", "content": system}] if system else []
        messages += [
            {"role": "user", "content": f"What is {i} plus {i}?"},
            {"role": "assistant", "content": f"The sum of {i} and {i} is {2 * i}."},
        ]
        rows.append({"messages": messages})
    return rows


def _cfg(**kw) -> TrainConfig:
    base = dict(max_steps=4, per_device_train_batch_size=4, gradient_accumulation_steps=1,
                logging_steps=1, max_length=128, learning_rate=1e-2, warmup_ratio=0.0)
    return TrainConfig(**{**base, **kw})


# --------------------------------------------------------------------------- pure functions


def test_paper_steps_at_table_points():
    table = {100: 30, 800: 300, 1_600: 600, 3_200: 500, 6_400: 600, 12_800: 600, 25_600: 1_200, 51_200: 1_600}
    assert {n: paper_steps(n) for n in table} == table


def test_paper_steps_between_and_outside():
    assert paper_steps(450) == 165  # halfway 100 -> 800: 30 -> 300
    assert paper_steps(2_400) == 550  # halfway 1,600 -> 3,200: 600 -> 500 (the table dips)
    assert paper_steps(9_600) == 600
    assert paper_steps(19_200) == 900
    assert paper_steps(38_400) == 1_400
    assert paper_steps(1) == 30 and paper_steps(16) == 30  # clamped below
    assert paper_steps(502_133) == 1_600  # clamped above


def test_paper_batch_and_accumulation():
    assert paper_batch_size(2_999) == 8 and paper_batch_size(3_000) == 32
    assert paper_accumulation(3_200, per_device_batch=8, world_size=1) == 4
    assert paper_accumulation(3_200, per_device_batch=4, world_size=8) == 1
    assert paper_accumulation(3_200, per_device_batch=2, world_size=4) == 4
    assert paper_accumulation(100, per_device_batch=4, world_size=1) == 2
    assert paper_accumulation(100, per_device_batch=16, world_size=1) == 1  # never below one


def test_to_prompt_completion_splits_at_the_last_assistant_turn():
    (row,) = to_prompt_completion(_rows(1))
    assert [m["role"] for m in row["prompt"]] == ["system", "user"]
    assert row["completion"] == [{"role": "assistant", "content": "The sum of 0 and 0 is 0."}]
    with pytest.raises(DataError, match="row 0"):
        to_prompt_completion([{"messages": [{"role": "user", "content": "Q"}]}])
    with pytest.raises(DataError, match="row 0: every message needs"):
        to_prompt_completion([{"messages": [{"role": "user"}, {"role": "assistant", "content": "A"}]}])
    with pytest.raises(DataError, match="row 1: the last message must be the assistant"):
        to_prompt_completion(_rows(1) + [{"messages": [{"role": "assistant", "content": "A"},
                                                       {"role": "user", "content": "Q"}]}])


# --------------------------------------------------------------------------- trainer set-up


def test_only_completion_tokens_are_trained(tiny_model_dir, tmp_path):
    trainer = build_trainer(TrainJob(str(tiny_model_dir), _cfg(), seed=0, progress=False), _rows(4), tmp_path)
    tok = trainer.processing_class
    assert tok.chat_template == FALLBACK_CHAT_TEMPLATE  # the base has none: the fallback was installed
    row = trainer.train_dataset[1]
    ids, labels = row["input_ids"], row["labels"]
    assert tok.decode(ids) == (
        "<|system|>\nAnswer in the style of an AI Assistant.\n<|user|>\nWhat is 1 plus 1?\n"
        "<|assistant|>\nThe sum of 1 and 1 is 2.</s>"
    )
    trained = [i for i, label in zip(ids, labels) if label != -100]
    assert tok.decode(trained) == "The sum of 1 and 1 is 2.</s>"
    # Masked tokens are exactly the prompt prefix; trained labels equal the inputs.
    n_prompt = labels.index(next(label for label in labels if label != -100))
    assert all(label == -100 for label in labels[:n_prompt])
    assert labels[n_prompt:] == ids[n_prompt:]
    assert tok.decode(ids[:n_prompt]).endswith("<|assistant|>\n")

    # The batches the trainer trains on carry the same mask (padding masked too).
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(4)])
    for b in range(4):
        seq = batch["input_ids"][b][batch["attention_mask"][b].bool()].tolist()
        lab = batch["labels"][b][batch["attention_mask"][b].bool()].tolist()
        assert tok.decode([t for t, label in zip(seq, lab) if label != -100]).startswith("The sum of")
    assert (batch["labels"][batch["attention_mask"] == 0] == -100).all()


def test_trainer_settings_from_config(tiny_model_dir, tmp_path):
    cfg = _cfg(steps="paper", max_steps=-1, per_device_train_batch_size=2, lora_target_modules="q_proj, v_proj",
               lr_scheduler_type="cosine", weight_decay=0.1, warmup_ratio=0.1)
    trainer = build_trainer(TrainJob(str(tiny_model_dir), cfg, seed=3, progress=False), _rows(16), tmp_path)
    args = trainer.args
    assert args.max_steps == 30  # the paper's table, clamped below 100 examples
    assert args.gradient_accumulation_steps == 4  # 2 per device x 4 = the paper's batch of 8
    assert (args.lr_scheduler_type, args.weight_decay, args.warmup_steps) == ("cosine", 0.1, 0.1)
    assert (args.seed, args.save_strategy, args.report_to) == (3, "no", [])
    assert args.bf16 is False  # bf16 null: off on a CPU
    assert getattr(args, checkpointing_argument()) is False  # activation_checkpointing, or its older name
    assert set(trainer.model.peft_config["default"].target_modules) == {"q_proj", "v_proj"}

    # max_steps > 0 wins over the paper's table.
    trainer = build_trainer(TrainJob(str(tiny_model_dir), _cfg(steps="paper", max_steps=7), seed=0, progress=False),
                            _rows(4), tmp_path)
    assert trainer.args.max_steps == 7


def test_lr_schedule_with_a_floor():
    from humpback.training.schedule import lr_schedule

    assert lr_schedule("linear", 1e-5, None) == ("linear", {})
    assert lr_schedule("linear", 1e-5, 0.9) == ("polynomial", {"lr_end": 1e-5 * 0.9, "power": 1.0})
    assert lr_schedule("cosine", 1e-5, 0.5) == ("cosine_with_min_lr", {"min_lr_rate": 0.5})
    with pytest.raises(ValueError, match="min_lr_ratio needs lr_scheduler_type linear or cosine"):
        lr_schedule("constant", 1e-5, 0.9)


def test_learning_rate_decays_linearly_to_the_floor(tiny_model_dir, tmp_path):
    """The paper's 1e-5 -> 9e-6, read from the Trainer's own log at every step."""
    cfg = _cfg(max_steps=5, learning_rate=1e-5, min_lr_ratio=0.9, full_finetune=True)
    trainer = build_trainer(TrainJob(str(tiny_model_dir), cfg, seed=0, progress=False), _rows(8), tmp_path)
    trainer.train()
    lrs = [h["learning_rate"] for h in trainer.state.log_history if "learning_rate" in h]
    # The rate each of the 5 steps used, then where the schedule ends: the floor, 0.9 x the peak.
    assert lrs == pytest.approx([1e-5 - k * 0.2e-6 for k in range(5)], rel=1e-6)
    assert trainer.lr_scheduler.get_last_lr()[0] == pytest.approx(9e-6, rel=1e-6)


def test_full_finetune_sets_the_models_dropout(tiny_model_dir, tmp_path):
    job = TrainJob(str(tiny_model_dir), _cfg(full_finetune=True, dropout=0.1), seed=0, progress=False)
    assert build_trainer(job, _rows(4), tmp_path).model.config.attention_dropout == 0.1
    job = TrainJob(str(tiny_model_dir), _cfg(full_finetune=True, dropout=None), seed=0, progress=False)
    assert build_trainer(job, _rows(4), tmp_path).model.config.attention_dropout == 0.0
    lora = build_trainer(TrainJob(str(tiny_model_dir), _cfg(dropout=0.1), seed=0, progress=False), _rows(4), tmp_path)
    assert lora.model.config.attention_dropout == 0.0  # LoRA: lora_dropout on the adapter instead


# --------------------------------------------------------------------------- real training runs


@pytest.fixture(scope="module")
def lora_run(tiny_model_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("lora") / "adapter"
    result = train_sft(TrainJob(str(tiny_model_dir), _cfg(), seed=0, progress=False), _rows(16), out)
    return result, out


def test_lora_training_records_a_finite_loss(lora_run):
    result, _ = lora_run
    assert result.num_examples == 16 and result.steps == 4
    assert math.isfinite(result.train_loss) and result.train_loss > 0
    assert [h["step"] for h in result.losses] == [1, 2, 3, 4]
    assert all(math.isfinite(h["loss"]) for h in result.losses)
    assert result.losses[-1]["loss"] < result.losses[0]["loss"]  # lr 1e-2: it learns something
    assert result.tokens is not None and result.tokens > 16 * 20
    assert result.runtime_s > 0


def test_lora_adapter_and_tokenizer_are_saved_and_load(lora_run, tiny_model_dir):
    import torch
    from peft import PeftModel
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM, AutoTokenizer

    _, out = lora_run
    files = {p.name for p in out.iterdir()}
    assert {"adapter_config.json", "adapter_model.safetensors", "tokenizer_config.json"} <= files
    assert not any(name.startswith("checkpoint-") for name in files)
    assert "model.safetensors" not in files and "training_args.bin" not in files

    assert AutoTokenizer.from_pretrained(out).chat_template == FALLBACK_CHAT_TEMPLATE

    weights = load_file(out / "adapter_model.safetensors")
    lora_b = [w for name, w in weights.items() if "lora_B" in name]
    assert lora_b and any(w.abs().max() > 0 for w in lora_b)  # B starts at zero: it was trained
    targeted = {name.split(".")[-3] for name in weights if "lora_A" in name}
    assert {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"} <= targeted

    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    ids = torch.tensor([[5, 6, 7, 8]])
    with torch.no_grad():
        before = base(ids).logits
        model = PeftModel.from_pretrained(base, out)
        after = model(ids).logits
    assert not torch.allclose(before, after)


def test_full_finetune_saves_a_whole_model(tiny_model_dir, tmp_path):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = tmp_path / "full"
    result = train_sft(TrainJob(str(tiny_model_dir), _cfg(max_steps=2, full_finetune=True, learning_rate=1e-3),
                                seed=0, progress=False), _rows(8), out)
    assert result.steps == 2 and math.isfinite(result.train_loss)
    assert (out / "model.safetensors").is_file() and not (out / "adapter_config.json").exists()
    assert result.dropout == {"attention_dropout": 0.1} and result.summary()["dropout"] == result.dropout
    assert AutoTokenizer.from_pretrained(out).chat_template == FALLBACK_CHAT_TEMPLATE
    trained = AutoModelForCausalLM.from_pretrained(out).state_dict()
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir).state_dict()
    name = "model.layers.0.self_attn.q_proj.weight"
    assert not torch.equal(trained[name], base[name])


def test_examples_whose_prompt_fills_max_length_are_counted(tiny_model_dir, tmp_path):
    rows = _rows(6)
    for row in rows[:2]:  # prompts far past max_length=64
        row["messages"][1]["content"] = "Please explain this. " * 60
    result = train_sft(TrainJob(str(tiny_model_dir), _cfg(max_steps=1, max_length=64), seed=0, progress=False),
                       rows, tmp_path / "m")
    assert result.num_examples == 6 and result.dropped_examples == 2
    assert result.summary()["dropped_examples"] == 2
    packed = train_sft(TrainJob(str(tiny_model_dir), _cfg(max_steps=1, max_length=64, packing=True), seed=0,
                                progress=False), rows, tmp_path / "p")
    assert packed.dropped_examples is None  # packing joins examples: the count is not knowable


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_deepspeed_zero2_on_cpu_in_one_process(tiny_model_dir, tmp_path):
    # In its own process: DeepSpeed and accelerate keep global distributed state.
    out = tmp_path / "zero2"
    script = textwrap.dedent(f"""
        import importlib, json
        from pathlib import Path
        from humpback.config import TrainConfig
        from humpback.training import TrainJob, train_sft

        # DeepSpeed compiles a C++ shared-memory all-reduce for CPUs on first use (~30 s, cached in
        # ~/.cache/torch_extensions); one process never all-reduces, so skip building it.
        importlib.import_module("deepspeed.comm.torch").build_shm_op = lambda: None
        rows = [{{"messages": [{{"role": "user", "content": f"Question {{i}}?"}},
                               {{"role": "assistant", "content": f"Answer {{i}}."}}]}} for i in range(8)]
        cfg = TrainConfig(max_steps=2, per_device_train_batch_size=2, gradient_accumulation_steps=1,
                          logging_steps=1, max_length=64, deepspeed="configs/deepspeed/zero2.json")
        r = train_sft(TrainJob({str(tiny_model_dir)!r}, cfg, seed=0, progress=False), rows, Path({str(out)!r}))
        print("RESULT " + json.dumps({{"steps": r.steps, "loss": r.train_loss}}))
    """)
    env = {**os.environ, "RANK": "0", "WORLD_SIZE": "1", "LOCAL_RANK": "0", "MASTER_ADDR": "127.0.0.1",
           "MASTER_PORT": str(_free_port())}
    proc = subprocess.run([sys.executable, "-c", script], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.split("RESULT ", 1)[1].splitlines()[0])
    assert result["steps"] == 2 and math.isfinite(result["loss"])
    assert (out / "adapter_model.safetensors").is_file() and (out / "tokenizer_config.json").is_file()


def test_two_processes_match_one_at_the_paper_batch(tiny_model_dir, tmp_path):
    # DDP over gloo on the CPU (accelerate needs ACCELERATE_USE_CPU to go distributed without a GPU).
    # With steps=paper the effective batch is 8 either way: 2 x 4 accumulation, or 2 x 2 processes x 2.
    cfg = dict(steps="paper", max_steps=3, per_device_train_batch_size=2, logging_steps=1, max_length=64)
    script = tmp_path / "ddp.py"
    script.write_text(textwrap.dedent(f"""
        import json, os
        from pathlib import Path
        from humpback.config import TrainConfig
        from humpback.training import TrainJob, train_sft

        rows = [{{"messages": [{{"role": "user", "content": f"Question {{i}}?"}},
                               {{"role": "assistant", "content": f"Answer {{i}}."}}]}} for i in range(16)]
        r = train_sft(TrainJob({str(tiny_model_dir)!r}, TrainConfig(**{cfg!r}), seed=0, progress=False), rows,
                      Path({str(tmp_path / "ddp")!r}))
        print("RESULT " + json.dumps({{"rank": os.environ["RANK"], "steps": r.steps, "losses": r.losses,
                                       "tokens": r.tokens}}))
    """))
    env = {**os.environ, "ACCELERATE_USE_CPU": "true", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
         "--master_port", str(_free_port()), str(script)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = [json.loads(line.split("RESULT ", 1)[1]) for line in proc.stdout.splitlines() if "RESULT " in line]
    assert sorted(r["rank"] for r in results) == ["0", "1"]
    assert results[0]["losses"] == results[1]["losses"] and results[0]["tokens"] == results[1]["tokens"]
    assert (tmp_path / "ddp" / "adapter_model.safetensors").is_file()

    single = train_sft(TrainJob(str(tiny_model_dir), TrainConfig(**cfg), seed=0, progress=False), _ddp_rows(),
                       tmp_path / "one")
    assert results[0]["steps"] == single.steps == 3
    assert results[0]["tokens"] == single.tokens  # tokens of both processes together
    assert [h["loss"] for h in results[0]["losses"]] == pytest.approx([h["loss"] for h in single.losses], abs=1e-3)


def _ddp_rows() -> list[dict]:
    return [{"messages": [{"role": "user", "content": f"Question {i}?"},
                          {"role": "assistant", "content": f"Answer {i}."}]} for i in range(16)]


# --------------------------------------------------------------------------- launch configs


ACCELERATE_CONFIGS = sorted((REPO / "configs" / "accelerate").glob("*.yaml"))


def test_all_expected_accelerate_configs_exist():
    assert {p.name for p in ACCELERATE_CONFIGS} >= {
        "single_gpu.yaml", "multi_gpu.yaml", "deepspeed_zero2.yaml", "deepspeed_zero3.yaml"}


@pytest.mark.parametrize("path", ACCELERATE_CONFIGS, ids=lambda p: p.name)
def test_accelerate_config_parses_and_points_at_a_deepspeed_json(path):
    from accelerate.commands.config.config_args import load_config_from_file

    text = path.read_text()
    assert f"humpback run recipes/<recipe>.yaml train.accelerate_config=configs/accelerate/{path.name}" in text
    raw = yaml.safe_load(text)
    loaded = load_config_from_file(str(path))  # accelerate's own reader accepts every key
    if raw["distributed_type"] != "DEEPSPEED":
        assert "deepspeed_config" not in raw
        return
    # accelerate rejects mixed_precision beside a DeepSpeed JSON: the JSON's "auto" decides.
    assert "mixed_precision" not in raw
    ds_path = REPO / loaded.deepspeed_config["deepspeed_config_file"]
    assert ds_path.is_file()
    ds = json.loads(ds_path.read_text())
    stage = int(path.stem[-1])
    assert ds["zero_optimization"]["stage"] == stage
    assert loaded.deepspeed_config.get("zero3_init_flag", False) == (stage == 3)
    for key in ("train_batch_size", "train_micro_batch_size_per_gpu", "gradient_accumulation_steps"):
        assert ds[key] == "auto"
    assert ds["bf16"]["enabled"] == "auto" and ds["fp16"]["enabled"] == "auto"


def test_a_saved_adapter_is_the_same_bytes_whatever_the_hash_seed(tmp_path):
    """PEFT writes target_modules from a set: its order followed PYTHONHASHSEED, so two identical trainings
    wrote different files. tidy_saved_model sorts it and drops the Trainer's pickle."""
    import json

    from humpback.training.saved import tidy_saved_model

    config = {"r": 4, "target_modules": ["v_proj", "q_proj", "o_proj"], "modules_to_save": None,
              "layers_to_transform": [3, 1]}
    for name, order in (("a", ["v_proj", "q_proj", "o_proj"]), ("b", ["o_proj", "v_proj", "q_proj"])):
        (tmp_path / name).mkdir()
        (tmp_path / name / "adapter_config.json").write_text(json.dumps({**config, "target_modules": order}))
        (tmp_path / name / "training_args.bin").write_bytes(b"pickle")
        tidy_saved_model(tmp_path / name)
        assert not (tmp_path / name / "training_args.bin").exists()
    a, b = ((tmp_path / n / "adapter_config.json").read_text() for n in "ab")
    assert a == b and json.loads(a) == {**config, "target_modules": ["o_proj", "q_proj", "v_proj"]}
