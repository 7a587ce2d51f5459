"""Finetuning: TRL SFT + PEFT LoRA (``sft``), DPO on preference pairs from a trained model (``dpo``), the
paper's schedule (``schedule``), and where a training runs, in process or under ``accelerate launch``
(``launch``)."""

from .dpo import PreferenceJob, train_dpo
from .launch import train_model
from .schedule import paper_accumulation, paper_batch_size, paper_steps
from .sft import TrainJob, TrainResult, build_trainer, to_prompt_completion, train_sft

__all__ = ["PreferenceJob", "TrainJob", "TrainResult", "build_trainer", "paper_accumulation", "paper_batch_size",
           "paper_steps",
           "to_prompt_completion", "train_dpo", "train_model", "train_sft"]
