"""The embedded default assets: they build locally, load back by path, and are deterministic."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from humpback import cache, tiny


def _hashes(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_model_and_tokenizer_load_back_by_path(tiny_model_dir):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    assert model.config.model_type == "llama"
    assert (model.config.hidden_size, model.config.num_hidden_layers, model.config.num_attention_heads) == (64, 2, 4)
    assert model.config.intermediate_size == 128 and model.config.max_position_embeddings == 2048
    assert model.config.vocab_size == len(tok)
    assert 1500 <= len(tok) <= 2000
    assert (tok.bos_token, tok.eos_token, tok.pad_token, tok.unk_token) == ("<s>", "</s>", "<pad>", "<unk>")
    assert model.config.eos_token_id == tok.eos_token_id and model.config.pad_token_id == tok.pad_token_id
    assert not tok.chat_template
    # Score digits are single tokens with and without a leading space, and decode back.
    for d in "12345":
        for text in (d, " " + d):
            ids = tok(text, add_special_tokens=False)["input_ids"]
            assert len(ids) == 1, (text, ids)
            assert tok.decode(ids) == text
    text = "Return the JSON encoding of `obj` as a string."
    assert tok.decode(tok(text, add_special_tokens=False)["input_ids"]) == text
    with torch.no_grad():
        logits = model(**tok([text], return_tensors="pt")).logits
    assert logits.shape[-1] == len(tok) and torch.isfinite(logits).all()


def test_builds_are_deterministic_and_cached(tmp_path, tiny_model_dir, docs_corpus_path, docs_seed_path):
    again = {name: tiny.materialize(name, cache_dir=tmp_path) for name in tiny.BUILTINS}
    assert again["tiny-llama"].name == tiny_model_dir.name  # same content key
    assert _hashes(again["tiny-llama"]) == _hashes(tiny_model_dir)
    assert set(_hashes(tiny_model_dir)) >= {"config.json", "model.safetensors", "tokenizer.json"}
    assert again["python-docs"].read_bytes() == docs_corpus_path.read_bytes()
    assert again["python-docs-seed"].read_bytes() == docs_seed_path.read_bytes()
    # A second call reuses the cached build, and no temporary folders are left behind.
    stamp = (again["tiny-llama"] / "model.safetensors").stat().st_mtime_ns
    assert tiny.materialize("tiny-llama", cache_dir=tmp_path) == again["tiny-llama"]
    assert (again["tiny-llama"] / "model.safetensors").stat().st_mtime_ns == stamp
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in again.values())


def test_cache_dir_comes_from_environment(tiny_model_dir, humpback_cache):
    assert tiny_model_dir.parent == humpback_cache
    assert cache.cache_root() == humpback_cache


def test_docs_corpus_shape(docs_corpus_path):
    docs = _jsonl(docs_corpus_path)
    assert all(set(d) == {"id", "text"} for d in docs)
    assert len({d["id"] for d in docs}) == len(docs)
    topics = [d for d in docs if d["id"].startswith("topic:")]
    modules = [d for d in docs if d["id"].startswith("module:")]
    assert len(topics) >= 70 and len(modules) >= 30
    assert all(d["text"].startswith("# ") for d in docs)  # markdown headers for sectioning
    assert any("\n## " in d["text"] for d in topics)  # reST subsections became headers too
    assert not any("\n*****" in d["text"] for d in topics)
    assert 200_000 < sum(len(d["text"]) for d in docs) < 2_000_000
    assert docs == tiny.python_docs_documents()


def test_seed_pairs_shape(docs_seed_path):
    pairs = _jsonl(docs_seed_path)
    assert 60 <= len(pairs) <= 120
    assert all(set(p) == {"instruction", "output"} for p in pairs)
    assert all(tiny.MIN_OUTPUT_CHARS <= len(p["output"]) <= tiny.MAX_OUTPUT_CHARS for p in pairs)
    assert len({p["instruction"] for p in pairs}) == len(pairs)
    instructions = {p["instruction"] for p in pairs}
    assert "Explain the Python `with` statement." in instructions
    assert any(i.startswith("What does `") for i in instructions)
    assert any("`json." in i for i in instructions)
    assert pairs == tiny.python_docs_seed(tiny.python_docs_documents())
