"""The ``vllm`` backend: offline ``vllm.LLM.generate`` on one or more GPUs (tensor parallelism), LoRA
adapters applied per request (``enable_lora`` + ``LoRARequest``), never merged.

Prompts are tokenised here, exactly as the ``hf`` backend does (no doubled BOS, cut from the left to
``max_prompt_tokens``), and passed as token ids. Choice probabilities generate one token with its top
``TOP_LOGPROBS`` logprobs (``SamplingParams(max_tokens=1, logprobs=20)``) and read the choices' token
ids from them; prompt logprobs are asked for only by :meth:`VLLMGenerator.loglik` (the likelihood judge),
which needs them.

Install with ``pip install humpback[vllm]``; vLLM is imported only when a generator is made.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

from ..device import free_memory
from ..errors import ConfigError
from .base import (AnswerLogprobs, ChoiceProbs, Completion, LogLik, SamplingParams, Usage, cut_at_stop, encode_pairs,
                   encode_prompts, generator_name, prompt_seed)
from .constraints import vllm_structured_outputs
from .hf import CHOICE_PROBE, choice_token_ids
from .logprobs import TOP_LOGPROBS, answer_logprobs_from_top, choice_probs_from_top

# The LoRA ranks vLLM accepts for max_lora_rank; an adapter's rank is rounded up to the next one.
LORA_RANKS = (8, 16, 32, 64, 128, 256, 320, 512)


def lora_rank_for(adapter: str | None, default: int = 16) -> int:
    """``max_lora_rank`` for an adapter folder: its ``r`` rounded up to a rank vLLM accepts."""
    if adapter is None:
        return default
    try:
        r = int(json.loads((Path(adapter) / "adapter_config.json").read_text())["r"])
    except (OSError, ValueError, KeyError, TypeError):
        return default
    return next((k for k in LORA_RANKS if k >= r), r)


def loglik_from_prompt_logprobs(prompt_logprobs, ids: list[int], start: int, name: str = "vllm") -> LogLik:
    """Sum the logprobs of ``ids[start:]`` from vLLM's ``prompt_logprobs`` (one ``{token id: Logprob}``
    per prompt position, None at the first)."""
    if not prompt_logprobs or len(prompt_logprobs) != len(ids):
        raise ConfigError(f"{name}: vLLM returned no prompt logprobs for a request with prompt_logprobs=0")
    total = 0.0
    for i in range(start, len(ids)):
        entry = prompt_logprobs[i]
        lp = entry.get(ids[i]) if entry is not None else None
        if lp is None:
            raise ConfigError(f"{name}: vLLM's prompt logprobs lack the prompt's own token at position {i}")
        total += float(getattr(lp, "logprob", lp))
    return LogLik(logprob=total, tokens=len(ids) - start)


def sampling_kwargs(params: SamplingParams, prompt: str) -> dict:
    """The keyword arguments of ``vllm.SamplingParams`` for one prompt; a constraint goes in
    ``structured_outputs`` as the keyword arguments of ``StructuredOutputsParams`` (vLLM >= 0.12)."""
    greedy = params.temperature == 0
    kwargs = dict(n=1, temperature=params.temperature, top_p=1.0 if greedy else params.top_p,
                  max_tokens=params.max_new_tokens, seed=prompt_seed(params.seed, prompt) & 0x7FFFFFFF,
                  skip_special_tokens=True, presence_penalty=params.presence_penalty,
                  stop=list(params.stop) or None, include_stop_str_in_output=True)
    if params.constraint is not None:
        kwargs["structured_outputs"] = vllm_structured_outputs(params.constraint)
    return kwargs


def _structured_outputs_class():
    try:
        from vllm.sampling_params import StructuredOutputsParams
    except ImportError:
        raise ConfigError("a constraint on the vllm backend needs vLLM >= 0.12 (vllm.sampling_params."
                          "StructuredOutputsParams); upgrade vLLM, or leave the step's constraint unset") from None
    return StructuredOutputsParams


def _import_vllm():
    try:
        import vllm
        from vllm.lora.request import LoRARequest
    except ImportError as e:
        raise ConfigError(
            f"generation.backend=vllm needs vLLM, which is not installed ({e}); install it with "
            f"`pip install humpback[vllm]` on a machine with a CUDA GPU, or use generation.backend=hf"
        ) from None
    return vllm, LoRARequest


class VLLMGenerator:
    """A :class:`~humpback.generation.base.Generator` backed by an offline ``vllm.LLM``."""

    def __init__(
        self,
        model: str,
        adapter: str | None = None,
        revision: str | None = None,
        dtype: str = "auto",
        max_prompt_tokens: int = 2048,
        tensor_parallel_size: int = 1,
        gpu_memory_utilization: float = 0.9,
        seed: int = 0,
        progress: bool = False,
        tokenizer=None,
    ) -> None:
        vllm, LoRARequest = _import_vllm()

        if max_prompt_tokens <= 0 or tensor_parallel_size <= 0 or not 0 < gpu_memory_utilization <= 1:
            raise ConfigError(
                f"vllm backend: max_prompt_tokens and tensor_parallel_size must be > 0 and gpu_memory_utilization "
                f"in (0, 1], got {max_prompt_tokens}, {tensor_parallel_size}, {gpu_memory_utilization}"
            )
        self.name = generator_name(model, revision, adapter)
        self.max_prompt_tokens = max_prompt_tokens
        self.progress = progress
        self._vllm = vllm
        # The run's chat tokenizer (an adapter folder with its own tokenizer wins: humpback.chat).
        if tokenizer is None:
            from ..chat import load_chat_tokenizer

            tokenizer = load_chat_tokenizer(model, revision, adapter)
        self.tokenizer = tokenizer
        tok_source = tokenizer.name_or_path

        # Prefix caching: every judge prompt starts with the same rubric, every backward prompt with the
        # same preamble; vLLM then computes their KV once.
        kwargs = dict(model=model, revision=revision, tokenizer=tok_source, dtype=dtype, seed=seed,
                      tensor_parallel_size=tensor_parallel_size, gpu_memory_utilization=gpu_memory_utilization,
                      enable_prefix_caching=True)
        if adapter:
            kwargs.update(enable_lora=True, max_loras=1, max_lora_rank=lora_rank_for(adapter))
        self.llm = vllm.LLM(**kwargs)
        self.lora = LoRARequest("humpback-adapter", 1, str(adapter)) if adapter else None
        self._choice_cache: dict[tuple[str, ...], tuple[list[int], list[int]]] = {}
        self.usage = Usage()

    # ----------------------------------------------------------------------- public

    def generate(self, prompts: Sequence[str], params: SamplingParams) -> list[str]:
        sampling = []
        for p in prompts:
            kwargs = sampling_kwargs(params, p)
            if "structured_outputs" in kwargs:
                kwargs["structured_outputs"] = _structured_outputs_class()(**kwargs["structured_outputs"])
            sampling.append(self._vllm.SamplingParams(**kwargs))
        outputs = self._run([{"prompt_token_ids": ids} for ids in self._encode(prompts)], sampling)
        return [Completion(cut_at_stop(o.outputs[0].text, params.stop),
                           "length" if o.outputs[0].finish_reason == "length" else "stop") for o in outputs]

    def choice_probs(self, prompts: Sequence[str], choices: Sequence[str]) -> list[ChoiceProbs]:
        prefix, choice_ids = self._choice_tokens(tuple(choices))
        encoded = [ids + prefix for ids in self._encode(prompts, reserve=len(prefix))]
        sampling = self._vllm.SamplingParams(n=1, temperature=0.0, max_tokens=1, logprobs=TOP_LOGPROBS)
        outputs = self._run([{"prompt_token_ids": ids} for ids in encoded], sampling)
        by_id = dict(zip(choice_ids, choices))
        out = []
        for o in outputs:
            steps = o.outputs[0].logprobs
            if not steps:
                raise ConfigError(f"{self.name}: vLLM returned no logprobs for a request with logprobs={TOP_LOGPROBS}")
            # One entry per generated token: {token id: Logprob(logprob, rank, decoded_token)}.
            top = [(by_id[tid], lp.logprob) for tid, lp in steps[0].items() if tid in by_id]
            out.append(choice_probs_from_top(top, choices))
        return out

    def loglik(self, prompts: Sequence[str], continuations: Sequence[str]) -> list[LogLik]:
        """The pairs' ids (as the hf backend cuts them) with ``prompt_logprobs=0``: vLLM returns each prompt
        token's own logprob, summed here over the continuation."""
        pairs = encode_pairs(self.tokenizer, prompts, continuations, self.max_prompt_tokens)
        sampling = self._vllm.SamplingParams(n=1, temperature=0.0, max_tokens=1, prompt_logprobs=0)
        outputs = self._run([{"prompt_token_ids": ids} for ids, _ in pairs], sampling)
        return [loglik_from_prompt_logprobs(o.prompt_logprobs, ids, start, self.name)
                for o, (ids, start) in zip(outputs, pairs)]

    def answer_logprobs(self, prompts: Sequence[str], answers: Sequence[Sequence[str]]) -> list[AnswerLogprobs]:
        """From the top ``TOP_LOGPROBS`` logprobs of one generated token (see logprobs.answer_logprobs_from_top)."""
        sampling = self._vllm.SamplingParams(n=1, temperature=0.0, max_tokens=1, logprobs=TOP_LOGPROBS)
        outputs = self._run([{"prompt_token_ids": ids} for ids in self._encode(prompts)], sampling)
        out = []
        for o in outputs:
            steps = o.outputs[0].logprobs
            if not steps:
                raise ConfigError(f"{self.name}: vLLM returned no logprobs for a request with logprobs={TOP_LOGPROBS}")
            top = [(lp.decoded_token if lp.decoded_token is not None else self.tokenizer.decode([tid]), lp.logprob)
                   for tid, lp in steps[0].items()]
            out.append(answer_logprobs_from_top(top, answers))
        return out

    def close(self) -> None:
        """Drop the engine and free what GPU memory vLLM lets go of."""
        self.llm = None
        try:
            from vllm.distributed.parallel_state import destroy_distributed_environment, destroy_model_parallel

            destroy_model_parallel()
            destroy_distributed_environment()
        except Exception:  # noqa: BLE001 - older/newer vLLM layouts; freeing is best effort
            pass
        free_memory()

    # ----------------------------------------------------------------------- helpers

    def _run(self, prompts: list[dict], sampling):
        self.usage += Usage(calls=1)
        if not prompts:
            return []
        from ..progress import task

        # vLLM's own bar would write to the run's log; the stage's bar moves when the call returns.
        with task(len(prompts), "prompts", "generate", show=self.progress) as bar:
            outputs = self.llm.generate(prompts, sampling, use_tqdm=False, lora_request=self.lora)
            bar.update(len(prompts))
        # Exact, from what vLLM says it ran: the prompt ids given and the ids it generated.
        self.usage += Usage(prompts=len(outputs), prompt_tokens=sum(len(p["prompt_token_ids"]) for p in prompts),
                            generated_tokens=sum(len(o.outputs[0].token_ids) for o in outputs))
        return outputs

    def _encode(self, prompts: Sequence[str], reserve: int = 0) -> list[list[int]]:
        return encode_prompts(self.tokenizer, prompts, self.max_prompt_tokens, reserve)

    def _choice_tokens(self, choices: tuple[str, ...]) -> tuple[list[int], list[int]]:
        if choices not in self._choice_cache:
            encode = lambda s: self.tokenizer(s, add_special_tokens=False)["input_ids"]  # noqa: E731
            self._choice_cache[choices] = choice_token_ids(encode, choices, self.name, probe=CHOICE_PROBE)
        return self._choice_cache[choices]
