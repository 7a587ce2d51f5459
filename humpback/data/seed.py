"""Seed (instruction, output) pairs from four record formats.

- ``messages``: TRL conversational rows ``{"messages": [{"role", "content"}, ...]}``: the first user turn
  and the first assistant reply after it (system turns are ignored).
- ``alpaca``: ``instruction``, optional ``input``, ``output``; a non-empty input is appended to the
  instruction after a blank line.
- ``oasst``: Open Assistant (oasst1, oasst2), as flat message rows (the hub datasets) or as the official
  ``*.trees.jsonl`` export (one tree per line, each message's ``replies`` nested in it), selected as in
  the paper: root prompter messages in ``seed.language`` with their assistant reply of rank 0 (not
  deleted, in the same language); one pair per tree. Trees not ``ready_for_export`` are left out; a tree
  id (or a message id) seen twice is counted and its second copy left out, never merged.
- ``self_instruct``: ``{"instruction", "instances": [{"input", "output"}, ...]}``: one pair per instance.

``auto`` detects the format from the first record's keys. ``seed.sample`` draws that many of the pairs
at random (seeded), as the paper's 3,200 seed pairs were drawn; ``seed.max_examples`` keeps the first ones.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from ..config import SeedConfig
from ..errors import DataError
from .records import iter_hub_records, iter_records

FORMAT_KEYS = {
    "messages": ("messages",),
    "self_instruct": ("instruction", "instances"),
    "alpaca": ("instruction", "output"),
    "oasst": ("message_id", "parent_id", "role", "text"),
}
OASST_TREE_KEYS = ("message_tree_id", "prompt")  # a line of the *.trees.jsonl export
OASST_MESSAGE_KEYS = ("message_id", "parent_id", "role", "text")
MAX_SKIPPED_SHOWN = 5


@dataclass(frozen=True)
class SeedPair:
    instruction: str
    output: str
    source: str  # location of the record the pair comes from


@dataclass
class SeedResult:
    pairs: list[SeedPair]
    format: str
    stats: dict = field(default_factory=dict)


class _Invalid(Exception):
    """A record that yields no valid pair: ``reason`` is short and countable, e.g. "missing 'output'"."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def detect_format(location: str, record: dict) -> str:
    if all(k in record for k in OASST_TREE_KEYS):
        return "oasst"
    for name, keys in FORMAT_KEYS.items():
        if all(k in record for k in keys):
            return name
    known = "; ".join(f"{n} ({', '.join(k)})" for n, k in FORMAT_KEYS.items())
    raise DataError(
        f"{location}: cannot detect the seed format from the keys {sorted(record)}; "
        f"known formats (and the keys they need): {known}. Set seed.format to one of them"
    )


def _open_seed(cfg: SeedConfig, format_set_by: str) -> tuple[str, "_Skips", "_Counted", str]:
    """(where, skips, records, format) of the seed ``cfg`` names."""
    where = cfg.path if cfg.path is not None else f"{cfg.dataset}[{cfg.split}]"
    skips = _Skips(strict=not cfg.skip_invalid)
    if cfg.path is not None:
        records = iter_records(cfg.path, skips if cfg.skip_invalid else None)
    else:
        records = iter_hub_records(cfg.dataset, cfg.dataset_config, cfg.split, streaming=False)
    counted = _Counted(records)
    first = counted.peek()
    if first is None:
        raise DataError(f"{where}: no seed record found (skipped {skips.describe()})")
    fmt = detect_format(*first) if cfg.format == "auto" else cfg.format
    skips.context = (f" ({fmt} format, detected from the first record's keys; set seed.format to override)"
                     if cfg.format == "auto" else f" ({fmt} format, set by {format_set_by}; try seed.format=auto)")
    return where, skips, counted, fmt


def load_seed(cfg: SeedConfig, format_set_by: str = "the config", random_seed: int = 0) -> SeedResult:
    """The seed pairs of ``cfg``; ``format_set_by`` names who set ``seed.format`` (for error messages);
    ``random_seed`` seeds ``seed.sample``."""
    where, skips, counted, fmt = _open_seed(cfg, format_set_by)
    extra: dict[str, Any] = {}
    if fmt == "oasst":
        pairs, extra["selection"] = _oasst_pairs(counted, cfg.language, skips)
    else:
        pairs = list(_pairs(counted, fmt, skips, cfg.max_examples))
    # Repeats go before any cut or draw, so that seed.sample / seed.max_examples count distinct pairs.
    distinct = drop_duplicate_pairs(pairs)
    if len(distinct) < len(pairs):
        extra["duplicates"] = len(pairs) - len(distinct)
    if not cfg.keep_duplicates:
        pairs = distinct
    pairs = pairs[: cfg.max_examples] if cfg.max_examples is not None else pairs
    if cfg.sample is not None:
        extra["sample"] = {"asked": cfg.sample, "drawn_from": len(pairs), "random_seed": random_seed}
        pairs = subsample(pairs, cfg.sample, random_seed)
    stats = {"records_read": counted.n, "pairs": len(pairs), "skipped": dict(skips.counts),
             "skipped_examples": skips.shown, **extra}
    if not pairs:
        selection = f"; oasst selection: {extra['selection']}" if "selection" in extra else ""
        raise DataError(f"{where}: no seed pair found: read {counted.n} records ({fmt} format), "
                        f"skipped {skips.describe()}{selection}")
    return SeedResult(pairs=pairs, format=fmt, stats=stats)


@dataclass(frozen=True)
class SeedTask:
    """A seed task as Self-Instruct sees it: an instruction, its (input, output) instances, and whether
    it is a classification task."""

    instruction: str
    instances: tuple[tuple[str, str], ...]
    is_classification: bool
    source: str


def load_seed_tasks(cfg: SeedConfig, format_set_by: str = "the config",
                    random_seed: int = 0) -> tuple[list[SeedTask], str]:
    """(tasks, format): the seed's task-level view. A ``self_instruct`` record is one task as written
    (``is_classification`` false when absent); in the other formats each distinct instruction of the
    seed pairs (as :func:`load_seed` selects them) is a task whose pairs are its instances (with an
    empty input), not a classification task. ``seed.max_examples`` and ``seed.sample`` count tasks."""
    where, skips, counted, fmt = _open_seed(cfg, format_set_by)
    if fmt != "self_instruct":
        result = load_seed(cfg, format_set_by, random_seed)
        grouped: dict[str, list[SeedPair]] = {}
        for p in result.pairs:
            grouped.setdefault(p.instruction, []).append(p)
        return [SeedTask(i, tuple(("", p.output) for p in ps), False, ps[0].source) for i, ps in grouped.items()], \
            result.format
    tasks = []
    for location, record in counted:
        try:
            pairs = _self_instruct_instances(record)
            flag = record.get("is_classification", False)
            if not isinstance(flag, bool):
                raise _Invalid("'is_classification' is not true or false")
        except _Invalid as e:
            skips.append((location, e.reason))
            continue
        tasks.append(SeedTask(_text(record, "instruction"), tuple(pairs), flag, location))
        if cfg.max_examples is not None and len(tasks) >= cfg.max_examples:
            break
    if cfg.sample is not None:
        tasks = subsample(tasks, cfg.sample, random_seed)
    if not tasks:
        raise DataError(f"{where}: no seed task found: read {counted.n} records, skipped {skips.describe()}")
    return tasks, fmt


def drop_duplicate_pairs(pairs: list[SeedPair]) -> list[SeedPair]:
    """The pairs without those that repeat an earlier pair's instruction and output (first one kept)."""
    seen: set[tuple[str, str]] = set()
    out = []
    for p in pairs:
        if (p.instruction, p.output) not in seen:
            seen.add((p.instruction, p.output))
            out.append(p)
    return out


def subsample(pairs: list[SeedPair], n: int, random_seed: int) -> list[SeedPair]:
    """``n`` of ``pairs`` drawn uniformly without replacement with ``random.Random(random_seed)``, in
    their reading order (all of them when there are no more than ``n``)."""
    if len(pairs) <= n:
        return list(pairs)
    return [pairs[i] for i in sorted(random.Random(random_seed).sample(range(len(pairs)), n))]


class _Skips:
    """Invalid records, in reading order: counted by reason (the text before any ':'), the first few kept
    with their location. ``strict`` raises instead. The record readers append to it like to a list."""

    def __init__(self, strict: bool):
        self.strict = strict
        self.context = ""  # the format in use and who chose it, added to a strict error
        self.counts: Counter = Counter()
        self.shown: list[str] = []

    def append(self, item: tuple[str, str]) -> None:
        location, reason = item
        if self.strict:
            raise DataError(f"{location}: {reason}{self.context}")
        self.counts[reason.split(":", 1)[0]] += 1
        if len(self.shown) < MAX_SKIPPED_SHOWN:
            self.shown.append(f"{location}: {reason}")

    def describe(self) -> str:
        return ", ".join(f"{r}: {n}" for r, n in self.counts.items()) or "nothing"


class _Counted:
    """An iterator of (location, record) that counts what it yields and can peek at the first item."""

    def __init__(self, it: Iterable[tuple[str, dict]]):
        self._it = iter(it)
        self._head: list = []
        self.n = 0

    def peek(self) -> tuple[str, dict] | None:
        if not self._head:
            self._head = [next(self._it, None)]
        return self._head[0]

    def __iter__(self) -> Iterator[tuple[str, dict]]:
        if self._head:
            head, self._head = self._head[0], []
            if head is None:
                return
            self.n += 1
            yield head
        for item in self._it:
            self.n += 1
            yield item


def _pairs(records, fmt: str, skips: _Skips, max_examples: int | None) -> Iterator[SeedPair]:
    convert = {"messages": _from_messages, "alpaca": _from_alpaca, "self_instruct": _from_self_instruct}[fmt]
    n = 0
    for location, record in records:
        try:
            found = convert(record)
        except _Invalid as e:
            skips.append((location, e.reason))
            continue
        for i, (instruction, output) in enumerate(found):
            source = location if len(found) == 1 else f"{location} instance {i + 1}"
            yield SeedPair(instruction, output, source)
            n += 1
            if max_examples is not None and n >= max_examples:
                return


def _text(record: dict, key: str, name: str | None = None, optional: bool = False) -> str:
    name = name or key
    if key not in record or (optional and record[key] is None):
        if optional:
            return ""
        raise _Invalid(f"missing '{name}'")
    value = record[key]
    if not isinstance(value, str):
        raise _Invalid(f"'{name}' is not a string")
    value = value.strip()
    if not value and not optional:
        raise _Invalid(f"empty '{name}'")
    return value


def _with_input(instruction: str, inp: str) -> str:
    return f"{instruction}\n\n{inp}" if inp else instruction


def _from_alpaca(record: dict) -> list[tuple[str, str]]:
    instruction = _text(record, "instruction")
    return [(_with_input(instruction, _text(record, "input", optional=True)), _text(record, "output"))]


def _from_self_instruct(record: dict) -> list[tuple[str, str]]:
    instruction = _text(record, "instruction")
    return [(_with_input(instruction, inp), out) for inp, out in _self_instruct_instances(record)]


def _self_instruct_instances(record: dict) -> list[tuple[str, str]]:
    """(input, output) of each instance of a Self-Instruct record."""
    _text(record, "instruction")
    instances = record.get("instances")
    if not isinstance(instances, list) or not instances:
        raise _Invalid("missing 'instances'" if instances is None else "'instances' is not a non-empty list")
    pairs = []
    for i, inst in enumerate(instances):
        if not isinstance(inst, dict):
            raise _Invalid(f"'instances[{i}]' is not an object")
        inp = _text(inst, "input", f"instances[{i}].input", optional=True)
        pairs.append((inp, _text(inst, "output", f"instances[{i}].output")))
    return pairs


def _from_messages(record: dict) -> list[tuple[str, str]]:
    messages = record.get("messages")
    if not isinstance(messages, list):
        raise _Invalid("missing 'messages'" if messages is None else "'messages' is not a list")
    user = None
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or "role" not in m:
            raise _Invalid(f"missing 'messages[{i}].role'")
        if user is None and m["role"] == "user":
            user = _content(m, i)
        elif user is not None and m["role"] == "assistant":
            return [(user, _content(m, i))]
    raise _Invalid("no user turn in 'messages'" if user is None else "no assistant reply in 'messages'")


def _content(message: dict, i: int) -> str:
    content = message.get("content")
    if isinstance(content, list):  # multimodal-style parts: keep the text parts
        content = "".join(p.get("text") or "" for p in content if isinstance(p, dict) and p.get("type") == "text")
    return _text({"content": content} if content is not None else {}, "content", f"messages[{i}].content")


def _oasst_pairs(records, language: str | None, skips: _Skips) -> tuple[list[SeedPair], dict]:
    """The paper's oasst1 selection. Every row is read (replies may come before their root)."""
    roots: dict[str, tuple[str, str]] = {}  # message_id -> (location, text), in file order
    replies: dict[str, tuple[str, str, Any]] = {}  # parent_id -> first (location, text, lang) of rank 0
    seen: set[str] = set()
    sel = Counter()
    for location, r in _oasst_messages(records, sel):
        missing = [k for k in OASST_MESSAGE_KEYS if k not in r]
        if missing:
            skips.append((location, f"missing '{missing[0]}'"))
            continue
        if r["message_id"] in seen:
            sel["duplicate_message"] += 1
            continue
        seen.add(r["message_id"])
        if r.get("deleted"):
            sel["deleted"] += 1
        elif r["role"] == "prompter" and r["parent_id"] is None:
            if language is not None and r.get("lang") != language:
                sel["root_other_language"] += 1
            else:
                roots[r["message_id"]] = (location, r["text"])
        elif r["role"] == "assistant" and r.get("rank") == 0:
            replies.setdefault(r["parent_id"], (location, r["text"], r.get("lang")))
        else:
            sel["not_selected"] += 1
    pairs = []
    for message_id, (location, text) in roots.items():
        reply = replies.get(message_id)
        if reply is None:
            sel["root_without_rank0_reply"] += 1
            continue
        if language is not None and reply[2] != language:
            sel["reply_other_language"] += 1
            continue
        instruction = _checked_text(location, text, skips)
        output = _checked_text(reply[0], reply[1], skips) if instruction is not None else None
        if output is not None:
            pairs.append(SeedPair(instruction, output, location))
    return pairs, {"roots": len(roots), **dict(sel)}


def _oasst_messages(records, sel: Counter) -> Iterator[tuple[str, dict]]:
    """Message rows from flat rows as they are, and from export trees depth first (a reply's
    ``parent_id`` is its parent's id when the export leaves it out). A tree seen before, or not ready
    for export, is counted in ``sel`` and left out."""
    trees: set = set()
    for location, r in records:
        if not all(k in r for k in OASST_TREE_KEYS):
            yield location, r
            continue
        tree_id = r["message_tree_id"]
        if tree_id in trees:
            sel["duplicate_tree"] += 1
            continue
        trees.add(tree_id)
        if r.get("tree_state", "ready_for_export") != "ready_for_export":
            sel["tree_not_ready"] += 1
            continue
        stack = [(r["prompt"], None, "prompt")]
        while stack:
            message, parent, where = stack.pop()
            if not isinstance(message, dict):
                yield f"{location} {where}", {}
                continue
            row = {k: v for k, v in message.items() if k != "replies"}
            row.setdefault("parent_id", parent)
            yield (location if where == "prompt" else f"{location} {where}"), row
            replies = message.get("replies") or []
            for i in reversed(range(len(replies))):
                stack.append((replies[i], message.get("message_id"), f"{where}.replies[{i}]"))


def _checked_text(location: str, text: Any, skips: _Skips) -> str | None:
    try:
        return _text({"text": text}, "text")
    except _Invalid as e:
        skips.append((location, e.reason))
        return None
