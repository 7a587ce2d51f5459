"""The controlled world: its tasks, answers and verifier (exact), its data sets (sizes, fractions,
disjoint words), its tokenizer, and the builtin assets (cached by content)."""

from __future__ import annotations

import json
import random

import pytest

from humpback.worlds import BUILTINS, VERIFIER, materialize_world, tasks
from humpback.worlds.build import WorldSpec, build_world, vocabulary_texts

SMALL = WorldSpec(seed_pairs=40, pool_docs=200, eval_prompts=20, dev_pairs=40, pretrain_docs=200)


def test_answers_are_phrased_exactly():
    assert [tasks.instruction_for(f.name, "CAGE") for f in tasks.FAMILIES] == [
        "Reverse the word CAGE.", "Sort the letters of CAGE.", "How many letters are in CAGE?",
        "Spell the word CAGE with dashes."]
    assert [tasks.answer_for(f.name, "CAGE") for f in tasks.FAMILIES] == [
        "The reverse of CAGE is EGAC.", "The letters of CAGE in order are ACEG.", "CAGE has 4 letters.",
        "CAGE with dashes is C-A-G-E."]
    assert set(tasks.random_word(random.Random(1))) <= set("ABCDEFGHIJ")


def test_wrong_answers_are_wrong_and_the_verifier_knows():
    rng = random.Random(0)
    for _ in range(200):
        w = tasks.random_word(rng)
        for f in tasks.FAMILIES:
            instruction = tasks.instruction_for(f.name, w)
            assert tasks.parse_instruction(instruction) == (f.name, w)
            assert tasks.verify({"instruction": instruction, "output": tasks.answer_for(f.name, w)}) == 1.0
            assert tasks.verify({"instruction": instruction, "output": tasks.wrong_answer(f.name, w, rng)}) == 0.0
            assert tasks.verify({"instruction": instruction, "output": tasks.off_task_answer(w, rng)}) == 0.0
    assert tasks.wrong_answer("reverse", "AAA", rng) != tasks.answer_for("reverse", "AAA")
    assert tasks.verify({"instruction": "Tell me a joke.", "output": "No."}) == 0.0
    assert tasks.verify({"instruction": " Reverse the word AB. ", "output": "The reverse of AB is  BA. "}) == 1.0
    assert VERIFIER == "humpback.worlds.tasks:verify"


def test_world_sizes_fractions_and_disjoint_words():
    world = build_world(SMALL)
    assert (len(world.seed), len(world.pool), len(world.eval), len(world.dev), len(world.pretrain)) == \
        (40, 200, 20, 40, 200)
    kinds = [d["kind"] for d in world.pool]
    # 80% of 200 bad (bad_fraction), a quarter of those off task (off_task_share)
    assert kinds.count("good") == 40 and kinds.count("off_task") == 40 and kinds.count("wrong") == 120
    assert sum(d["label"] == "bad" for d in world.dev) == 32
    assert all(tasks.verify(s) == 1.0 for s in world.seed)
    assert all(tasks.verify({"instruction": e["instruction"], "output": e["reference"]}) == 1.0 for e in world.eval)

    def words(texts):
        return {w for t in texts for w in t.replace(".", " ").replace("?", " ").split() if w.isupper() and len(w) > 2}

    eval_words = words(e["instruction"] for e in world.eval)
    others = words([s["instruction"] for s in world.seed] + [d["text"] for d in world.pool] + world.pretrain
                   + [d["instruction"] for d in world.dev])
    assert len(eval_words) == 20 and not eval_words & others
    assert build_world(SMALL).pool == world.pool  # deterministic
    # The pretraining text depends only on its own part of the spec.
    assert build_world(WorldSpec(**{**SMALL.to_dict(), "pool_docs": 300})).pretrain == world.pretrain


def test_pretraining_pages_repeat_their_word():
    # A page says 1..page_sentences things about one word (so the word recurs and pretraining teaches
    # copying it); each sentence is a world answer, about 1 in 5 of them wrong or off task.
    world = build_world(SMALL)
    sentences = 0
    verdicts = []
    lengths = set()
    for page in world.pretrain:
        parts = [p.strip() + "." for p in page.rstrip(".").split(". ")]
        lengths.add(len(parts))
        word = next(w for w in parts[0][:-1].split() if w.isupper() and len(w) >= tasks.MIN_WORD)
        assert all(word in part.split() for part in parts), page  # every sentence names the page's word
        for part in parts:
            sentences += 1
            answers = {tasks.answer_for(f.name, word): f.name for f in tasks.FAMILIES}
            verdicts.append(part in answers)
    assert lengths == {1, 2, 3} and sentences > 1.5 * len(world.pretrain)
    assert 0.7 < sum(verdicts) / len(verdicts) < 0.9


def test_tokenizer_spells_the_payload_and_reads_score_digits():
    from humpback.generation.hf import choice_token_ids
    from humpback.worlds.model import build_tokenizer

    tok = build_tokenizer(vocabulary_texts())
    pieces = tok.convert_ids_to_tokens(tok("The reverse of CAGE is EGAC.", add_special_tokens=False)["input_ids"])
    assert pieces == ["TheĠreverseĠofĠ", "C", "A", "G", "E", "ĠisĠ", "E", "G", "A", "C", "."]
    assert tok.convert_ids_to_tokens(tok("Q-L has 12", add_special_tokens=False)["input_ids"])[:3] == ["Q", "-", "L"]
    encode = lambda s: tok(s, add_special_tokens=False)["input_ids"]  # noqa: E731
    prefix, ids = choice_token_ids(encode, list("12345"))
    assert len(ids) == 5 and len(set(ids)) == 5


def test_world_files_are_cached_by_content(tmp_path):
    paths = materialize_world(SMALL, tmp_path, with_model=False)
    assert paths.seed.parent.name.startswith("world-data-v2-")
    seed = [json.loads(line) for line in paths.seed.read_text().splitlines()]
    pool = [json.loads(line) for line in paths.pool.read_text().splitlines()]
    assert set(seed[0]) == {"instruction", "output"} and set(pool[0]) == {"id", "text"}  # the pool carries no label
    evals = [json.loads(line) for line in paths.eval.read_text().splitlines()]
    assert {"instruction", "reference"} <= set(evals[0])
    stamp = paths.seed.stat().st_mtime_ns
    assert materialize_world(SMALL, tmp_path, with_model=False).seed.stat().st_mtime_ns == stamp
    other = materialize_world(WorldSpec(**{**SMALL.to_dict(), "bad_fraction": 0.3}), tmp_path, with_model=False)
    assert other.seed.parent != paths.seed.parent
    assert set(BUILTINS) == {"world-base", "world-seed", "world-pool", "world-eval", "world-dev"}


def test_the_base_models_key_is_what_it_is_made_of(tmp_path, monkeypatch):
    """The base model is rebuilt when its pretraining text, tokenizer texts or training code change, not
    when the pool, the seed set or the layout of the code do."""
    from humpback.worlds import _code, _key

    other_pool = WorldSpec(**{**SMALL.to_dict(), "bad_fraction": 0.3, "pool_docs": SMALL.pool_docs + 7})
    assert _key("base", other_pool) == _key("base", SMALL) and _key("data", other_pool) != _key("data", SMALL)
    for change in ({"pretrain_bad_fraction": 0.3}, {"random_seed": SMALL.random_seed + 1}, {"page_sentences": 1}):
        assert _key("base", WorldSpec(**{**SMALL.to_dict(), **change})) != _key("base", SMALL), change

    def code(name: str, text: str) -> str:
        (tmp_path / f"{name}.py").write_text(text)
        monkeypatch.syspath_prepend(str(tmp_path))
        return _code(__import__(name))

    plain = code("plain", 'def f(x):\n    """Twice x."""\n    return 2 * x\n')
    assert code("restyled", "# a comment\ndef f(x):\n    return 2*x  # doubled\n") == plain
    assert code("changed", "def f(x):\n    return 3 * x\n") != plain


def test_builtin_names_resolve(monkeypatch, tmp_path):
    from humpback.errors import ConfigError
    from humpback.builtin_names import resolve

    monkeypatch.setenv("HUMPBACK_CACHE", str(tmp_path))
    assert resolve("builtin:world-eval").endswith("eval.jsonl")
    with pytest.raises(ConfigError, match="world-base"):
        resolve("builtin:world-nothing")


def test_a_world_of_another_seed_is_named_with_at(monkeypatch, tmp_path):
    from humpback.builtin_names import resolve
    from humpback.errors import ConfigError
    from humpback.worlds import parse

    assert parse("world-base") == ("world-base", 0) and parse("world-pool@12") == ("world-pool", 12)
    monkeypatch.setenv("HUMPBACK_CACHE", str(tmp_path))
    default, zero, one = (resolve(f"builtin:world-eval{suffix}") for suffix in ("", "@0", "@1"))
    assert default == zero and one != default  # @0 is the default world; @1 a world of its own
    assert open(one).read() != open(default).read()
    for bad, says in (("world-eval@", "whole number >= 0, got ''"), ("world-eval@-1", "got '-1'"),
                      ("world-eval@x", "got 'x'"), ("world-nothing@1", r"world-\* names may end in @SEED")):
        with pytest.raises(ConfigError, match=says):
            resolve(f"builtin:{bad}")


def test_the_base_model_is_pretrained_on_one_thread_whatever_the_machine(tmp_path):
    # The thread count changes float sums and so the weights; the build uses one thread and gives back
    # the caller's setting, so a 2-thread and a 1-thread machine build the same model.
    import torch
    from safetensors.torch import load_file

    from humpback.worlds.model import build_base_model, build_tokenizer

    docs = build_world(SMALL).pretrain[:64]
    tok = build_tokenizer(vocabulary_texts())
    before = torch.get_num_threads()
    try:
        built = []
        for threads in (2, 1):
            torch.set_num_threads(threads)
            pretrain = {"steps": 3, "batch_size": 16, "learning_rate": 3e-3, "warmup_steps": 1, "seed": 0}
            build_base_model(tmp_path / str(threads), tok, docs, pretrain=pretrain)
            assert torch.get_num_threads() == threads
            built.append(load_file(tmp_path / str(threads) / "model.safetensors"))
    finally:
        torch.set_num_threads(before)
    assert all(torch.equal(built[0][k], built[1][k]) for k in built[0])
