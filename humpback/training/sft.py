"""Supervised finetuning of the base model on chat rows, loss on the assistant completion only.

Every model of a run (backward, seed, each iteration's) is trained from the base model by
:func:`train_sft`. It runs unchanged in one process or under ``accelerate launch`` with several
processes (DDP or DeepSpeed, see ``configs/accelerate/``): the Trainer distributes the work and only
the main process writes ``output_dir``.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar, Optional

from ..chat import ensure_chat_template
from ..config import TrainConfig
from ..device import free_memory
from ..errors import DataError
from ..progress import progress_bars
from .saved import tidy_saved_model
from .schedule import lr_schedule, paper_accumulation, paper_steps
from .steps import StepBar, step_callback

# A model config's dropout probabilities: attention_dropout (Llama, Qwen2, Mistral), hidden_dropout,
# resid_pdrop / embd_pdrop / attn_pdrop (GPT-2), hidden_dropout_prob (BERT-style), ...
_DROPOUT_KEY = re.compile(r"(dropout|pdrop)", re.IGNORECASE)

@dataclass(frozen=True)
class TrainJob:
    """One finetuning of ``base_model``: everything but the rows and where the model goes."""

    kind: ClassVar[str] = "sft"  # the launcher's name for it (a DPO job is .dpo.PreferenceJob)
    base_model: str
    cfg: TrainConfig
    seed: int
    revision: Optional[str] = None
    progress: bool = True  # the bar of optimizer steps (humpback.training.steps)
    report_to: str = "none"  # the Trainer's own reporting ("wandb": see humpback.tracking)
    run_name: Optional[str] = None

    def to_dict(self) -> dict:
        return {**dataclasses.asdict(self), "cfg": dataclasses.asdict(self.cfg)}

    @classmethod
    def from_dict(cls, d: dict) -> "TrainJob":
        return cls(**{**d, "cfg": TrainConfig(**d["cfg"])})


@dataclass
class TrainResult:
    num_examples: int
    steps: int
    train_loss: float
    losses: list[dict] = field(default_factory=list)  # {"step", "loss"} at every logging step
    runtime_s: float = 0.0
    tokens: Optional[int] = None  # non-padding input tokens seen, all processes together
    # Examples TRL dropped because their prompt alone fills max_length (None with packing: not countable).
    dropped_examples: Optional[int] = None
    dropout: Optional[dict] = None  # full finetuning: the model's dropout settings it trained with

    def summary(self) -> dict:
        """What a finetuning stage records in its stats."""
        return {"num_examples": self.num_examples, "dropped_examples": self.dropped_examples, "steps": self.steps,
                "train_loss": self.train_loss, "losses": self.losses, "runtime_s": self.runtime_s,
                "tokens": self.tokens, "dropout": self.dropout}


def dropout_settings(config: Any) -> dict[str, float]:
    """The dropout probabilities a model config has (numeric attributes named ``*dropout*``/``*pdrop*``)."""
    return {k: v for k, v in config.to_dict().items()
            if _DROPOUT_KEY.search(k) and isinstance(v, (int, float)) and not isinstance(v, bool)}


def to_prompt_completion(rows: list[dict]) -> list[dict]:
    """Chat rows -> TRL's conversational prompt-completion form (the last assistant turn is the completion)."""
    out = []
    for i, row in enumerate(rows):
        messages = row.get("messages") if isinstance(row, dict) else None
        if not isinstance(messages, list) or len(messages) < 2:
            raise DataError(f"training row {i}: needs 'messages' with at least a user and an assistant turn")
        if not all(isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str)
                   for m in messages):
            raise DataError(f"training row {i}: every message needs a string 'role' and 'content'")
        if messages[-1]["role"] != "assistant":
            raise DataError(f"training row {i}: the last message must be the assistant's, "
                            f"got {messages[-1]['role']!r}")
        clean = [{"role": m["role"], "content": m["content"]} for m in messages]
        out.append({"prompt": clean[:-1], "completion": clean[-1:]})
    return out


def train_sft(job: TrainJob, rows: list[dict], output_dir: Path,
              events: Optional[Callable[[dict], None]] = None) -> TrainResult:
    """Finetune ``job.base_model`` on chat ``rows`` and save the adapter (or full model) and tokenizer.
    The training's progress goes to ``events`` (default: a bar of optimizer steps when ``job.progress``)."""
    if not rows:
        raise DataError("no training examples")
    scratch = Path(tempfile.mkdtemp(prefix="humpback-trainer-"))
    bar = StepBar(job.progress) if events is None else None
    try:
        with progress_bars(False):  # TRL's tokenizing bars and the weight loading bar: not ours to show
            trainer = build_trainer(job, rows, scratch, events or bar)
            dropped = None if job.cfg.packing else len(rows) - len(trainer.train_dataset)
            dropout = dropout_settings(trainer.model.config) if job.cfg.full_finetune else None
            out = trainer.train()
            # Every process takes part (ZeRO-3 gathers the weights); only the main one writes. The
            # Trainer saves its processing class, the tokenizer with the chat template used, beside it.
            trainer.save_model(str(output_dir))
            trainer.accelerator.wait_for_everyone()
        state = trainer.state
        result = TrainResult(
            num_examples=len(rows),
            steps=state.global_step,
            train_loss=float(out.training_loss),
            losses=[{"step": h["step"], "loss": float(h["loss"])} for h in state.log_history if "loss" in h],
            runtime_s=float(out.metrics.get("train_runtime", 0.0)),
            tokens=int(state.num_input_tokens_seen) if state.num_input_tokens_seen else None,
            dropped_examples=dropped,
            dropout=dropout,
        )
        if trainer.args.should_save:
            tidy_saved_model(output_dir)
        del trainer
        return result
    finally:
        if bar is not None:
            bar.close()
        shutil.rmtree(scratch, ignore_errors=True)
        free_memory()


def checkpointing_argument() -> str:
    """The training arguments' name for gradient checkpointing: ``activation_checkpointing`` where
    transformers has it (5.25 does, and deprecates the old name), else ``gradient_checkpointing`` (5.17)."""
    import dataclasses

    from transformers import TrainingArguments

    names = {f.name for f in dataclasses.fields(TrainingArguments)}
    return "activation_checkpointing" if "activation_checkpointing" in names else "gradient_checkpointing"


def build_trainer(job: TrainJob, rows: list[dict], scratch_dir: Path,
                  events: Optional[Callable[[dict], None]] = None) -> Any:
    """The SFTTrainer that :func:`train_sft` runs (its prepared dataset is inspectable before training).
    Its progress goes to ``events`` (:mod:`.steps`), its log dicts to the run's log: the Trainer's
    own bar and printed dicts are removed."""
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    cfg, revision = job.cfg, job.revision
    tokenizer = AutoTokenizer.from_pretrained(job.base_model, revision=revision)
    ensure_chat_template(tokenizer)
    dataset = Dataset.from_list(to_prompt_completion(rows))

    bf16 = cfg.bf16
    if bf16 is None:
        bf16 = torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    max_steps = cfg.max_steps
    accumulation = cfg.gradient_accumulation_steps
    if cfg.steps == "paper":
        if max_steps <= 0:
            max_steps = paper_steps(len(rows))
        # Keep the paper's effective batch whatever the number of processes (accelerate sets WORLD_SIZE).
        world = int(os.environ.get("WORLD_SIZE", "1"))
        accumulation = paper_accumulation(len(rows), cfg.per_device_train_batch_size, world)

    # A frozen LoRA base (or a DeepSpeed-managed model, which keeps fp32 master weights) can load in
    # bf16; plain full finetuning keeps fp32 weights and trains under bf16 autocast.
    deepspeed = cfg.deepspeed is not None or os.environ.get("ACCELERATE_USE_DEEPSPEED", "").lower() == "true"
    load_bf16 = bf16 and (not cfg.full_finetune or deepspeed)
    model_kwargs: dict[str, Any] = {"revision": revision, "dtype": "bfloat16" if load_bf16 else "float32"}
    if cfg.full_finetune and cfg.dropout is not None:
        # The paper's dropout, on every dropout probability the model's config has (LoRA: lora_dropout).
        from transformers import AutoConfig

        config = AutoConfig.from_pretrained(job.base_model, revision=revision)
        model_kwargs.update(dict.fromkeys(dropout_settings(config), cfg.dropout))
    scheduler, scheduler_kwargs = lr_schedule(cfg.lr_scheduler_type, cfg.learning_rate, cfg.min_lr_ratio)
    args = SFTConfig(
        output_dir=str(scratch_dir),
        seed=job.seed,
        learning_rate=cfg.learning_rate,
        lr_scheduler_type=scheduler,
        lr_scheduler_kwargs=scheduler_kwargs,
        # transformers 5 has no warmup_ratio: a float below 1 in warmup_steps is the ratio.
        warmup_steps=min(cfg.warmup_ratio, 0.999),
        weight_decay=cfg.weight_decay,
        num_train_epochs=cfg.num_train_epochs,
        max_steps=max_steps,
        per_device_train_batch_size=cfg.per_device_train_batch_size,
        gradient_accumulation_steps=accumulation,
        max_length=cfg.max_length,
        packing=cfg.packing,
        **{checkpointing_argument(): cfg.gradient_checkpointing},
        bf16=bf16,
        fp16=False,
        logging_steps=cfg.logging_steps,
        deepspeed=cfg.deepspeed,
        completion_only_loss=True,
        model_init_kwargs=model_kwargs,
        save_strategy="no",
        report_to=job.report_to,
        run_name=job.run_name,
        disable_tqdm=True,  # the bar is ours (humpback.training.steps)
        include_num_input_tokens_seen="non_padding",
        dataloader_pin_memory=torch.cuda.is_available(),  # pinning needs an accelerator (torch warns otherwise)
    )
    peft_config = None
    if not cfg.full_finetune:
        targets = cfg.lora_target_modules
        peft_config = LoraConfig(
            r=cfg.lora_r,
            lora_alpha=cfg.lora_alpha,
            lora_dropout=cfg.lora_dropout,
            target_modules=(targets if targets == "all-linear"
                            else [t.strip() for t in targets.split(",") if t.strip()]),
            task_type="CAUSAL_LM",
        )
    trainer = SFTTrainer(
        model=job.base_model,
        args=args,
        train_dataset=dataset,
        processing_class=tokenizer,
        peft_config=peft_config,
        callbacks=[step_callback(events or (lambda event: None))],
    )
    from transformers import PrinterCallback

    trainer.remove_callback(PrinterCallback)  # with tqdm off the Trainer would print every log dict
    return trainer


