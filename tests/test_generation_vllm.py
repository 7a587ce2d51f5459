"""The vllm backend: the pure logprobs -> ChoiceProbs mapping it shares with the openai backend (runs
everywhere), the missing-vLLM error, and real runs on the tiny model where vLLM and a CUDA GPU exist."""

from __future__ import annotations

import importlib.util
import json
import math
import sys

import pytest

from humpback.config import GenerationConfig
from humpback.errors import ConfigError
from humpback.generation import ChoiceProbs, SamplingParams, load_generator
from humpback.generation.logprobs import choice_probs_from_top, token_text, top_logprobs_from_completion
from humpback.generation.vllm import loglik_from_prompt_logprobs, lora_rank_for

SCORES = ["1", "2", "3", "4", "5"]


# --------------------------------------------------------------------------- the pure mapping


def test_token_text_strips_spaces_and_markers():
    assert [token_text(t) for t in (" 5", "5", "Ġ5", "▁5", "▁", " ", "Ġ", "\n", "55", " the")] == \
        ["5", "5", "5", "5", "", "", "", "", "55", "the"]


def test_choices_with_and_without_space_add_up():
    top = {" 5": math.log(0.4), "5": math.log(0.1), " 3": math.log(0.25), " the": math.log(0.2), "55": math.log(0.05)}
    got = choice_probs_from_top(top, SCORES)
    assert isinstance(got, ChoiceProbs)
    assert got.mass == pytest.approx(0.75)
    assert got.probs == pytest.approx((0, 0, 0.25 / 0.75, 0, 0.5 / 0.75))
    assert sum(got.probs) == pytest.approx(1.0)


def test_pairs_in_any_order_and_other_choices():
    pairs = [("Ġyes", math.log(0.3)), ("no", math.log(0.6)), ("maybe", math.log(0.1))]
    got = choice_probs_from_top(pairs, ["yes", "no"])
    assert got.probs == pytest.approx((1 / 3, 2 / 3)) and got.mass == pytest.approx(0.9)


def test_no_choice_in_the_top_tokens_gives_no_probabilities():
    """Not a uniform guess with status ok: the scoring stage counts the row as a failure."""
    from humpback.generation import ChoiceProbs

    assert choice_probs_from_top({" the": -0.1, " a": -3.0}, SCORES) == ChoiceProbs(probs=None, mass=0.0)
    assert choice_probs_from_top({}, SCORES) == ChoiceProbs(probs=None, mass=0.0)
    assert choice_probs_from_top({"5": -math.inf}, SCORES) == ChoiceProbs(probs=None, mass=0.0)


def test_top_logprobs_from_completion_shapes():
    legacy = {"text": " 5", "logprobs": {"tokens": [" 5"], "token_logprobs": [-0.1],
                                         "top_logprobs": [{" 5": -0.1, " 4": -2.0}]}}
    assert top_logprobs_from_completion(legacy) == [(" 5", -0.1), (" 4", -2.0)]
    chat = {"text": " 5", "logprobs": {"content": [{"token": " 5", "logprob": -0.1,
                                                    "top_logprobs": [{"token": " 5", "logprob": -0.1},
                                                                     {"token": " 4", "logprob": -2.0}]}]}}
    assert top_logprobs_from_completion(chat) == [(" 5", -0.1), (" 4", -2.0)]
    for none in ({"text": "x"}, {"text": "x", "logprobs": None}, {"logprobs": {"top_logprobs": []}},
                 {"logprobs": {"top_logprobs": [None]}}, {"logprobs": {"content": []}}, "junk"):
        assert top_logprobs_from_completion(none) is None


# --------------------------------------------------------------------------- without vLLM


def test_lora_rank_is_rounded_up_to_a_vllm_rank(tmp_path):
    for r, want in ((4, 8), (16, 16), (17, 32), (64, 64)):
        (tmp_path / "adapter_config.json").write_text(json.dumps({"r": r}))
        assert lora_rank_for(str(tmp_path)) == want
    assert lora_rank_for(None) == 16 and lora_rank_for(str(tmp_path / "missing")) == 16


def test_missing_vllm_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "vllm", None)  # import vllm -> ImportError, installed or not
    with pytest.raises(ConfigError, match=r"pip install humpback\[vllm\]"):
        load_generator(GenerationConfig(backend="vllm"), "some/model")


# --------------------------------------------------------------------------- on a GPU with vLLM


def _has_vllm_and_cuda() -> bool:
    if importlib.util.find_spec("vllm") is None:
        return False
    import torch

    return torch.cuda.is_available()


needs_gpu = pytest.mark.skipif(not _has_vllm_and_cuda(), reason="needs vLLM and a CUDA GPU")


@pytest.fixture(scope="module")
def sharp_dir(tiny_model_dir, docs_corpus_path, tmp_path_factory):
    """The tiny model after 20 AdamW steps on docs text, so greedy choices are not near-ties."""
    import shutil

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = tmp_path_factory.mktemp("sharp-tiny")
    shutil.copytree(tiny_model_dir, out, dirs_exist_ok=True)
    tok = AutoTokenizer.from_pretrained(out)
    model = AutoModelForCausalLM.from_pretrained(out)
    docs = [json.loads(line)["text"] for line in docs_corpus_path.read_text().splitlines()[:40]]
    ids = tok("\n".join(docs + ["Score: 4\n", "Score: 5\n"] * 20), add_special_tokens=False)["input_ids"]
    data = torch.tensor(ids[: len(ids) // 64 * 64]).view(-1, 64)
    g = torch.Generator().manual_seed(0)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    for _ in range(20):
        batch = data[torch.randint(len(data), (8,), generator=g)]
        model(input_ids=batch, labels=batch).loss.backward()
        opt.step()
        opt.zero_grad()
    model.save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def vllm_gen(sharp_dir):
    cfg = GenerationConfig(backend="vllm", gpu_memory_utilization=0.3, dtype="float32")
    g = load_generator(cfg, str(sharp_dir), seed=0)
    yield g
    g.close()


@pytest.mark.gpu
@needs_gpu
def test_vllm_matches_hf(vllm_gen, sharp_dir):
    from humpback.generation.hf import HFGenerator

    prompts = ["The with statement is used to", "Return the JSON encoding of", "x"]
    params = SamplingParams(max_new_tokens=8)
    hf = HFGenerator(str(sharp_dir), device="cuda", dtype="float32")
    want = hf.generate(prompts, params)
    hf_usage = hf.usage  # the same prompts, the same ids decoded: the same counts
    judged = [p + " Score:" for p in prompts]
    hf_probs = hf.choice_probs(judged, SCORES)
    hf.close()
    before = vllm_gen.usage
    assert vllm_gen.generate(prompts, params) == want
    assert vllm_gen.usage - before == hf_usage
    got = vllm_gen.choice_probs(judged, SCORES)
    assert any(a.mass > 0 for a in got)
    for a, b in zip(got, hf_probs):
        # vLLM sees the top 20 tokens only: the choices among them keep HF's ratios, and no more mass.
        seen = [i for i in range(len(SCORES)) if a.probs[i] > 0 and a.mass > 0]
        for i in seen:
            assert a.probs[i] / sum(a.probs[j] for j in seen) == pytest.approx(
                b.probs[i] / sum(b.probs[j] for j in seen), rel=1e-3)
        assert a.mass <= b.mass * (1 + 1e-3)


@pytest.mark.gpu
@needs_gpu
def test_vllm_sampling_is_seeded_per_prompt(vllm_gen):
    params = SamplingParams(temperature=1.0, top_p=0.95, max_new_tokens=8, seed=7)
    first = vllm_gen.generate(["a b c", "d e f"], params)
    assert vllm_gen.generate(["d e f", "a b c"], params) == first[::-1]


@pytest.mark.gpu
@needs_gpu
def test_vllm_applies_a_lora_adapter(sharp_dir, tmp_path):
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    peft_model = get_peft_model(AutoModelForCausalLM.from_pretrained(sharp_dir),
                                LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"],
                                           init_lora_weights=False))
    peft_model.save_pretrained(tmp_path / "adapter")
    cfg = GenerationConfig(backend="vllm", gpu_memory_utilization=0.3, dtype="float32")
    g = load_generator(cfg, str(sharp_dir), adapter=str(tmp_path / "adapter"))
    assert g.lora is not None and g.name.endswith(f"+adapter:{tmp_path / 'adapter'}")
    out = g.generate(["The with statement is used to"], SamplingParams(max_new_tokens=8))
    g.close()
    assert len(out) == 1 and isinstance(out[0], str)


def test_loglik_from_prompt_logprobs():
    class Logprob:  # vLLM's Logprob has .logprob (and rank, decoded_token)
        def __init__(self, v):
            self.logprob = v

    ids = [1, 7, 8, 9]
    prompt_logprobs = [None, {7: Logprob(-1.0), 3: Logprob(-0.5)}, {8: Logprob(-2.0)},
                       {9: Logprob(-0.25), 4: Logprob(-1.0)}]
    got = loglik_from_prompt_logprobs(prompt_logprobs, ids, 2)
    assert (got.logprob, got.tokens) == (-2.25, 2)
    with pytest.raises(ConfigError, match="lack the prompt's own token at position 3"):
        loglik_from_prompt_logprobs(prompt_logprobs[:3] + [{4: Logprob(-1.0)}], ids, 2)
    with pytest.raises(ConfigError, match="no prompt logprobs"):
        loglik_from_prompt_logprobs(None, ids, 2)
