"""The held-out loss: each model's mean loss on the held-out seed answers given their instructions,
formatted exactly as training formats a seed pair.

A held-out pair becomes the chat a seed pair becomes in every mixture (the seed system tag, the
user turn, the assistant answer) and is tokenised as TRL's SFTTrainer tokenises a conversational
prompt-completion example: the prompt rendered with the generation prompt, the whole chat rendered,
the completion starting where the two diverge, cut to its first ``train.max_length`` tokens. The loss is
the summed negative log-likelihood of the completion tokens over their count (every model of a run
shares the base model's tokenizer, so the figures compare across iterations). A test checks these
tokens against the SFTTrainer's own prepared dataset.
"""

from __future__ import annotations

from typing import Sequence

from ..chat import messages_for
from ..prompts import SEED_SYSTEM_PROMPT

IGNORE = -100


def heldout_messages(pair: dict) -> list[dict]:
    """The chat of a held-out pair, as :func:`humpback.data.mixture.mixture_rows` builds a seed pair's."""
    return messages_for(pair["instruction"], pair["output"], system=SEED_SYSTEM_PROMPT)


def _chat_ids(tokenizer, messages: list[dict], **kw) -> list[int]:
    out = tokenizer.apply_chat_template(messages, tokenize=True, return_dict=True, **kw)
    return list(out["input_ids"])


def tokenize_example(tokenizer, messages: list[dict], max_length: int) -> tuple[list[int], list[int]]:
    """(input_ids, labels) of one chat whose last message is the completion; labels are ``IGNORE``
    on the prompt, as in training."""
    prompt_ids = _chat_ids(tokenizer, messages[:-1], add_generation_prompt=True)
    ids = _chat_ids(tokenizer, messages)
    n = 0
    while n < min(len(prompt_ids), len(ids)) and prompt_ids[n] == ids[n]:
        n += 1
    labels = [IGNORE] * n + ids[n:]
    return ids[:max_length], labels[:max_length]


def completion_losses(model, examples: Sequence[tuple[list[int], list[int]]], pad_id: int, device,
                      batch_size: int = 8) -> list[tuple[float, int]]:
    """(summed loss, predicted tokens) per example; an example with no completion token left gives (0.0, 0).
    Examples are batched longest first, right-padded."""
    import torch

    out: list[tuple[float, int]] = [(0.0, 0)] * len(examples)
    order = sorted(range(len(examples)), key=lambda i: -len(examples[i][0]))
    with torch.inference_mode():
        for s in range(0, len(order), batch_size):
            batch = order[s:s + batch_size]
            width = max(len(examples[i][0]) for i in batch)
            ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
            labels = torch.full((len(batch), width), IGNORE, dtype=torch.long)
            mask = torch.zeros((len(batch), width), dtype=torch.long)
            for row, i in enumerate(batch):
                x, y = examples[i]
                ids[row, :len(x)] = torch.tensor(x)
                labels[row, :len(y)] = torch.tensor(y)
                mask[row, :len(x)] = 1
            logits = model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits.float()
            target = labels[:, 1:].to(device)
            nll = torch.nn.functional.cross_entropy(logits[:, :-1].transpose(1, 2), target, ignore_index=IGNORE,
                                                    reduction="none")
            sums = nll.sum(dim=1).tolist()
            counts = (target != IGNORE).sum(dim=1).tolist()
            for row, i in enumerate(batch):
                out[i] = (float(sums[row]), int(counts[row]))
    return out


def loss_rows(pairs: Sequence[dict], losses: Sequence[tuple[float, int]]) -> list[dict]:
    return [{"id": p["id"], "tokens": n, "loss_sum": total, "loss": total / n if n else None}
            for p, (total, n) in zip(pairs, losses, strict=True)]


def loss_stats(rows: Sequence[dict]) -> dict:
    """``heldout_loss`` (token-weighted mean), ``heldout_loss_pairs_mean`` (mean of per-pair means),
    the token and pair counts, and the pairs whose answer was cut away entirely by ``max_length``."""
    scored = [r for r in rows if r["tokens"]]
    tokens = sum(r["tokens"] for r in scored)
    return {"heldout_loss": sum(r["loss_sum"] for r in scored) / tokens if tokens else None,
            "heldout_loss_pairs_mean": sum(r["loss"] for r in scored) / len(scored) if scored else None,
            "heldout_pairs": len(scored), "heldout_tokens": tokens, "heldout_dropped": len(rows) - len(scored)}


def loss_schema():
    """The rows of ``heldout_loss.parquet``: one per held-out pair."""
    import pyarrow as pa

    return pa.schema([("id", pa.string()), ("tokens", pa.int64()), ("loss_sum", pa.float64()), ("loss", pa.float64())])
