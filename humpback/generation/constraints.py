"""Formats a generation must obey: a regex, a JSON schema, a choice list or a grammar (EBNF/GBNF), and
the built-in formats of the paper's steps.

A recipe names one as a string (see :func:`parse_constraint`)::

    builtin:instruction-line     one line of text (the backward model's instruction)
    builtin:score                free reasoning, then a last line ``Score: N`` with N in 1..5 (the rating judge)
    builtin:task-list            the rest of a numbered task list (Self-Instruct's continuation after "9.")
    builtin:verdict              free reasoning, then a last line ``Winner: A|B|tie`` (the pairwise judge)
    regex:PATTERN                the whole answer matches PATTERN
    json:PATH | json:{...}       the answer is JSON valid against the schema (a file, or inline)
    choice:A|B|C                 the answer is exactly one of the choices
    grammar:PATH                 the answer is in the language of the EBNF/GBNF grammar file (root rule ``root``)

A :class:`Constraint` is what every backend gets through ``SamplingParams.constraint``: the hf backend
enforces it while decoding (:mod:`humpback.generation.grammar`), vllm and openai servers through their
structured-output fields (:func:`vllm_structured_outputs`, :func:`openai_structured_outputs`). Whatever
the backend, :meth:`Constraint.check` reads every answer afterwards: a server that ignored the field
is caught there, counted and warned about (:mod:`humpback.generation.rejection`).

The built-ins are sized from the step's ``max_new_tokens`` so that an answer always fits it: a regex
with unbounded parts could be cut by the token limit in the middle of its format. Every ASCII
character takes at least one token, so ``max_new_tokens`` characters of bounded text fit; text in
other scripts can take several tokens per character and may still run out (counted, never trusted).
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from ..errors import ConfigError

KINDS = ("regex", "json", "choice", "grammar")
BUILTINS = ("instruction-line", "score", "task-list", "verdict")
TASK_LIST_LINES = 15  # Self-Instruct asks for tasks up to 16 (its stop sequences): the 9th..16th and a margin


@dataclass(frozen=True)
class Constraint:
    """A format: ``kind`` (regex, json, choice, grammar) and ``value`` (the pattern, the schema as JSON
    text, the choices as a JSON list, the grammar's text); ``spec``: what the recipe wrote."""

    kind: str
    value: str
    spec: str

    @property
    def digest(self) -> str:
        return hashlib.sha256(f"{self.kind}\x00{self.value}".encode()).hexdigest()[:16]

    def identity(self) -> dict:
        """What identifies the format in a stage's key and record: the recipe's words and a hash of the
        resolved format (a grammar file's content, a built-in's size), so an edit re-runs the stage."""
        return {"spec": self.spec, "kind": self.kind, "hash": self.digest}

    def check(self, text: str) -> bool:
        """Whether the whole of ``text`` obeys the format."""
        return _checker(self.kind, self.value)(str(text))


def parse_constraint(spec: str, max_new_tokens: int = 256, base: Path | None = None) -> Constraint:
    """The constraint a recipe string names (see the module's doc), a built-in sized for
    ``max_new_tokens``; files are read relative to ``base``. A bad spec is a ConfigError saying why."""
    if not isinstance(spec, str) or ":" not in spec:
        raise ConfigError(f"a constraint is KIND:VALUE with KIND one of builtin, {', '.join(KINDS)}; got {spec!r}")
    kind, _, value = spec.partition(":")
    if kind == "builtin":
        if value not in BUILTINS:
            raise ConfigError(f"unknown built-in constraint {value!r}; known: {', '.join(BUILTINS)}")
        return Constraint("regex", builtin_regex(value, max_new_tokens), spec)
    if kind == "regex":
        try:
            re.compile(value)
        except re.error as e:
            raise ConfigError(f"constraint {spec!r}: not a regular expression ({e})") from None
        return Constraint("regex", value, spec)
    if kind == "choice":
        choices = value.split("|")
        if not value or any(not c for c in choices):
            raise ConfigError(f"constraint {spec!r}: choices are non-empty strings separated by '|'")
        return Constraint("choice", json.dumps(choices), spec)
    if kind == "json":
        text = value if value.lstrip().startswith("{") else _read(value, base, spec)
        try:
            schema = json.loads(text)
        except ValueError as e:
            raise ConfigError(f"constraint {spec!r}: the schema is not JSON ({e})") from None
        from jsonschema import Draft202012Validator
        from jsonschema.exceptions import SchemaError

        try:
            Draft202012Validator.check_schema(schema)
        except SchemaError as e:
            raise ConfigError(f"constraint {spec!r}: not a JSON schema ({e.message})") from None
        return Constraint("json", json.dumps(schema, sort_keys=True), spec)
    if kind == "grammar":
        text = _read(value, base, spec)
        compile_grammar_text(text, spec)
        return Constraint("grammar", text, spec)
    raise ConfigError(f"constraint {spec!r}: unknown kind {kind!r}; known: builtin, {', '.join(KINDS)}")


def builtin_regex(name: str, max_new_tokens: int) -> str:
    """The regex of a built-in format, its bounded parts sized to fit ``max_new_tokens`` (see module doc)."""
    budget = max(1, max_new_tokens)
    if name == "instruction-line":
        # One line that is not blank: it cannot be cut into a non-match, so it needs no bound.
        return r"[ \t]*[^\s][^\n]*"
    if name == "score":
        # The paper's judge: brief reasoning, then "Score: N" on the last line (parse_score reads the last).
        reasoning = max(0, budget - 12)
        return (r"([\s\S]{0,%d}\n)?" % reasoning if reasoning else "") + r"Score: [1-5]"
    if name == "task-list":
        # The continuation of "1. ...\n...\n9." : this task's text, then further numbered tasks.
        line = max(1, budget // TASK_LIST_LINES - 5)
        # (a last newline: what is left of "...\n16." once the stop "16." is taken off)
        return r" ?[^\s][^\n]{0,%d}(\n[1-9][0-9]?\. [^\s][^\n]{0,%d}){0,%d}\n?" % (line, line, TASK_LIST_LINES - 1)
    if name == "verdict":
        # The pairwise judge: brief reasoning, then "Winner: A", "Winner: B" or "Winner: tie" on the last line.
        reasoning = max(0, budget - 12)
        return (r"([\s\S]{0,%d}\n)?" % reasoning if reasoning else "") + r"Winner: (A|B|tie)"
    raise ConfigError(f"unknown built-in constraint {name!r}; known: {', '.join(BUILTINS)}")


def vllm_structured_outputs(c: Constraint) -> dict:
    """The keyword arguments of vLLM's ``StructuredOutputsParams`` (vLLM >= 0.12: ``regex``, ``json``,
    ``choice``, ``grammar``) for ``c``; the openai backend sends the same dict as ``structured_outputs``."""
    if c.kind == "json":
        return {"json": json.loads(c.value)}
    if c.kind == "choice":
        return {"choice": json.loads(c.value)}
    return {c.kind: c.value}


def openai_structured_outputs(c: Constraint) -> dict:
    """The request fields an OpenAI-compatible completions server takes for ``c``: vLLM's
    ``structured_outputs`` object, an extra parameter of its ``/v1/completions`` (since 0.12; the older
    ``guided_*`` fields are ignored there, which is why every answer is checked afterwards)."""
    return {"structured_outputs": vllm_structured_outputs(c)}


def compile_grammar_text(text: str, spec: str = "grammar"):
    """The xgrammar ``Grammar`` of an EBNF/GBNF text (root rule ``root``), or a ConfigError."""
    xgr = import_xgrammar(spec)
    try:
        return xgr.Grammar.from_ebnf(text)
    except Exception as e:  # noqa: BLE001 - xgrammar raises its own parse errors
        raise ConfigError(f"constraint {spec!r}: not an EBNF/GBNF grammar with a 'root' rule "
                          f"({str(e)[:300]})") from None


def import_xgrammar(what: str = "constraints"):
    try:
        import xgrammar
    except ImportError as e:
        raise ConfigError(f"{what} needs xgrammar, which is not installed ({e}); install it with "
                          f"`pip install humpback[constraints]`") from None
    return xgrammar


def _read(path: str, base: Path | None, spec: str) -> str:
    p = Path(path)
    if not p.is_absolute() and base is not None:
        p = base / p
    try:
        return p.read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError(f"constraint {spec!r}: cannot read {p} ({e.strerror or e})") from None


@lru_cache(maxsize=64)
def _checker(kind: str, value: str):
    if kind == "regex":
        pattern = re.compile(value)
        return lambda text: pattern.fullmatch(text) is not None
    if kind == "choice":
        choices = set(json.loads(value))
        return lambda text: text in choices
    if kind == "json":
        from jsonschema import Draft202012Validator

        validator = Draft202012Validator(json.loads(value))

        def check_json(text: str) -> bool:
            try:
                doc = json.loads(text)
            except ValueError:
                return False
            return validator.is_valid(doc)

        return check_json
    if kind == "grammar":
        return _grammar_checker(value)
    raise ValueError(f"unknown constraint kind {kind!r}")


def _grammar_checker(text: str):
    """Whether a string is in the grammar's language: xgrammar's matcher fed the string's bytes (its
    grammar is compiled over an empty vocabulary: no tokenizer is needed to read a string)."""
    xgr = import_xgrammar("a grammar constraint")
    compiled = xgr.GrammarCompiler(xgr.TokenizerInfo([]), max_threads=1).compile_grammar(compile_grammar_text(text))

    def check(answer: str) -> bool:
        matcher = xgr.GrammarMatcher(compiled, terminate_without_stop_token=True)
        return bool(matcher.accept_string(answer)) and matcher.is_completed()

    return check
