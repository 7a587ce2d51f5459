"""The embedded default: a tiny Llama, a local tokenizer, a docs corpus and a seed set, all built
from what ships with Python. Nothing is downloaded; building everything takes seconds.

``builtin:<name>`` in a recipe resolves to a path here (through :func:`humpback.builtin_names.resolve`):

- ``tiny-llama``: a model folder (random-init Llama, hidden 64, 2 layers, 4 query heads sharing one
  key/value head, as Llama 3 and Qwen2.5 group theirs) with its BPE tokenizer.
- ``python-docs``: a JSONL corpus, one ``{"id", "text"}`` document per line.
- ``python-docs-seed``: a JSONL seed set in alpaca form, one ``{"instruction", "output"}`` per line.

Builds are deterministic for a given Python (and library versions for the model) and cached under
``$HUMPBACK_CACHE`` (default ``~/.cache/humpback``) in folders whose names carry a content hash.
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import inspect
import json
import re
import sys
import warnings
from pathlib import Path
from typing import Any

from .cache import build_dir, build_file, cache_root
from .errors import ConfigError

# Bump when the output of any builder changes meaning or layout.
TINY_VERSION = 2

# Standard-library modules whose docstrings join the corpus (sorted, mostly pure Python, portable).
DOC_MODULES = (
    "abc", "argparse", "base64", "bisect", "calendar", "collections", "colorsys", "configparser",
    "contextlib", "copy", "csv", "dataclasses", "datetime", "difflib", "enum", "fnmatch",
    "fractions", "functools", "getopt", "glob", "graphlib", "gzip", "heapq", "html", "inspect",
    "ipaddress", "itertools", "json", "keyword", "linecache", "logging", "math", "numbers",
    "operator", "pathlib", "pprint", "queue", "random", "re", "reprlib", "sched", "secrets",
    "shlex", "shutil", "statistics", "string", "struct", "tempfile", "textwrap", "timeit",
    "tomllib", "traceback", "types", "typing", "urllib.parse", "uuid", "warnings", "weakref",
    "zipfile",
)
MAX_ENTRIES_PER_MODULE = 20
MAX_DOC_CHARS = 3000

# Tokenizer and model shape.
SPECIAL_TOKENS = ("<unk>", "<s>", "</s>", "<pad>")
VOCAB_SIZE = 2000
MODEL_SHAPE = dict(
    hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=1,
    intermediate_size=128, max_position_embeddings=2048,
)

BUILTINS = ("tiny-llama", "python-docs", "python-docs-seed")
_UNDERLINES = {"*": "#", "=": "##", "-": "###", "~": "####"}


# --------------------------------------------------------------------------- documents


def python_docs_documents() -> list[dict]:
    """Unlabelled documents: Python's reference topics (markdown headers) and stdlib docstrings."""
    import pydoc_data.topics

    docs = []
    for key in sorted(pydoc_data.topics.topics):
        docs.append({"id": f"topic:{key}", "text": _markdown_headers(pydoc_data.topics.topics[key])})
    for name in DOC_MODULES:
        text = _module_document(name)
        if text:
            docs.append({"id": f"module:{name}", "text": text})
    return docs


def _markdown_headers(text: str) -> str:
    """reST-style underlined titles become markdown ``#`` headers (``*`` -> #, ``=`` -> ##, ...)."""
    lines = text.replace("\r\n", "\n").split("\n")
    out: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        nxt = lines[i + 1] if i + 1 < len(lines) else ""
        if (line.strip() and nxt and len(set(nxt)) == 1 and nxt[0] in _UNDERLINES
                and len(nxt) == len(line) and not line.startswith(" ")):
            out.append(f"{_UNDERLINES[nxt[0]]} {line.strip()}")
            i += 2
            continue
        out.append(line.rstrip())
        i += 1
    return "\n".join(out).strip() + "\n"


def _clean_doc(doc: Any) -> str:
    if not isinstance(doc, str):
        return ""
    text = inspect.cleandoc(doc).strip()
    return text if " at 0x" not in text else ""


def _module_document(name: str) -> str:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            mod = importlib.import_module(name)
        except ImportError:
            return ""
    parts = [f"# The `{name}` module", ""]
    mod_doc = _clean_doc(mod.__doc__)
    if mod_doc:
        parts += [mod_doc[:MAX_DOC_CHARS], ""]
    public = getattr(mod, "__all__", None)
    if public is None:
        public = [n for n in dir(mod) if not n.startswith("_")
                  and getattr(getattr(mod, n), "__module__", None) == name]
    entries = 0
    for attr in sorted(set(public)):
        obj = getattr(mod, attr, None)
        if not (inspect.isclass(obj) or inspect.isroutine(obj)):
            continue
        doc = _clean_doc(obj.__doc__)
        if len(doc) < 40:
            continue
        kind = "Class" if inspect.isclass(obj) else "Function"
        parts += [f"## {kind} `{name}.{attr}`", "", doc[:MAX_DOC_CHARS], ""]
        entries += 1
        if entries >= MAX_ENTRIES_PER_MODULE:
            break
    if not mod_doc and not entries:
        return ""
    return "\n".join(parts).strip() + "\n"


# --------------------------------------------------------------------------- seed

MIN_OUTPUT_CHARS = 200
MAX_OUTPUT_CHARS = 1500
MAX_TOPIC_PAIRS = 80
MAX_API_PAIRS = 50
MAX_API_PAIRS_PER_MODULE = 1


def python_docs_seed(docs: list[dict]) -> list[dict]:
    """A small alpaca-form seed set (instruction, output) derived from the docs. Deterministic."""
    topic_pairs: list[dict] = []
    api_pairs: list[dict] = []
    for doc in docs:
        if doc["id"].startswith("topic:") and len(topic_pairs) < MAX_TOPIC_PAIRS:
            pair = _topic_pair(doc["text"])
            # Two topics ("if", "else") share one text: keep the first.
            if pair and all(pair["instruction"] != p["instruction"] for p in topic_pairs):
                topic_pairs.append(pair)
        elif doc["id"].startswith("module:"):
            taken = 0
            for kind, qualname, body in _api_sections(doc["text"]):
                if taken >= MAX_API_PAIRS_PER_MODULE or len(api_pairs) >= MAX_API_PAIRS:
                    break
                output = _fit(body.split("\n\n"))
                if output is None:
                    continue
                if kind == "Class":
                    instruction = f"What is the `{qualname}` class in Python?"
                else:
                    instruction = f"What does `{qualname}` do in Python?"
                api_pairs.append({"instruction": instruction, "output": output})
                taken += 1
    return topic_pairs + api_pairs


def _topic_pair(text: str) -> dict | None:
    lines = text.split("\n")
    if not lines[0].startswith("# "):
        return None
    title = lines[0][2:].strip()
    if "Python" in title:
        return None
    body = []
    for line in lines[1:]:
        if line.startswith("#"):  # stop at the first subsection
            break
        body.append(line)
    paragraphs = [p for p in "\n".join(body).split("\n\n") if p.strip()]
    # Reflow hard-wrapped prose; keep indented grammar and code blocks as they are.
    prose = [p.strip("\n") if p.startswith(" ") else " ".join(p.split()) for p in paragraphs]
    output = _fit(prose)
    if output is None:
        return None
    m = re.fullmatch(r'The "(\w+)" statement', title)
    if m:
        instruction = f"Explain the Python `{m.group(1)}` statement."
    else:
        subject = re.sub(r'"([^"]+)"', r"`\1`", title)
        # "Format String Syntax" -> "format string syntax"; code and acronyms keep their case.
        subject = re.sub(r"(?<![`\w])([A-Z][a-z]+)\b", lambda w: w.group(1).lower(), subject)
        instruction = f"Explain {subject} in Python."
    return {"instruction": instruction, "output": output}


def _api_sections(text: str) -> list[tuple[str, str, str]]:
    """(kind, qualified name, body) for each ``## Function|Class `name``` section of a module doc."""
    out = []
    for m in re.finditer(r"^## (Function|Class) `([^`]+)`\n\n(.*?)(?=^## |\Z)", text, re.M | re.S):
        out.append((m.group(1), m.group(2), m.group(3).strip()))
    return out


def _fit(paragraphs: list[str]) -> str | None:
    """Leading paragraphs joined, at most MAX_OUTPUT_CHARS; None if under MIN_OUTPUT_CHARS."""
    out = ""
    for p in paragraphs:
        p = p.strip("\n").rstrip()
        if not p.strip():
            continue
        candidate = f"{out}\n\n{p}" if out else p
        if len(candidate) > MAX_OUTPUT_CHARS:
            break
        out = candidate
        if len(out) >= 600:
            break
    return out if len(out) >= MIN_OUTPUT_CHARS else None


# --------------------------------------------------------------------------- tokenizer and model


def build_tiny_tokenizer(texts: list[str]):
    """A byte-level BPE tokenizer (vocab ~2,000) trained on ``texts``; no chat template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE, special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False,
    )
    # Make sure the judge's score digits (" 1".." 5", "Score: 5") are learned as single tokens.
    scores = "".join(f"Score: {i}\n" for i in range(1, 6)) * 50
    # ... and the rubric judge's answers, bare and after a space (yes/Yes/YES, no/No/NO).
    answers = "".join(f"{w}\n {w}\n" for w in ("yes", "Yes", "YES", "no", "No", "NO")) * 50
    tok.train_from_iterator(list(texts) + [scores, answers], trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>", unk_token="<unk>",
        model_max_length=MODEL_SHAPE["max_position_embeddings"],
    )


def build_tiny_llama(out_dir: str | Path, tokenizer, seed: int = 0) -> Path:
    """A random-init Llama (hidden 64, 2 layers, 4 heads) saved with its tokenizer to ``out_dir``."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=len(tokenizer), bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id, **MODEL_SHAPE,
    )
    cpu_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        model = LlamaForCausalLM(config)
    finally:
        torch.random.set_rng_state(cpu_state)
    out = Path(out_dir)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


# --------------------------------------------------------------------------- cache


@functools.lru_cache(maxsize=1)
def _docs_cached() -> tuple[str, ...]:
    # Documents as JSON lines (immutable, so the cache cannot be mutated by a caller).
    return tuple(json.dumps(d, ensure_ascii=False) for d in python_docs_documents())


def _docs() -> list[dict]:
    return [json.loads(line) for line in _docs_cached()]


def _key(name: str) -> str:
    h = hashlib.blake2b(digest_size=6)
    h.update(f"{name}|v{TINY_VERSION}|{sys.version}".encode())
    for line in _docs_cached():
        h.update(line.encode())
        h.update(b"\n")
    if name == "tiny-llama":
        import tokenizers
        import transformers

        h.update(json.dumps([MODEL_SHAPE, SPECIAL_TOKENS, VOCAB_SIZE, transformers.__version__,
                             tokenizers.__version__], sort_keys=True).encode())
    return h.hexdigest()


def materialize(name: str, cache_dir: str | Path | None = None) -> Path:
    """Build (once) and return the path of the builtin asset ``name``."""
    if name not in BUILTINS:
        raise ConfigError(f"unknown builtin {name!r}; the tiny default's: {', '.join(BUILTINS)}")
    root = cache_root(cache_dir)
    key = _key(name)
    if name == "tiny-llama":
        final = root / f"{name}-v{TINY_VERSION}-{key}"
        if not (final / "config.json").is_file():
            tokenizer = lambda: build_tiny_tokenizer([d["text"] for d in _docs()])  # noqa: E731
            build_dir(final, lambda tmp: build_tiny_llama(tmp, tokenizer(), seed=0))
        return final
    final = root / f"{name}-v{TINY_VERSION}-{key}.jsonl"
    if not final.is_file():
        docs = _docs()
        build_file(final, lambda tmp: write_jsonl(tmp, docs if name == "python-docs" else python_docs_seed(docs)))
    return final


def write_jsonl(path: Path, rows: list[dict]) -> None:
    with open(path, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
