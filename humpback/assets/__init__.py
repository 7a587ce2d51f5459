"""Real text and real pairs that need no download: what ships with the interpreter, with Debian, or in
this package. ``builtin:<name>`` in a recipe resolves here (through :func:`humpback.builtin_names.resolve`):

- ``python-reference``: Python's own reference documentation, the 79 topics of ``pydoc_data.topics``
  (about 465,000 characters), one JSONL document per topic, its text as the interpreter ships it: reST
  titles underlined with ``*``, ``=``, ``-``, ``~``, which the segmenter cuts at as a web page's headers;
- ``python3-doc-html``: Debian's ``python3-doc`` HTML pages (``/usr/share/doc/python3-doc/html``), read
  as web pages, where that package is installed (``apt-get install python3-doc``);
- ``assistant-seed``: the seed pairs of ``assistant-seed.jsonl``, written for this project (its data card
  is ``assistant-seed.md``), less the dev split;
- ``assistant-dev``: the dev split as a labelled dev set (``curate.dev_set``): each pair as written
  (``good``) and its instruction with the answer of a pair of another category (``bad``).

The dev split is every :data:`DEV_EVERY`-th pair of each category in file order, so that the judges are
measured on pairs no model of the run was trained on.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

from ..cache import build_file, cache_root
from ..errors import ConfigError

VERSION = 1  # bump when a builder's output changes meaning or layout
BUILTINS = ("python-reference", "python3-doc-html", "assistant-seed", "assistant-dev")
SEED_FILE = Path(__file__).parent / "assistant-seed.jsonl"
DEBIAN_DOCS = Path("/usr/share/doc/python3-doc/html")
DEV_EVERY = 8


def materialize(name: str, cache_dir: str | Path | None = None) -> Path:
    """The path of the builtin ``name`` (built once into the cache where it is derived)."""
    if name == "python3-doc-html":
        if not DEBIAN_DOCS.is_dir():
            raise ConfigError(f"builtin:python3-doc-html: Debian's python3-doc is not installed here ({DEBIAN_DOCS} "
                              f"is missing); install it with `apt-get install python3-doc`, or use "
                              f"builtin:python-reference, the same documentation as the interpreter ships it")
        return DEBIAN_DOCS.resolve()  # a link to the versioned folder: the files are read through it
    if name == "python-reference":
        rows = reference_documents()
    elif name in ("assistant-seed", "assistant-dev"):
        seed, dev = split_pairs(read_pairs())
        rows = seed if name == "assistant-seed" else dev_set(dev)
    else:
        raise ConfigError(f"unknown builtin {name!r}; this module's: {', '.join(BUILTINS)}")
    text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
    key = hashlib.blake2b(f"{name}|v{VERSION}|{DEV_EVERY}\n{text}".encode(), digest_size=6).hexdigest()
    final = cache_root(cache_dir) / f"{name}-v{VERSION}-{key}.jsonl"
    if not final.is_file():
        build_file(final, lambda tmp: tmp.write_text(text, encoding="utf-8"))
    return final


def reference_documents() -> list[dict]:
    """One ``{"id", "text"}`` document per ``pydoc_data.topics`` topic, sorted by topic name."""
    import pydoc_data.topics

    topics = pydoc_data.topics.topics
    return [{"id": f"python{sys.version_info[0]}.{sys.version_info[1]}:{key}", "text": topics[key]}
            for key in sorted(topics)]


def read_pairs(path: Path | None = None) -> list[dict]:
    """The hand-written pairs, in file order (``id``, ``category``, ``instruction``, ``output``)."""
    return [json.loads(line) for line in (path or SEED_FILE).read_text(encoding="utf-8").splitlines() if line.strip()]


def split_pairs(pairs: list[dict]) -> tuple[list[dict], list[dict]]:
    """(seed, dev): every :data:`DEV_EVERY`-th pair of each category (its 8th, 16th, ...) goes to dev."""
    seen: dict[str, int] = {}
    seed, dev = [], []
    for p in pairs:
        seen[p["category"]] = seen.get(p["category"], 0) + 1
        (dev if seen[p["category"]] % DEV_EVERY == 0 else seed).append(p)
    return seed, dev


def dev_set(dev: list[dict]) -> list[dict]:
    """Labelled pairs: each dev pair (``good``), then each instruction with the answer of the pair half the
    list away in category order, the nearest one of another category (``bad``)."""
    ordered = sorted(dev, key=lambda p: p["category"])
    n = len(ordered)
    rows = [{"id": f"{p['id']}:real", "instruction": p["instruction"], "output": p["output"], "label": "good",
             "category": p["category"], "negative": None} for p in ordered]
    for j, p in enumerate(ordered):
        step = n // 2
        while ordered[(j + step) % n]["category"] == p["category"]:
            step += 1
        other = ordered[(j + step) % n]
        rows.append({"id": f"{p['id']}:answer-of-{other['id']}", "instruction": p["instruction"],
                     "output": other["output"], "label": "bad", "category": p["category"],
                     "negative": "another task's answer"})
    return rows
