"""The transformers backend, run for real on the tiny model (on CPU, so hand computations in float32
match), with no network."""

from __future__ import annotations

import shutil

import pytest
import torch

from humpback.config import GenerationConfig
from humpback.errors import ConfigError
from humpback.generation import ChoiceProbs, Generator, SamplingParams, Usage, generator_name, load_generator
from humpback.generation.hf import HFGenerator, choice_token_ids

PROMPTS = [
    "The with statement is used to",
    "x",
    "Explain the Python `for` statement. The for statement is used to iterate over the elements of a",
    "Return the JSON encoding of",
    "A class definition defines a class object. Score:",
    "import json\n\n",
]
SCORES = ["1", "2", "3", "4", "5"]


@pytest.fixture(scope="module")
def sharp_dir(tiny_model_dir, tmp_path_factory):
    """The tiny random model with its output layer scaled up 10x: the same greedy choices, but
    next-token logits 10x further apart, so no greedy step is a near-tie that padding could flip."""
    from transformers import AutoModelForCausalLM

    out = tmp_path_factory.mktemp("sharp-tiny")
    shutil.copytree(tiny_model_dir, out, dirs_exist_ok=True)
    model = AutoModelForCausalLM.from_pretrained(out)
    with torch.no_grad():
        model.lm_head.weight.mul_(10.0)
    model.save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def gen(sharp_dir):
    g = HFGenerator(str(sharp_dir), device="cpu", batch_size=4)
    yield g
    g.close()


@pytest.fixture(scope="module")
def hand(sharp_dir):
    """The model and tokenizer, loaded directly, for hand computations."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(sharp_dir)
    model = AutoModelForCausalLM.from_pretrained(sharp_dir).eval()
    return model, tok


def _hand_probs(model, ids: list[int], choice_ids: list[int]) -> tuple[list[float], float]:
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([ids])).logits[0, -1]
    p = torch.softmax(logits.float(), -1)[choice_ids]
    return (p / p.sum()).tolist(), float(p.sum())


def _hand_greedy(model, tok, prompt: str, n: int) -> str:
    ids = tok(prompt)["input_ids"]
    new = []
    with torch.no_grad():
        for _ in range(n):
            nxt = int(model(input_ids=torch.tensor([ids + new])).logits[0, -1].argmax())
            if nxt == tok.eos_token_id:
                break
            new.append(nxt)
    return tok.decode(new, skip_special_tokens=True)


# --------------------------------------------------------------------------- choice tokens


def _fake_encode(vocab: dict[str, int], pieces: dict[str, list[str]]):
    return lambda s: [vocab[p] for p in pieces[s]]


def test_choice_token_ids_byte_level():
    vocab = {"Score": 0, ":": 1, "Ġ1": 2, "Ġ2": 3}
    pieces = {"Score:": ["Score", ":"], "Score: 1": ["Score", ":", "Ġ1"], "Score: 2": ["Score", ":", "Ġ2"]}
    assert choice_token_ids(_fake_encode(vocab, pieces), ["1", "2"]) == ([], [2, 3])


def test_choice_token_ids_sentencepiece_lone_prefix():
    vocab = {"▁Score": 0, ":": 1, "▁": 2, "1": 3, "2": 4}
    pieces = {"Score:": ["▁Score", ":"], "Score: 1": ["▁Score", ":", "▁", "1"], "Score: 2": ["▁Score", ":", "▁", "2"]}
    assert choice_token_ids(_fake_encode(vocab, pieces), ["1", "2"]) == ([2], [3, 4])


def test_choice_token_ids_rejects_multi_token_choices():
    vocab = {"Score": 0, ":": 1, "Ġ1": 2, "0": 3}
    pieces = {"Score:": ["Score", ":"], "Score: 1": ["Score", ":", "Ġ1"], "Score: 10": ["Score", ":", "Ġ1", "0"]}
    with pytest.raises(ConfigError, match=r"my-model.*\['1', '10'\]"):
        choice_token_ids(_fake_encode(vocab, pieces), ["1", "10"], "my-model")


def test_choice_probs_error_names_model_and_choices(gen):
    with pytest.raises(ConfigError) as e:
        gen.choice_probs(["Score:"], ["yes", "definitely not"])
    assert gen.name in str(e.value) and "definitely not" in str(e.value)


# --------------------------------------------------------------------------- choice probs


def test_choice_probs_match_hand_computation(gen, hand):
    model, tok = hand
    choice_ids = [tok(" " + c, add_special_tokens=False)["input_ids"][0] for c in SCORES]
    assert len(set(choice_ids)) == 5
    got = gen.choice_probs(PROMPTS, SCORES)  # batch 4, sorted: padding is exercised
    assert len(got) == len(PROMPTS) and all(isinstance(g, ChoiceProbs) for g in got)
    assert len({len(tok(p)["input_ids"]) for p in PROMPTS}) == len(PROMPTS)
    for prompt, g in zip(PROMPTS, got):
        probs, mass = _hand_probs(model, tok(prompt)["input_ids"], choice_ids)
        assert g.probs == pytest.approx(probs, abs=1e-5)
        assert g.mass == pytest.approx(mass, rel=1e-4, abs=1e-7)
        assert sum(g.probs) == pytest.approx(1.0, abs=1e-6)
        assert 0 < g.mass <= 1
    # Unbatched gives the same answer.
    single = HFGenerator(gen.name, device="cpu", batch_size=1, sort_by_length=False)
    for a, b in zip(single.choice_probs(PROMPTS, SCORES), got):
        assert a.probs == pytest.approx(b.probs, abs=1e-5)
    single.close()


def test_prompts_are_truncated_from_the_left(sharp_dir, hand):
    model, tok = hand
    g = HFGenerator(str(sharp_dir), device="cpu", max_prompt_tokens=6)
    long_prompt = PROMPTS[2]
    ids = tok(long_prompt)["input_ids"]
    assert len(ids) > 6
    choice_ids = [tok(" " + c, add_special_tokens=False)["input_ids"][0] for c in SCORES]
    probs, _ = _hand_probs(model, ids[-6:], choice_ids)
    assert g.choice_probs([long_prompt], SCORES)[0].probs == pytest.approx(probs, abs=1e-5)
    assert g.generate([long_prompt], SamplingParams(max_new_tokens=5)) == \
        [_hand_greedy(model, tok, tok.decode(ids[-6:]), 5)]
    g.close()


# --------------------------------------------------------------------------- generate


def test_greedy_batched_equals_unbatched_and_keeps_order(gen, hand, sharp_dir):
    model, tok = hand
    params = SamplingParams(max_new_tokens=16)
    batched = gen.generate(PROMPTS, params)
    single = HFGenerator(str(sharp_dir), device="cpu", batch_size=1, sort_by_length=False)
    assert single.generate(PROMPTS, params) == batched
    single.close()
    assert gen.generate(PROMPTS[::-1], params) == batched[::-1]
    assert len(set(batched)) > 1
    # Only the new text comes back, and it is what a hand-rolled greedy loop produces.
    for prompt, text in list(zip(PROMPTS, batched))[:3]:
        assert text == _hand_greedy(model, tok, prompt, 16)
    assert all(isinstance(t, str) and "<pad>" not in t and "</s>" not in t for t in batched)


def test_sampling_is_reproducible_per_prompt(gen, sharp_dir):
    params = SamplingParams(temperature=1.0, top_p=0.95, max_new_tokens=16, seed=7)
    first = gen.generate(PROMPTS[:4], params)
    gen.generate(["something else entirely", "and more"], params)  # other work in between
    state = torch.random.get_rng_state()
    assert gen.generate(PROMPTS[:4], params) == first
    assert torch.equal(torch.random.get_rng_state(), state)  # the global RNG is left alone
    assert gen.generate(PROMPTS[:4], SamplingParams(temperature=1.0, top_p=0.95, max_new_tokens=16, seed=8)) != first
    assert gen.generate(PROMPTS[:4], SamplingParams(max_new_tokens=16)) != first  # sampling differs from greedy
    # A prompt's sample depends on the seed and the prompt alone: not on its batch, order or batch size.
    everything = gen.generate(PROMPTS, params)
    assert everything[:4] == first
    assert gen.generate(PROMPTS[::-1], params) == everything[::-1]
    single = HFGenerator(str(sharp_dir), device="cpu", batch_size=1, sort_by_length=False)
    assert single.generate(PROMPTS, params) == everything
    single.close()


# A preamble every prompt starts with, as the judge prompt's rubric starts every curation prompt.
PREAMBLE = ("Below is an instruction from an user and a candidate answer. Evaluate whether or not the "
            "answer is a good example of how AI Assistant should respond to the user's instruction.\n\n")
SHARED = [PREAMBLE + p for p in PROMPTS]


def test_shared_prefix_is_computed_once_and_changes_nothing(gen, hand, monkeypatch):
    model, tok = hand
    prefixes = []
    prefill = gen.decoder.prefill
    monkeypatch.setattr(gen.decoder, "prefill",
                        lambda rows, prefix=None, **kw: prefixes.append(prefix) or prefill(rows, prefix, **kw))
    choice_ids = [tok(" " + c, add_special_tokens=False)["input_ids"][0] for c in SCORES]
    got = gen.choice_probs(SHARED, SCORES)
    assert len(prefixes) == 2 and prefixes[0] is prefixes[1]  # two batches of 4, one prefix forward
    assert len(prefixes[0].ids) >= 16 and tok.decode(prefixes[0].ids).startswith(PREAMBLE[:40])
    for prompt, g in zip(SHARED, got):
        probs, mass = _hand_probs(model, tok(prompt)["input_ids"], choice_ids)
        assert g.probs == pytest.approx(probs, abs=1e-5)
        assert g.mass == pytest.approx(mass, rel=1e-4, abs=1e-7)
    prefixes.clear()
    greedy = gen.generate(SHARED, SamplingParams(max_new_tokens=12))
    assert prefixes and all(p is not None for p in prefixes)
    for prompt, text in zip(SHARED, greedy):
        assert text == _hand_greedy(model, tok, prompt, 12)
    # A call whose prompts share nothing worth sharing runs without one.
    prefixes.clear()
    gen.generate(PROMPTS, SamplingParams(max_new_tokens=2))
    assert prefixes == [None, None]


def test_eos_stops_generation(sharp_dir, hand):
    model, tok = hand
    params = SamplingParams(max_new_tokens=12)
    plain = HFGenerator(str(sharp_dir), device="cpu")
    full = plain.generate(PROMPTS, params)
    plain.close()
    # Make the 4th greedy token of the first prompt a stop token: the text ends before it.
    ids = tok(PROMPTS[0])["input_ids"]
    with torch.no_grad():
        for _ in range(4):
            ids.append(int(model(input_ids=torch.tensor([ids])).logits[0, -1].argmax()))
    new = ids[len(tok(PROMPTS[0])["input_ids"]):]
    g = HFGenerator(str(sharp_dir), device="cpu")
    g.eos_token_ids = [new[3]]
    out = g.generate(PROMPTS, params)
    g.close()
    assert out[0] == tok.decode(new[: new.index(new[3])])
    assert len(out[0]) < len(full[0])
    assert all(f.startswith(o) for o, f in zip(out, full))
    # Each completion says why it ended: the stop token, or max_new_tokens running out.
    assert out[0].finish_reason == "stop"
    assert all(f.finish_reason == "length" for f in full)
    assert len(tok(full[1], add_special_tokens=False)["input_ids"]) >= 1


def test_decode_loop_uses_the_current_cache_argument(gen):
    """transformers 5.24 renamed the models' past_key_values to cache (the old name goes in 5.40)."""
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = gen.generate(PROMPTS[:3], SamplingParams(max_new_tokens=3))
        probs = gen.choice_probs(PROMPTS[:3], SCORES)
    assert [str(w.message) for w in caught if "past_key_values" in str(w.message)] == []
    assert len(out) == 3 and len(probs) == 3 and all(p.probs is not None for p in probs)


class _OldCacheName(torch.nn.Module):
    """A model as transformers before 5.24 made them: its forward takes the cache as ``past_key_values``
    (and swallows anything else in ``**kwargs``); it records what it was given."""

    def __init__(self, inner, inner_name):
        super().__init__()
        self.inner, self.inner_name, self.config, self.given = inner, inner_name, inner.config, []

    def forward(self, input_ids=None, attention_mask=None, position_ids=None, past_key_values=None, use_cache=None,
                logits_to_keep=0, **kwargs):
        self.given.append((past_key_values, sorted(kwargs)))
        return self.inner(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                          use_cache=use_cache, logits_to_keep=logits_to_keep, **{self.inner_name: past_key_values})


def test_decode_loop_passes_the_cache_under_the_name_the_model_takes(hand, tiny_model_dir):
    """transformers 5.17 (the lent GPU machines') names the argument past_key_values: the loop finds the
    name once and gives the cache under it, with the same tokens as under the new name."""
    import transformers
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from humpback.generation.decoding import Decoder, cache_argument

    model, tok = hand
    current = "cache" if tuple(map(int, transformers.__version__.split(".")[:2])) >= (5, 24) else "past_key_values"
    old = _OldCacheName(model, current)
    assert cache_argument(model) == current and cache_argument(old) == "past_key_values"
    lora = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_model_dir),
                          LoraConfig(r=4, target_modules="all-linear"))
    assert cache_argument(lora) == current  # a PeftModel passes **kwargs on: the model inside names it
    rows = [tok(p)["input_ids"] for p in PROMPTS[:4]]
    rows = [rows[0] * 3 + r for r in rows]  # a shared prefix, so the prefix forward runs too
    new, legacy = (Decoder(model, tok.pad_token_id, torch.device("cpu")),
                   Decoder(old, tok.pad_token_id, torch.device("cpu")))
    assert legacy.prefix(rows) is not None
    want = new.generate(rows, 6, [], prefix=new.prefix(rows))
    got = legacy.generate(rows, 6, [], prefix=legacy.prefix(rows))
    assert got == want
    assert old.given and all(cache is not None and extra == [] for cache, extra in old.given)


def _greedy_ids(model, ids: list[int], n: int, eos: list[int]) -> list[int]:
    """The ids a hand-rolled greedy loop produces, up to and including the first stop token."""
    new: list[int] = []
    with torch.no_grad():
        for _ in range(n):
            new.append(int(model(input_ids=torch.tensor([ids + new])).logits[0, -1].argmax()))
            if new[-1] in eos:
                break
    return new


def test_usage_counts_exactly_the_tokens_seen_and_decoded(sharp_dir, hand):
    model, tok = hand
    g = HFGenerator(str(sharp_dir), device="cpu", batch_size=4)
    assert g.usage == Usage() and g.usage.exact
    # A stop token the first prompt reaches at its 4th greedy step, so rows end at different lengths.
    stop = _greedy_ids(model, tok(PROMPTS[0])["input_ids"], 4, [])[3]
    g.eos_token_ids = [tok.eos_token_id, stop]
    prompt_ids = [tok(p)["input_ids"] for p in PROMPTS]
    decoded = [_greedy_ids(model, ids, 12, g.eos_token_ids) for ids in prompt_ids]
    assert len(decoded[0]) == 4 and len({len(d) for d in decoded}) > 1
    g.generate(PROMPTS, SamplingParams(max_new_tokens=12))
    assert g.usage == Usage(calls=1, prompts=6, prompt_tokens=sum(map(len, prompt_ids)),
                            generated_tokens=sum(map(len, decoded)))
    # Scoring: one forward over each prompt plus the choice prefix, nothing generated.
    prefix, _ = choice_token_ids(lambda s: tok(s, add_special_tokens=False)["input_ids"], SCORES)
    before = g.usage
    g.choice_probs(PROMPTS, SCORES)
    g.generate([], SamplingParams(max_new_tokens=4))
    assert g.usage - before == Usage(calls=2, prompts=6,
                                     prompt_tokens=sum(len(ids) + len(prefix) for ids in prompt_ids))
    g.close()
    # A prompt cut from the left counts the tokens the model saw.
    short = HFGenerator(str(sharp_dir), device="cpu", max_prompt_tokens=6)
    short.choice_probs([PROMPTS[2]], SCORES)
    assert len(prompt_ids[2]) > 6 and short.usage.prompt_tokens == 6
    short.close()


# --------------------------------------------------------------------------- adapters and plumbing


def test_adapter_loads_unmerged(sharp_dir, tmp_path, gen):
    from peft import LoraConfig, PeftModel, get_peft_model
    from transformers import AutoModelForCausalLM

    base_probs = gen.choice_probs(PROMPTS, SCORES)
    for init, same in ((True, True), (False, False)):
        adapter_dir = tmp_path / f"adapter-{init}"
        torch.manual_seed(0)
        peft_model = get_peft_model(
            AutoModelForCausalLM.from_pretrained(sharp_dir),
            LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=init),
        )
        peft_model.save_pretrained(adapter_dir)
        g = HFGenerator(str(sharp_dir), device="cpu", adapter=str(adapter_dir), batch_size=4)
        assert g.name == f"{sharp_dir}+adapter:{adapter_dir}"
        assert isinstance(g.model, PeftModel)  # applied, not merged
        assert any("lora_A" in n for n, _ in g.model.named_parameters())
        probs = g.choice_probs(PROMPTS, SCORES)
        texts = g.generate(PROMPTS, SamplingParams(max_new_tokens=8))
        assert len(texts) == len(PROMPTS)
        close = all(a.probs == pytest.approx(b.probs, abs=1e-5) for a, b in zip(probs, base_probs))
        assert close is same  # zero-init LoRA changes nothing; a random one changes the output
        g.close()


def test_protocol_names_config_and_close(sharp_dir):
    assert generator_name("org/m", "v1", "/a") == "org/m@v1+adapter:/a"
    assert generator_name("org/m") == "org/m"
    cfg = GenerationConfig(batch_size=2, max_prompt_tokens=64, device="cpu", dtype="float32")
    g = load_generator(cfg, str(sharp_dir), progress=True)
    assert isinstance(g, Generator) and isinstance(g, HFGenerator)
    assert (g.batch_size, g.max_prompt_tokens, g.model.dtype) == (2, 64, torch.float32)
    assert g.name == str(sharp_dir)
    assert len(g.generate(PROMPTS[:3], SamplingParams(max_new_tokens=4))) == 3
    g.close()
    assert g.model is None


def test_bos_is_not_doubled_and_survives_truncation(sharp_dir, hand):
    from tokenizers.processors import TemplateProcessing

    model, tok = hand
    g = HFGenerator(str(sharp_dir), device="cpu", max_prompt_tokens=8)
    bos = g.tokenizer.bos_token_id
    # Make the tokenizer add a BOS itself, as Llama-style tokenizers do.
    g.tokenizer.backend_tokenizer.post_processor = TemplateProcessing(
        single="<s> $A", special_tokens=[("<s>", bos)])
    assert g.tokenizer("x")["input_ids"][0] == bos
    choice_ids = [tok(" " + c, add_special_tokens=False)["input_ids"][0] for c in SCORES]
    short, long = PROMPTS[3], PROMPTS[2]
    plain = g.choice_probs([short, long], SCORES)
    rendered = g.choice_probs(["<s>" + short, "<s>" + long], SCORES)  # template already wrote a BOS
    ids_short = [bos] + tok(short, add_special_tokens=False)["input_ids"]
    ids_long = [bos] + tok(long, add_special_tokens=False)["input_ids"][-7:]
    assert len(ids_short) + 1 <= 8  # a doubled BOS would fit: only de-duplication removes it
    for probs in (plain, rendered):
        assert probs[0].probs == pytest.approx(_hand_probs(model, ids_short, choice_ids)[0], abs=1e-5)
        assert probs[1].probs == pytest.approx(_hand_probs(model, ids_long, choice_ids)[0], abs=1e-5)
    g.close()


# --------------------------------------------------------------------------- log-likelihood


def _hand_loglik(model, ids: list[int], start: int) -> float:
    with torch.no_grad():
        logprobs = torch.log_softmax(model(input_ids=torch.tensor([ids])).logits[0].float(), -1)
    return float(sum(logprobs[t - 1, ids[t]] for t in range(start, len(ids))))


CONTINUATIONS = [" used to wrap a block.", " y", " sequence.", " an object", " 5", "x = 1\n"]


def test_loglik_matches_hand_computation_batched_or_not(gen, hand):
    from humpback.generation import LogLik

    model, tok = hand
    got = gen.loglik(PROMPTS, CONTINUATIONS)  # batch 4, sorted: left padding is exercised
    assert all(isinstance(g, LogLik) for g in got)
    for prompt, cont, g in zip(PROMPTS, CONTINUATIONS, got):
        ids, alone = tok(prompt + cont)["input_ids"], tok(prompt)["input_ids"]
        start = next(i for i in range(len(ids)) if i >= len(alone) or ids[i] != alone[i])
        assert g.tokens == len(ids) - start > 0
        assert g.logprob == pytest.approx(_hand_loglik(model, ids, start), abs=1e-4)
        assert g.mean == pytest.approx(g.logprob / g.tokens)
    single = HFGenerator(gen.name, device="cpu", batch_size=1, sort_by_length=False)
    for a, b in zip(single.loglik(PROMPTS, CONTINUATIONS), got):
        assert (a.tokens, a.logprob) == (b.tokens, pytest.approx(b.logprob, abs=1e-4))
    single.close()


def test_loglik_truncates_the_prompt_never_the_continuation(sharp_dir, hand):
    model, tok = hand
    g = HFGenerator(str(sharp_dir), device="cpu", max_prompt_tokens=8)
    prompt, cont = PROMPTS[2], " sequence of numbers."
    [got] = g.loglik([prompt], [cont])
    ids = tok(prompt + cont)["input_ids"]
    n = len(ids) - len(tok(prompt)["input_ids"])
    kept = ids[-8:]
    assert got.tokens == n and len(kept) - n >= 1
    assert got.logprob == pytest.approx(_hand_loglik(model, kept, len(kept) - n), abs=1e-4)
    with pytest.raises(ValueError, match="2 prompts but 1 continuations"):
        g.loglik(PROMPTS[:2], [cont])
    g.close()
