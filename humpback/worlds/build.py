"""The controlled world's data: a seed set, an unlabelled pool, held-out eval prompts, a labelled dev
set and the text the base model is pretrained on, all drawn from one :class:`WorldSpec`.

Words never cross sets: the eval prompts' words appear nowhere else, so exact match on them measures
what a model learned, not what it saw. The pool is the "web": one answer per document, of which
``bad_fraction`` is wrong (``off_task_share`` of those answers no task at all); nothing in it says which.
The pretraining text is a separate sample of the same web with other words and a smaller share of bad
answers (``pretrain_bad_fraction``: the web at large is mostly right, the crawl to curate is not), so
the base model knows the world's language and can copy, as a pretrained LLM can, without having
memorised the pool. Its documents are pages: up to ``page_sentences`` things said about one word, so the
word recurs within a document and pretraining teaches copying it from context. With one sentence per
document (world version 1) the base model never learned to copy, the backward model memorised its 200 seed
pairs instead of copying the word, and it recovered 31, 396 and 135 of the 4,000 pool instructions on
seeds 0, 1 and 2; with pages it recovers most of them (docs/world.md).
"""

from __future__ import annotations

import dataclasses
import random
from dataclasses import dataclass

from . import tasks


@dataclass(frozen=True)
class WorldSpec:
    seed_pairs: int = 200
    pool_docs: int = 8000
    # Of the pool and the dev set. The paper's dev set is 20% good pairs, and only 8% of its 502K augmented
    # pairs reach score 5: the web to curate is mostly not answers. With half the pool wrong (until 2026-12)
    # the right answer stayed the plurality, and training on everything was nearly as good as curating.
    bad_fraction: float = 0.8
    off_task_share: float = 0.25  # of the bad answers: text that answers no task
    eval_prompts: int = 200
    dev_pairs: int = 200
    pretrain_docs: int = 16000
    pretrain_bad_fraction: float = 0.2  # the web at large is mostly right; the pool to curate is not
    page_sentences: int = 3  # a pretraining page says up to this many things about its word
    random_seed: int = 0

    def __post_init__(self) -> None:
        for name in ("seed_pairs", "pool_docs", "eval_prompts", "dev_pairs"):
            if getattr(self, name) <= 0:
                raise ValueError(f"WorldSpec.{name} must be > 0, got {getattr(self, name)}")
        for name in ("bad_fraction", "off_task_share", "pretrain_bad_fraction"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"WorldSpec.{name} must be in [0, 1], got {getattr(self, name)}")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def pretrain_key(self) -> dict:
        """What the pretraining text depends on."""
        keys = ("pretrain_docs", "pretrain_bad_fraction", "off_task_share", "page_sentences", "random_seed")
        return {k: getattr(self, k) for k in keys}


@dataclass
class World:
    seed: list[dict]  # {"instruction", "output", "family"}: correct pairs
    pool: list[dict]  # {"id", "text", "family", "kind"}: kind good | wrong | off_task
    eval: list[dict]  # {"instruction", "reference", "family"}
    dev: list[dict]  # {"instruction", "output", "label"}: label good | bad
    pretrain: list[str]  # documents of the same web as the pool, other words


class _Words:
    """Distinct random words, never handed out twice."""

    def __init__(self, rng: random.Random):
        self.rng, self.used = rng, set()

    def take(self) -> str:
        while True:
            w = tasks.random_word(self.rng)
            if w not in self.used:
                self.used.add(w)
                return w


def _family(i: int) -> str:
    return tasks.FAMILIES[i % len(tasks.FAMILIES)].name


def _answer(kind: str, family: str, word: str, rng: random.Random) -> str:
    if kind == "good":
        return tasks.answer_for(family, word)
    if kind == "wrong":
        return tasks.wrong_answer(family, word, rng)
    return tasks.off_task_answer(word, rng)


def _kinds(n: int, spec: WorldSpec, rng: random.Random, bad_fraction: float | None = None) -> list[str]:
    """Exactly round(n * bad_fraction) bad answers, round(that * off_task_share) of them off task, shuffled."""
    bad = round(n * (spec.bad_fraction if bad_fraction is None else bad_fraction))
    off = round(bad * spec.off_task_share)
    kinds = ["good"] * (n - bad) + ["wrong"] * (bad - off) + ["off_task"] * off
    rng.shuffle(kinds)
    return kinds


def build_world(spec: WorldSpec = WorldSpec()) -> World:
    """The whole world for ``spec``; the same spec always gives the same world. The pretraining text is
    drawn first, so it depends only on :meth:`WorldSpec.pretrain_key` (worlds that differ in their
    other sizes share one base model)."""
    rng = random.Random(f"humpback-world-{spec.random_seed}")
    words = _Words(rng)
    pretrain = []
    for kind in _kinds(spec.pretrain_docs, spec, rng, spec.pretrain_bad_fraction):
        w = words.take()
        families = rng.sample([f.name for f in tasks.FAMILIES], rng.randint(1, spec.page_sentences))
        # A page about one word: its first sentence of the drawn kind, the rest mostly right, as the web is.
        kinds = [kind] + ["good" if rng.random() >= spec.pretrain_bad_fraction else "wrong" for _ in families[1:]]
        pretrain.append(" ".join(_answer(k, fam, w, rng) for k, fam in zip(kinds, families)))
    eval_rows = []
    for i in range(spec.eval_prompts):
        fam, w = _family(i), words.take()
        eval_rows.append({"instruction": tasks.instruction_for(fam, w), "reference": tasks.answer_for(fam, w),
                          "family": fam})
    seed = []
    for i in range(spec.seed_pairs):
        fam, w = _family(i), words.take()
        seed.append({"instruction": tasks.instruction_for(fam, w), "output": tasks.answer_for(fam, w), "family": fam})
    pool = []
    for i, kind in enumerate(_kinds(spec.pool_docs, spec, rng)):
        fam, w = _family(rng.randrange(len(tasks.FAMILIES))), words.take()
        pool.append({"id": f"web-{i:05d}", "text": _answer(kind, fam, w, rng), "family": fam, "kind": kind})
    dev = []
    for i, kind in enumerate(_kinds(spec.dev_pairs, spec, rng)):
        fam, w = _family(i), words.take()
        dev.append({"instruction": tasks.instruction_for(fam, w), "output": _answer(kind, fam, w, rng),
                    "label": "good" if kind == "good" else "bad"})
    return World(seed, pool, eval_rows, dev, pretrain)


def vocabulary_texts() -> list[str]:
    """Texts the world's tokenizer learns its merges from: the world's prose with example words, the
    chat template's markers, the system tags and the backward and curation prompts."""
    from ..prompts import SEED_SYSTEM_PROMPT, WEB_SYSTEM_PROMPT, template

    rng = random.Random("humpback-world-vocabulary")
    texts = []
    for i in range(50):
        w = tasks.random_word(rng)
        system = (SEED_SYSTEM_PROMPT, WEB_SYSTEM_PROMPT)[i % 2]
        for f in tasks.FAMILIES:  # as humpback's fallback chat template lays an example out
            texts.append(f"<|system|>\n{system}\n<|user|>\n{tasks.instruction_for(f.name, w)}\n<|assistant|>\n"
                         f"{tasks.answer_for(f.name, w)}")
        texts += [t.format(w=w) for t in tasks.OFF_TASK]
    texts += [template("backward"), template("curate")] * 5
    texts += ["".join(f"Score: {i}\n" for i in range(1, 6))] * 20
    return texts
