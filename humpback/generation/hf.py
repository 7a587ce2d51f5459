"""The transformers backend: batched generation and choice probabilities with a local or hub model,
optionally with a LoRA adapter applied (not merged).
"""

from __future__ import annotations

import gc
from typing import Callable, Sequence

from ..device import pick_device
from ..errors import ConfigError
from .base import (AnswerLogprobs, ChoiceProbs, Completion, LogLik, SamplingParams, Usage, answer_token_ids,
                   cut_at_stop, encode_pairs, encode_prompts, generator_name, prompt_seed)
from .decoding import Decoder, shared_prefix_length

# The text that precedes a choice when the choice tokens are worked out (see choice_token_ids).
CHOICE_PROBE = "Score:"


def choice_token_ids(
    encode: Callable[[str], list[int]], choices: Sequence[str], model_name: str = "model",
    probe: str = CHOICE_PROBE,
) -> tuple[list[int], list[int]]:
    """(prefix ids, one token id per choice) for reading ``choices`` after a prompt like ``probe``.

    The continuation of ``probe + " " + c`` beyond ``probe``'s own tokens is what the model must
    produce for choice ``c``. Tokenisers differ: a byte-level BPE gives one token ("Ġ5"), a
    SentencePiece one may give a lone "▁" then "5". The continuations' longest common prefix is
    appended to every prompt; what remains must be exactly one distinct token per choice.
    """
    if not choices:
        raise ConfigError("choice_probs needs at least one choice")
    base = encode(probe)
    conts = []
    for c in choices:
        ids = encode(f"{probe} {c}")
        if ids[: len(base)] != base:
            raise ConfigError(
                f"{model_name}: the tokenizer splits {probe!r} differently when followed by {' ' + c!r}; "
                f"cannot read probabilities for choices {list(choices)} (use generate-mode scoring)"
            )
        conts.append(ids[len(base):])
    prefix = []
    for column in zip(*conts):
        if len(set(column)) != 1:
            break
        prefix.append(column[0])
    rest = [c[len(prefix):] for c in conts]
    ids = [r[0] for r in rest if len(r) == 1]
    if len(ids) != len(choices) or len(set(ids)) != len(ids):
        raise ConfigError(
            f"{model_name}: choices {list(choices)} are not one distinct token each after {probe!r} "
            f"(continuations after a common prefix {prefix}: {rest}); use generate-mode scoring"
        )
    return prefix, ids


class HFGenerator:
    """A :class:`~humpback.generation.base.Generator` backed by ``transformers``."""

    def __init__(
        self,
        model: str,
        adapter: str | None = None,
        revision: str | None = None,
        device: str = "auto",
        dtype: str = "auto",
        batch_size: int = 16,
        sort_by_length: bool = True,
        max_prompt_tokens: int = 2048,
        progress: bool = False,
        tokenizer=None,
    ) -> None:
        import torch
        from transformers import AutoModelForCausalLM

        if batch_size <= 0 or max_prompt_tokens <= 0:
            raise ConfigError(f"batch_size and max_prompt_tokens must be > 0, got {batch_size}, {max_prompt_tokens}")
        self.name = generator_name(model, revision, adapter)
        self.batch_size = batch_size
        self.sort_by_length = sort_by_length
        self.max_prompt_tokens = max_prompt_tokens
        self.progress = progress
        self.device = torch.device(pick_device(device))
        self.dtype = _pick_dtype(dtype, self.device)

        # The run's chat tokenizer (an adapter folder with its own tokenizer wins: humpback.chat).
        if tokenizer is None:
            from ..chat import load_chat_tokenizer

            tokenizer = load_chat_tokenizer(model, revision, adapter)
        self.tokenizer = tokenizer
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token

        kwargs = {"revision": revision} if revision else {}
        net = AutoModelForCausalLM.from_pretrained(model, dtype=self.dtype, **kwargs)
        if adapter:
            from peft import PeftModel

            net = PeftModel.from_pretrained(net, adapter, is_trainable=False)
        self.model = net.to(self.device).eval()

        eos = {self.tokenizer.eos_token_id}
        gen_eos = getattr(getattr(self.model, "generation_config", None), "eos_token_id", None)
        eos.update(gen_eos if isinstance(gen_eos, (list, tuple)) else [gen_eos])
        self.eos_token_ids = sorted(i for i in eos if i is not None)
        self.decoder = Decoder(self.model, self.tokenizer.pad_token_id, self.device)
        self._choice_cache: dict[tuple[str, ...], tuple[list[int], list[int]]] = {}
        self._grammar_cache = None
        self.usage = Usage()

    # ----------------------------------------------------------------------- public

    def generate(self, prompts: Sequence[str], params: SamplingParams) -> list[str]:
        self.usage += Usage(calls=1)
        if not prompts:
            return []
        encoded = self._encode(prompts)
        prefix = self.decoder.prefix(encoded)
        out: list[str | None] = [None] * len(prompts)
        for batch, ids in self._batches(encoded, "generate"):
            seeds = [prompt_seed(params.seed, prompts[i]) for i in batch] if params.temperature > 0 else None
            masks = self._grammars().masks(params.constraint, len(batch)) if params.constraint else None
            new = self.decoder.generate(ids, params.max_new_tokens, self.eos_token_ids, params.temperature,
                                        params.top_p, seeds, prefix, params.presence_penalty, masks)
            for i, tokens in zip(batch, new):
                text = self._decode(tokens)
                cut = cut_at_stop(text, params.stop)
                stopped = any(t in self.eos_token_ids for t in tokens) or len(cut) < len(text) or \
                    any(cut.endswith(s) for s in params.stop)
                out[i] = Completion(cut, "stop" if stopped else "length")
            # Exact: the ids the decode loop produced, up to and including a stop token.
            self.usage += Usage(prompts=len(batch), prompt_tokens=sum(map(len, ids)),
                                generated_tokens=sum(map(len, new)))
        return out  # type: ignore[return-value]

    def choice_probs(self, prompts: Sequence[str], choices: Sequence[str]) -> list[ChoiceProbs]:
        import torch

        self.usage += Usage(calls=1)
        if not prompts:
            return []
        prefix_ids, choice_ids = self._choice_tokens(tuple(choices))
        encoded = [ids + prefix_ids for ids in self._encode(prompts, reserve=len(prefix_ids))]
        shared = self.decoder.prefix(encoded)
        index = torch.tensor(choice_ids, device=self.device)
        out: list[ChoiceProbs | None] = [None] * len(prompts)
        for batch, ids in self._batches(encoded, "score"):
            logits = self.decoder.prefill(ids, shared).logits
            probs = torch.softmax(logits.float(), dim=-1)[:, index]
            mass = probs.sum(-1)
            normed = (probs / mass.unsqueeze(-1)).tolist()
            for row, i in enumerate(batch):
                out[i] = ChoiceProbs(probs=tuple(normed[row]), mass=float(mass[row]))
            self.usage += Usage(prompts=len(batch), prompt_tokens=sum(map(len, ids)))  # one forward, nothing sampled
        return out  # type: ignore[return-value]

    def loglik(self, prompts: Sequence[str], continuations: Sequence[str]) -> list[LogLik]:
        """One forward pass per pair, batched: rows left-padded so that every continuation ends at the
        right edge, and only the logits over the longest continuation are computed."""
        import torch

        self.usage += Usage(calls=1)
        pairs = encode_pairs(self.tokenizer, prompts, continuations, self.max_prompt_tokens)
        out: list[LogLik | None] = [None] * len(pairs)
        for batch, rows in self._batches([ids for ids, _ in pairs], "loglik"):
            n_cont = [len(pairs[i][0]) - pairs[i][1] for i in batch]
            width = max(len(r) for r in rows)
            ids = torch.tensor([[self.tokenizer.pad_token_id] * (width - len(r)) + r for r in rows], dtype=torch.long)
            mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows], dtype=torch.long)
            positions = (mask.cumsum(-1) - 1).clamp(min=0)
            keep = max(n_cont) + 1  # the logits that predict the last max(n_cont) tokens
            with torch.inference_mode():
                logits = self.model(input_ids=ids.to(self.device), attention_mask=mask.to(self.device),
                                    position_ids=positions.to(self.device), logits_to_keep=keep).logits
            logprobs = torch.log_softmax(logits[:, :-1].float(), dim=-1)
            targets = ids[:, width - keep + 1:].to(self.device)
            picked = logprobs.gather(-1, targets.unsqueeze(-1)).squeeze(-1)  # [B, keep - 1]
            for row, i in enumerate(batch):
                n = n_cont[row]
                out[i] = LogLik(logprob=float(picked[row, picked.shape[1] - n:].sum()), tokens=n)
            self.usage += Usage(prompts=len(batch), prompt_tokens=sum(map(len, rows)))  # one forward, nothing sampled
        return out  # type: ignore[return-value]

    def answer_logprobs(self, prompts: Sequence[str], answers: Sequence[Sequence[str]]) -> list[AnswerLogprobs]:
        """Exact: the log-softmax of the next token, log-sum-exp over each answer's token ids."""
        import torch

        self.usage += Usage(calls=1)
        if not prompts:
            return []
        ids = [self._answer_ids(tuple(words)) for words in answers]
        encoded = self._encode(prompts)
        out: list[AnswerLogprobs | None] = [None] * len(prompts)
        for batch, rows in self._prefix_batches(encoded):
            logp = torch.log_softmax(self.decoder.prefill(rows, self.decoder.prefix(rows)).logits.float(), dim=-1)
            per_answer = [torch.logsumexp(logp[:, torch.tensor(a, device=self.device)], dim=-1).tolist() for a in ids]
            for row, i in enumerate(batch):
                out[i] = AnswerLogprobs(tuple(float(lp[row]) for lp in per_answer))
            self.usage += Usage(prompts=len(batch), prompt_tokens=sum(map(len, rows)))  # one forward, nothing sampled
        return out  # type: ignore[return-value]

    def close(self) -> None:
        import torch

        self.model = None
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    # ----------------------------------------------------------------------- helpers

    def _encode(self, prompts: Sequence[str], reserve: int = 0) -> list[list[int]]:
        return encode_prompts(self.tokenizer, prompts, self.max_prompt_tokens, reserve)

    def _batches(self, encoded: list[list[int]], desc: str):
        """(original indices, their ids) per batch; longest first when sorting, so memory peaks early."""
        order = list(range(len(encoded)))
        if self.sort_by_length:
            order.sort(key=lambda i: -len(encoded[i]))
        from ..progress import task

        with task(len(order), "prompts", desc, show=self.progress) as bar:  # the stage's bar, if one is open
            for s in range(0, len(order), self.batch_size):
                batch = order[s: s + self.batch_size]
                yield batch, [encoded[i] for i in batch]
                bar.update(len(batch))

    def _prefix_batches(self, encoded: list[list[int]]):
        """(original indices, their ids) per batch, the prompts that share the longest prefixes together:
        in token order, a batch ends where the next prompt shares less than half of the batch's first
        one. The rubric judge's questions about one pair differ only at the end, so each batch computes
        that pair's text once (its shared prefix) and only the questions per row."""
        order = sorted(range(len(encoded)), key=lambda i: encoded[i])
        batch: list[int] = []
        for i in order:
            if batch and (len(batch) == self.batch_size or
                          2 * shared_prefix_length([encoded[batch[0]], encoded[i]], 1) < len(encoded[batch[0]])):
                yield batch, [encoded[j] for j in batch]
                batch = []
            batch.append(i)
        if batch:
            yield batch, [encoded[j] for j in batch]

    def _grammars(self):
        """The xgrammar compiler for this tokenizer and the model's output width (made on first use)."""
        if self._grammar_cache is None:
            from .grammar import GrammarCache

            width = self.model.get_output_embeddings().weight.shape[0]
            self._grammar_cache = GrammarCache(self.tokenizer, width, self.eos_token_ids)
        return self._grammar_cache

    def _decode(self, ids: list[int]) -> str:
        for j, t in enumerate(ids):
            if t in self.eos_token_ids:
                ids = ids[:j]
                break
        return self.tokenizer.decode(ids, skip_special_tokens=True)

    def _answer_ids(self, words: tuple[str, ...]) -> list[int]:
        ids = answer_token_ids(self.tokenizer, words)
        if not ids:
            raise ConfigError(f"{self.name}: none of {list(words)} is one token for this tokenizer (with or without "
                              f"a leading space), so its probability cannot be read in one forward pass")
        return ids

    def _choice_tokens(self, choices: tuple[str, ...]) -> tuple[list[int], list[int]]:
        if choices not in self._choice_cache:
            encode = lambda s: self.tokenizer(s, add_special_tokens=False)["input_ids"]  # noqa: E731
            self._choice_cache[choices] = choice_token_ids(encode, choices, self.name)
        return self._choice_cache[choices]


def _pick_dtype(dtype: str, device) -> "object":
    import torch

    if dtype == "auto":
        if device.type == "cuda" and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return torch.float32
    table = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
    if dtype not in table:
        raise ConfigError(f"unknown dtype {dtype!r}; known: auto, {', '.join(table)}")
    return table[dtype]
