"""Constrained decoding for the ``hf`` backend: xgrammar's token masks applied inside the decode loop.

xgrammar (the engine vLLM and SGLang use for their structured outputs) compiles a regex, JSON schema or
EBNF grammar against the tokenizer's vocabulary once; a ``GrammarMatcher`` per row then gives, at
every step, the bitmask of the tokens that keep the answer inside the language (the end token only
where the answer may end). :class:`RowMasks` holds one matcher per row of a batch and follows the
decode loop (:meth:`humpback.generation.decoding.Decoder.generate`): rows that finish leave it as they
leave the batch. xgrammar was chosen over outlines-core by ``scripts/bench_constraints.py`` (see
docs/constraints.md for the figures).
"""

from __future__ import annotations

import json
from typing import Sequence

import torch

from .constraints import Constraint, compile_grammar_text, import_xgrammar


class GrammarCache:
    """One compiler per tokenizer and the grammars it compiled (compiling a bounded regex can take a
    fraction of a second; a stage's shards reuse it)."""

    def __init__(self, tokenizer, vocab_size: int, stop_token_ids: Sequence[int]) -> None:
        xgr = import_xgrammar("generation with a constraint on the hf backend")
        self._xgr = xgr
        self.info = xgr.TokenizerInfo.from_huggingface(tokenizer, vocab_size=vocab_size,
                                                       stop_token_ids=list(stop_token_ids))
        self.compiler = xgr.GrammarCompiler(self.info, max_threads=1)
        self._compiled: dict[tuple[str, str], object] = {}

    def compiled(self, c: Constraint):
        key = (c.kind, c.value)
        if key not in self._compiled:
            if c.kind == "regex":
                self._compiled[key] = self.compiler.compile_regex(c.value)
            elif c.kind == "json":
                self._compiled[key] = self.compiler.compile_json_schema(c.value, any_whitespace=False)
            elif c.kind == "choice":
                alternatives = " | ".join(json.dumps(x) for x in json.loads(c.value))
                self._compiled[key] = self.compiler.compile_grammar(self._xgr.Grammar.from_ebnf("root ::= "
                                                                                                f"{alternatives}"))
            else:
                self._compiled[key] = self.compiler.compile_grammar(compile_grammar_text(c.value, c.spec))
        return self._compiled[key]

    def masks(self, c: Constraint, rows: int) -> "RowMasks":
        return RowMasks(self._xgr, self.compiled(c), rows, self.info.vocab_size)


class RowMasks:
    """One grammar matcher per row of a batch; ``rows`` below are the batch's original row numbers."""

    def __init__(self, xgr, compiled, rows: int, vocab_size: int) -> None:
        self._xgr = xgr
        self.matchers = [xgr.GrammarMatcher(compiled) for _ in range(rows)]
        self.bitmask = xgr.allocate_token_bitmask(rows, vocab_size)
        self.rejected = 0  # tokens a matcher refused (none unless the mask was not applied)

    def apply(self, logits: torch.Tensor, rows: Sequence[int]) -> torch.Tensor:
        """``logits`` ([len(rows), V], float32) with every token outside each row's language at -inf."""
        logits = logits.float().contiguous()
        mask = self.bitmask[: len(rows)]
        for b, r in enumerate(rows):
            self.matchers[r].fill_next_token_bitmask(mask, b)
        self._xgr.apply_token_bitmask_inplace(logits, mask.to(logits.device))
        return logits

    def advance(self, rows: Sequence[int], tokens: Sequence[int]) -> None:
        for r, t in zip(rows, tokens):
            if not self.matchers[r].is_terminated() and not self.matchers[r].accept_token(int(t)):
                self.rejected += 1
