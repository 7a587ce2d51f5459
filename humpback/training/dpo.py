"""DPO of model K on its own judged answers, with TRL's ``DPOTrainer``; the reference is model K itself.

A LoRA model K (an adapter over the base model) goes on training that adapter. TRL (1.x) is handed the
``PeftModel`` with no ``ref_model`` and no ``peft_config``: it copies the adapter into a frozen ``ref``
adapter and computes the reference log-probabilities with that one active, so the reference is model K
exactly and the base model's weights are in memory once. The saved model is the trained adapter, on
the base model like every other model of the run (TRL's copy is not kept).

A fully finetuned model K (``train.full_finetune``) is trained whole; with no ``ref_model`` TRL computes
every pair's reference log-probabilities with model K before the first step
(``precompute_ref_log_probs``), so no second copy is held during training either.

The batch, schedule and beta are the ``dpo`` section's; precision, LoRA, ``max_length``, DeepSpeed and
``accelerate launch`` are the ``train`` section's, as for SFT (:mod:`.launch` runs either).
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar, Optional

from ..chat import ensure_chat_template
from ..config import DPOSettings, TrainConfig
from ..device import free_memory
from ..errors import DataError
from ..progress import progress_bars
from .saved import tidy_saved_model
from .schedule import lr_schedule
from .sft import dropout_settings
from .steps import StepBar, step_callback

# What each logging step records: TRL's log key -> our name.
STEP_FIGURES = {"loss": "loss", "rewards/margins": "margin", "rewards/accuracies": "accuracy",
                "rewards/chosen": "chosen_reward", "rewards/rejected": "rejected_reward"}


@dataclass(frozen=True)
class PreferenceJob:
    """One DPO training: model K (``start``, an adapter folder over ``base_model`` or a full model folder),
    the recipe's training and DPO settings. Everything but the pairs and where the model goes."""

    kind: ClassVar[str] = "dpo"
    base_model: str
    start: str
    cfg: TrainConfig
    dpo: DPOSettings
    seed: int
    revision: Optional[str] = None
    progress: bool = True
    report_to: str = "none"
    run_name: Optional[str] = None

    def to_dict(self) -> dict:
        return {**dataclasses.asdict(self), "cfg": dataclasses.asdict(self.cfg), "dpo": dataclasses.asdict(self.dpo)}

    @classmethod
    def from_dict(cls, d: dict) -> "PreferenceJob":
        return cls(**{**d, "cfg": TrainConfig(**d["cfg"]), "dpo": DPOSettings(**d["dpo"])})

    @property
    def full_model(self) -> bool:
        return not (Path(self.start) / "adapter_config.json").is_file()


@dataclass
class PreferenceResult:
    num_examples: int  # pairs given
    steps: int
    train_loss: float
    losses: list[dict] = field(default_factory=list)  # {"step", "loss"} at every logging step
    curve: list[dict] = field(default_factory=list)  # {"step", "loss", "margin", "accuracy", ...} (STEP_FIGURES)
    runtime_s: float = 0.0
    dropped_examples: Optional[int] = None  # pairs whose prompt alone fills train.max_length

    def summary(self) -> dict:
        last = self.curve[-1] if self.curve else {}
        return {"num_examples": self.num_examples, "dropped_examples": self.dropped_examples, "steps": self.steps,
                "train_loss": self.train_loss, "losses": self.losses, "curve": self.curve, "runtime_s": self.runtime_s,
                "final_margin": last.get("margin"), "final_accuracy": last.get("accuracy")}


def train_dpo(job: PreferenceJob, rows: list[dict], output_dir: Path,
              events: Optional[Callable[[dict], None]] = None) -> PreferenceResult:
    """DPO of ``job.start`` on preference ``rows`` (TRL's conversational prompt / chosen / rejected); saves
    the trained adapter (or full model) and the tokenizer in ``output_dir``."""
    from ..preference_pairs import dpo_rows

    rows = dpo_rows(rows)
    if not rows:
        raise DataError("no preference pairs to train on")
    scratch = Path(tempfile.mkdtemp(prefix="humpback-dpo-"))
    bar = StepBar(job.progress) if events is None else None
    try:
        with progress_bars(False):
            trainer = build_dpo_trainer(job, rows, scratch, events or bar)
            dropped = len(rows) - len(trainer.train_dataset)
            out = trainer.train()
            trainer.save_model(str(output_dir))
            trainer.accelerator.wait_for_everyone()
        state = trainer.state
        curve = [{"step": h["step"],
                  **{ours: float(h[theirs]) for theirs, ours in STEP_FIGURES.items() if theirs in h}}
                 for h in state.log_history if "loss" in h]
        result = PreferenceResult(num_examples=len(rows), steps=state.global_step, train_loss=float(out.training_loss),
                                  losses=[{"step": c["step"], "loss": c["loss"]} for c in curve], curve=curve,
                                  runtime_s=float(out.metrics.get("train_runtime", 0.0)), dropped_examples=dropped)
        if trainer.args.should_save:
            tidy_saved_model(output_dir)
            shutil.rmtree(Path(output_dir) / "ref", ignore_errors=True)  # TRL's frozen copy of model K
        del trainer
        return result
    finally:
        if bar is not None:
            bar.close()
        shutil.rmtree(scratch, ignore_errors=True)
        free_memory()


def build_dpo_trainer(job: PreferenceJob, rows: list[dict], scratch_dir: Path,
                      events: Optional[Callable[[dict], None]] = None) -> Any:
    """The DPOTrainer that :func:`train_dpo` runs, its reference model K (see the module's docstring)."""
    import torch
    from datasets import Dataset
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, PrinterCallback
    from trl import DPOConfig, DPOTrainer

    cfg, d = job.cfg, job.dpo
    start = Path(job.start)
    # Model K's own tokenizer carries the chat template it was trained with.
    tokenizer = AutoTokenizer.from_pretrained(str(start) if (start / "tokenizer_config.json").is_file()
                                              else job.base_model, revision=None if start.exists() else job.revision)
    ensure_chat_template(tokenizer)
    bf16 = cfg.bf16
    if bf16 is None:
        bf16 = torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    deepspeed = cfg.deepspeed is not None or os.environ.get("ACCELERATE_USE_DEEPSPEED", "").lower() == "true"
    dtype = torch.bfloat16 if bf16 and (not job.full_model or deepspeed) else torch.float32
    # No dropout anywhere (TRL's disable_dropout reaches nn.Dropout modules only, not a config's
    # attention_dropout): the policy and its reference must score a pair alike before the first update.
    weights, kwargs = ((str(start), {}) if job.full_model
                       else (job.base_model, {"revision": job.revision} if job.revision else {}))
    kwargs.update(dict.fromkeys(dropout_settings(AutoConfig.from_pretrained(weights, **kwargs)), 0.0))
    model = AutoModelForCausalLM.from_pretrained(weights, dtype=dtype, **kwargs)
    if not job.full_model:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, str(start), is_trainable=True)
    scheduler, scheduler_kwargs = lr_schedule(cfg.lr_scheduler_type, d.learning_rate, d.min_lr_ratio)
    args = DPOConfig(
        output_dir=str(scratch_dir),
        seed=job.seed,
        beta=d.beta,
        # RPO: the DPO loss plus sft_weight x the chosen answers' NLL (TRL's "sft" loss type)
        loss_type=[d.loss_type] + (["sft"] if d.sft_weight else []),
        loss_weights=[1.0, d.sft_weight] if d.sft_weight else None,
        learning_rate=d.learning_rate,
        lr_scheduler_type=scheduler,
        lr_scheduler_kwargs=scheduler_kwargs,
        warmup_steps=min(cfg.warmup_ratio, 0.999),  # a float below 1 is the ratio (transformers 5)
        weight_decay=cfg.weight_decay,
        num_train_epochs=d.num_train_epochs,
        max_steps=d.max_steps,
        per_device_train_batch_size=d.per_device_train_batch_size,
        gradient_accumulation_steps=d.gradient_accumulation_steps,
        max_length=cfg.max_length,
        activation_checkpointing=cfg.gradient_checkpointing,
        bf16=bf16,
        fp16=False,
        logging_steps=cfg.logging_steps,
        deepspeed=cfg.deepspeed,
        precompute_ref_log_probs=job.full_model,  # a full model K: its log-probs first, no second copy
        save_strategy="no",
        report_to=job.report_to,
        run_name=job.run_name,
        disable_tqdm=True,
        dataloader_pin_memory=torch.cuda.is_available(),
    )
    trainer = DPOTrainer(model=model, args=args, train_dataset=Dataset.from_list(rows), processing_class=tokenizer,
                         callbacks=[step_callback(events or (lambda event: None))])
    trainer.remove_callback(PrinterCallback)
    return trainer
