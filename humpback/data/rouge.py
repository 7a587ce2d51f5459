"""Self-Instruct's novelty filter, fast: is a new instruction's ROUGE-L F above a threshold with any
instruction already in the pool?

The scores are ``rouge_score``'s (Google's maintained implementation, ``RougeScorer(["rougeL"],
use_stemmer=False)``): its tokenizer, its LCS length, its F formula. The reference implementation
scores every (new, pool) pair, re-tokenising both texts each time, in a process pool; past ~10k
tasks that is the bottleneck of a run. Here each text is tokenised once, and a pair is scored only
when it could pass the threshold at all:

- ROUGE-L F is ``2 * lcs / (m + n)`` for token counts m, n, and the LCS is at most the multiset
  overlap of the two token lists (the sum over shared tokens of the smaller count). Posting lists of
  the pool's tokens give that overlap with every pool entry at once (one ``numpy.bincount``), and
  every entry whose bound cannot beat the threshold is skipped. The bound is compared in exact
  integer-safe terms with a margin that only ever keeps more pairs, never fewer.
- The remaining pairs get their exact LCS length from a bit-parallel LCS (Allison-Dix / Hyyrö:
  one big-integer step per token), then F from ``rouge_score.scoring.fmeasure`` itself, so the
  threshold decision is the same floating-point comparison ``rouge_score`` would make.

tests/test_self_instruct.py checks the decisions against pairwise ``rouge_score`` on a sample;
scripts/bench_self_instruct.py measures the two side by side.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np

_MARGIN = 1e-9  # bound slack: a pair is skipped only when its bound is below the threshold by more


def rouge_tokenizer():
    """``rouge_score``'s own tokenizer (lowercase, runs of [a-z0-9], no stemming), as RougeScorer uses it."""
    from rouge_score.tokenizers import DefaultTokenizer

    return DefaultTokenizer(use_stemmer=False).tokenize


def lcs_length(a: Sequence, b: Sequence) -> int:
    """Length of the longest common subsequence of two token lists (bit-parallel, exact)."""
    if len(a) < len(b):
        a, b = b, a
    if not b:
        return 0
    masks: dict = {}
    for i, t in enumerate(a):
        masks[t] = masks.get(t, 0) | (1 << i)
    full = (1 << len(a)) - 1
    v = full
    for t in b:
        u = v & masks.get(t, 0)
        v = ((v + u) | (v - u)) & full
    return len(a) - bin(v).count("1")


def rouge_l_f(target: Sequence[str], prediction: Sequence[str], lcs: Optional[int] = None) -> float:
    """ROUGE-L F of two token lists, computed as ``rouge_score._score_lcs`` computes it."""
    from rouge_score.scoring import fmeasure

    if not target or not prediction:
        return 0.0
    lcs = lcs_length(target, prediction) if lcs is None else lcs
    return fmeasure(lcs / len(prediction), lcs / len(target))


@dataclass(frozen=True)
class Match:
    """The verdict on one instruction: ``novel`` unless some pool entry scores above the threshold;
    then ``index`` is the first such entry found (the one with the largest bound) and ``score`` its F."""

    novel: bool
    score: float = 0.0
    index: Optional[int] = None


class _Postings:
    """A growable (entry ids, counts) array pair for one token."""

    __slots__ = ("ids", "counts", "n")

    def __init__(self) -> None:
        self.ids = np.empty(4, dtype=np.int64)
        self.counts = np.empty(4, dtype=np.int64)
        self.n = 0

    def append(self, entry: int, count: int) -> None:
        if self.n == len(self.ids):
            self.ids = np.concatenate([self.ids, np.empty_like(self.ids)])
            self.counts = np.concatenate([self.counts, np.empty_like(self.counts)])
        self.ids[self.n] = entry
        self.counts[self.n] = count
        self.n += 1


class RougePool:
    """The instructions of a pool, tokenised once, with posting lists for the bound."""

    def __init__(self, texts: Sequence[str] = (), threshold: float = 0.7):
        self.threshold = threshold
        self._tokenize = rouge_tokenizer()
        self.texts: list[str] = []
        self.tokens: list[list[str]] = []
        self._lengths = np.empty(16, dtype=np.int64)
        self._postings: dict[str, _Postings] = {}
        self.pairs_scored = 0  # exact LCS computations (the rest were ruled out by the bound)
        for t in texts:
            self.add(t)

    def __len__(self) -> int:
        return len(self.texts)

    def add(self, text: str, tokens: Optional[list[str]] = None) -> int:
        """Put ``text`` in the pool; returns its index."""
        tokens = self._tokenize(text) if tokens is None else tokens
        i = len(self.texts)
        self.texts.append(text)
        self.tokens.append(tokens)
        if i == len(self._lengths):
            self._lengths = np.concatenate([self._lengths, np.empty_like(self._lengths)])
        self._lengths[i] = len(tokens)
        for t, c in _counts(tokens).items():
            self._postings.setdefault(t, _Postings()).append(i, c)
        return i

    def match(self, text: str, tokens: Optional[list[str]] = None) -> Match:
        """Whether ``text`` is novel: no pool entry has ROUGE-L F > threshold with it."""
        tokens = self._tokenize(text) if tokens is None else tokens
        n = len(self.texts)
        if not tokens or not n:
            return Match(True)
        ids, weights = [], []
        for t, c in _counts(tokens).items():
            p = self._postings.get(t)
            if p is not None:
                ids.append(p.ids[: p.n])
                weights.append(np.minimum(p.counts[: p.n], c))
        if not ids:
            return Match(True)
        overlap = np.bincount(np.concatenate(ids), weights=np.concatenate(weights), minlength=n)
        # F <= 2 * overlap / (m + n_i); keep the entries where that bound can exceed the threshold.
        bound = 2.0 * overlap - (self.threshold - _MARGIN) * (len(tokens) + self._lengths[:n])
        candidates = np.flatnonzero(bound > 0)
        if not len(candidates):
            return Match(True)
        for i in candidates[np.argsort(-overlap[candidates], kind="stable")].tolist():
            self.pairs_scored += 1
            f = rouge_l_f(tokens, self.tokens[i])
            if f > self.threshold:
                return Match(False, f, i)
        return Match(True)

    def add_if_novel(self, text: str) -> Match:
        """``match``, and the text joins the pool when it is novel."""
        tokens = self._tokenize(text)
        m = self.match(text, tokens)
        if m.novel:
            self.add(text, tokens)
        return m


def _counts(tokens: Sequence[str]) -> dict[str, int]:
    out: dict[str, int] = {}
    for t in tokens:
        out[t] = out.get(t, 0) + 1
    return out
