"""The world's base model: a small Llama with a tokenizer made for the world, pretrained briefly on
the world's text so that it plays the part of the pretrained LLM.

The tokenizer is a byte-level BPE whose merges are learned from the world's prose, the chat markers
and the prompts, so a chat example costs a few dozen tokens; every capital letter and digit is split
off as a token of its own, so the payload words the tasks copy, reverse and count are spelled one
letter per token. It has no chat template: humpback's fallback template is installed as for any base
model.

Pretraining is a plain next-token loop over the documents, one per row (a few hundred steps of AdamW
on a model this size; the transformers Trainer would add more overhead than work here).
"""

from __future__ import annotations

import math
from pathlib import Path

SPECIAL_TOKENS = ("<unk>", "<s>", "</s>", "<pad>")
VOCAB_SIZE = 1024
# Spelled one character a token: digits, dashes, and every capital not followed by a small letter (the
# payload words "QLMY", "Q-L-M-Y"; "Answer" stays whole), and a space before a digit (so that "Score:"
# is a token of its own and the score digit follows it, as logits judging needs).
SPELLED = r"[0-9]| (?=[0-9])|-|[A-Z](?![a-z])"
MODEL_SHAPE = dict(hidden_size=96, num_hidden_layers=3, num_attention_heads=4, num_key_value_heads=4,
                   intermediate_size=192, max_position_embeddings=1024, tie_word_embeddings=True)
PRETRAIN = dict(steps=1000, batch_size=128, learning_rate=3e-3, warmup_steps=30, seed=0)


def build_tokenizer(texts: list[str]):
    """Byte-level BPE (vocab ``VOCAB_SIZE``) with capitals and digits isolated, trained on ``texts``."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(SPELLED + "|\n"), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=VOCAB_SIZE, special_tokens=list(SPECIAL_TOKENS),
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(texts, trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>",
                                   unk_token="<unk>", model_max_length=MODEL_SHAPE["max_position_embeddings"])


def pretrain_batches(tokenizer, documents: list[str]) -> tuple["object", "object"]:
    """(ids, attention mask): one row per document (``<s> text </s>``), right-padded. Documents are not
    packed together: a model this small learns to copy within a document much faster when it does not
    also have to learn to ignore its neighbours."""
    import torch

    docs = [[tokenizer.bos_token_id, *tokenizer(text, add_special_tokens=False)["input_ids"], tokenizer.eos_token_id]
            for text in documents]
    width = max(map(len, docs))
    ids = torch.tensor([d + [tokenizer.pad_token_id] * (width - len(d)) for d in docs])
    mask = torch.tensor([[1] * len(d) + [0] * (width - len(d)) for d in docs])
    return ids, mask


def build_base_model(out_dir: str | Path, tokenizer, documents: list[str], pretrain: dict = PRETRAIN) -> dict:
    """A random-init Llama of ``MODEL_SHAPE``, pretrained on ``documents``, saved with its tokenizer.
    Returns what the pretraining did (steps, first and last loss)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from .. import progress

    config = LlamaConfig(vocab_size=len(tokenizer), bos_token_id=tokenizer.bos_token_id,
                         eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id, **MODEL_SHAPE)
    cpu_state, threads = torch.random.get_rng_state(), torch.get_num_threads()
    torch.manual_seed(pretrain["seed"])
    # One thread, whatever the machine: the thread count changes the order of float sums, and a model this
    # small turns that into other weights (built with 2 threads: max weight difference 0.22, last loss
    # 0.6943 against 0.6958). torch 2.12 / transformers 5.17 gave the same weights as 2.13 / 5.25.
    torch.set_num_threads(1)
    try:
        model = LlamaForCausalLM(config)
        ids, mask = pretrain_batches(tokenizer, documents)
        order = torch.randperm(len(ids))
        optimizer = torch.optim.AdamW(model.parameters(), lr=pretrain["learning_rate"], weight_decay=0.01)
        steps, warmup = pretrain["steps"], pretrain["warmup_steps"]
        schedule = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda s: min(1.0, (s + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(s, steps) / steps)))
        model.train()
        losses = []
        with progress.bar(steps, "steps", "pretrain") as shown:
            for step in range(steps):
                _step(model, optimizer, schedule, ids, mask, order, step, pretrain["batch_size"], losses)
                shown.update(1)
                if step % 50 == 0 or step == steps - 1:
                    shown.set_postfix_str(f"loss {losses[-1]:.3f}")
    finally:
        torch.random.set_rng_state(cpu_state)
        torch.set_num_threads(threads)
    model.eval()
    out = Path(out_dir)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return {"steps": steps, "documents": len(ids), "first_loss": losses[0], "last_loss": losses[-1]}


def _step(model, optimizer, schedule, ids, mask, order, step: int, batch_size: int, losses: list) -> None:
    """One AdamW step on the next batch of documents (in ``order``, wrapping around)."""
    import torch

    start = step * batch_size
    rows = order[torch.arange(start, start + batch_size) % len(ids)]
    batch, batch_mask = ids[rows], mask[rows]
    loss = model(input_ids=batch, attention_mask=batch_mask, labels=batch.masked_fill(batch_mask == 0, -100)).loss
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    optimizer.step()
    schedule.step()
    optimizer.zero_grad(set_to_none=True)
    losses.append(float(loss.detach()))
