"""Generation backends behind one small Protocol (see ``base``). Importing this package is cheap:
a backend's module (and torch, vllm, ...) is imported only when a generator is made."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .base import ChoiceProbs, Completion, Generator, SamplingParams, Usage, generator_name

if TYPE_CHECKING:
    from ..config import GenerationConfig

__all__ = ["ChoiceProbs", "Completion", "Generator", "SamplingParams", "Usage", "generator_name", "load_generator"]


def load_generator(
    cfg: "GenerationConfig", model: str, adapter: str | None = None, revision: str | None = None,
    progress: bool = False, seed: int = 0, tokenizer=None, served_name: str | None = None,
) -> Generator:
    """The generator that ``cfg.backend`` names, for ``model`` (+ an optional LoRA adapter).

    ``seed`` seeds the engine where it has one (vllm); per-call sampling seeds come from
    ``SamplingParams.seed``. ``tokenizer``: the chat tokenizer already loaded for the model
    (:func:`humpback.chat.load_chat_tokenizer`), so it is not loaded twice. ``served_name``: openai, the
    name the server serves this model under (default ``cfg.served_model_name``).
    """
    if cfg.backend == "hf":
        from .hf import HFGenerator

        return HFGenerator(
            model, adapter=adapter, revision=revision, device=cfg.device, dtype=cfg.dtype,
            batch_size=cfg.batch_size, sort_by_length=cfg.sort_by_length,
            max_prompt_tokens=cfg.max_prompt_tokens, progress=progress, tokenizer=tokenizer,
        )
    if cfg.backend == "vllm":
        from .vllm import VLLMGenerator

        return VLLMGenerator(
            model, adapter=adapter, revision=revision, dtype=cfg.dtype,
            max_prompt_tokens=cfg.max_prompt_tokens, tensor_parallel_size=cfg.tensor_parallel_size,
            gpu_memory_utilization=cfg.gpu_memory_utilization, seed=seed, progress=progress, tokenizer=tokenizer,
        )
    if cfg.backend == "openai":
        from .openai import OpenAIGenerator

        return OpenAIGenerator(
            cfg.api_base, model, adapter=adapter, revision=revision,
            served_model_name=served_name or cfg.served_model_name, api_key_env=cfg.api_key_env,
            register_adapter=cfg.load_adapters,
            concurrency=cfg.concurrency, timeout_s=cfg.timeout_s, max_retries=cfg.max_retries,
            progress=progress,
        )
    raise ValueError(f"unknown generation backend {cfg.backend!r}")  # config validation prevents this
