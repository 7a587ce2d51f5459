"""Finetuning: TRL SFT + PEFT LoRA (``sft``), the paper's schedule (``schedule``), and where a
training runs, in process or under ``accelerate launch`` (``launch``)."""

from .launch import train_model
from .schedule import paper_accumulation, paper_batch_size, paper_steps
from .sft import TrainJob, TrainResult, build_trainer, to_prompt_completion, train_sft

__all__ = ["TrainJob", "TrainResult", "build_trainer", "paper_accumulation", "paper_batch_size", "paper_steps",
           "to_prompt_completion", "train_model", "train_sft"]
