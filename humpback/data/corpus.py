"""Unlabelled documents, streamed from local files, URLs or a `datasets` source with bounded memory.

Files (local, or URLs that fsspec opens: ``https://``, ``s3://``, ``hf://``, ...):

- ``.jsonl``/``.json``/``.parquet`` (optionally ``.jsonl.gz``/``.json.gz``) hold one document per record,
  its text in ``corpus.text_field``, or its raw HTML in ``corpus.html_field``;
- ``.txt``/``.md``/``.rst`` files are one text document each, ``.html``/``.htm``/``.xhtml`` one web page;
- ``.warc``/``.warc.gz`` files (Common Crawl's) hold many web pages (:mod:`humpback.data.warc`);
- a ``.paths``/``.paths.gz`` file lists more of them, one a line, as Common Crawl's ``warc.paths.gz``
  does: a relative line is taken from the root of the list's own URL (``https://host/``), or from the
  list's folder when the list is local.

A web page is a :class:`Document` of format ``html``: :mod:`humpback.data.segment` parses it and cuts it
at its headers. A document's id is its location (``file:line``, ``file:row n``, the file path,
``file@offset`` for a WARC record, or ``dataset[split]#i``): stable across runs and unique.
What was read is recorded in a :class:`ReadLog`: the files, and for web input the pages not taken
(not HTML, an HTTP error, bytes that do not decode), counted.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from ..config import CorpusConfig
from ..errors import DataError
from .records import RECORD_SUFFIXES, expand_files, has_suffix, is_url, iter_hub_records, iter_records, open_stream
from .warc import WARC_SUFFIXES, iter_warc_pages
from .webpage import BadEncoding, decode_page

TEXT_SUFFIXES = (".txt", ".md", ".rst")
HTML_SUFFIXES = (".html", ".htm", ".xhtml")
LIST_SUFFIXES = (".paths", ".paths.gz")
CORPUS_SUFFIXES = RECORD_SUFFIXES + TEXT_SUFFIXES + HTML_SUFFIXES + WARC_SUFFIXES + LIST_SUFFIXES
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Document:
    id: str
    text: str  # the text, or a web page's HTML
    source: str  # the file or dataset it came from
    format: str = "text"  # "text" or "html"


@dataclass
class ReadLog:
    """What reading the corpus went through: every file (or dataset) opened, in order, and counts of
    the web records read and of those that were not taken, by reason (:data:`humpback.data.warc.WEB_COUNTS`)."""

    files: list[str] = field(default_factory=list)
    counts: Counter = field(default_factory=Counter)

    def funnel(self) -> dict[str, int]:
        """The reading part of the corpus funnel: present once any web input was read."""
        from .warc import WEB_COUNTS

        return {k: self.counts[k] for k in WEB_COUNTS} if any(self.counts.values()) else {}


def iter_documents(cfg: CorpusConfig, skipped: list | None = None, read: ReadLog | None = None) -> Iterator[Document]:
    """Yield the corpus's documents, at most ``cfg.max_documents``. With ``cfg.skip_invalid``, a bad
    record is appended to ``skipped`` as ``(location, reason)`` instead of raising :class:`DataError`.
    ``read`` collects what was read (see :class:`ReadLog`)."""
    if cfg.skip_invalid and skipped is None:
        skipped = _LoggedSkips()
    n = 0
    for doc in _documents(cfg, skipped if cfg.skip_invalid else None, read if read is not None else ReadLog()):
        yield doc
        n += 1
        if cfg.max_documents is not None and n >= cfg.max_documents:
            break
    if isinstance(skipped, _LoggedSkips) and skipped:
        log.warning("corpus: skipped %d invalid records, first: %s: %s", len(skipped), *skipped[0])


class _LoggedSkips(list):
    """Skips nobody asked to collect: still counted, and reported in the log."""


def corpus_files(path: str) -> list[str | Path]:
    """The files ``corpus.path`` names: a file, a folder's files, a URL, or what a ``.paths`` list holds
    (a list is read when it is ``corpus.path`` itself, not when a folder holds one)."""
    if has_suffix(path, LIST_SUFFIXES) and (is_url(path) or Path(path).is_file()):
        return _listed(path)
    return expand_files(path, tuple(s for s in CORPUS_SUFFIXES if s not in LIST_SUFFIXES))


def _listed(listing: str | Path) -> list[str | Path]:
    with open_stream(listing) as f:
        lines = [line.strip() for line in f.read().decode("utf-8").splitlines()]
    if is_url(listing):
        parts = urlsplit(str(listing))
        root = f"{parts.scheme}://{parts.netloc}/"
    else:
        root = None
    out: list[str | Path] = []
    for i, line in enumerate(lines, 1):
        if not line or line.startswith("#"):
            continue
        if is_url(line) or Path(line).is_absolute():
            target = line if is_url(line) else Path(line)
        elif root is not None:
            target = root + line.lstrip("/")
        else:
            target = Path(listing).parent / line
        if has_suffix(target, LIST_SUFFIXES) or not has_suffix(target, CORPUS_SUFFIXES):  # lists do not nest
            raise DataError(f"{listing}:{i}: {line!r} is not a corpus file (expected one of "
                            f"{', '.join(s for s in CORPUS_SUFFIXES if s not in LIST_SUFFIXES)})")
        out.append(target)
    if not out:
        raise DataError(f"{listing}: the list names no file")
    return out


def _documents(cfg: CorpusConfig, skipped: list | None, read: ReadLog) -> Iterator[Document]:
    if cfg.dataset is not None:
        source = f"{cfg.dataset}[{cfg.split}]"
        read.files.append(source)
        for location, record in iter_hub_records(cfg.dataset, cfg.dataset_config, cfg.split, streaming=True):
            doc = _from_record(location, record, cfg, source, skipped, read)
            if doc is not None:
                yield doc
        return
    if cfg.path is None:
        raise DataError("corpus: set one of 'corpus.path' and 'corpus.dataset'")
    for f in corpus_files(cfg.path):
        read.files.append(str(f))
        if has_suffix(f, WARC_SUFFIXES):
            # warcio reads gzipped records itself, member by member.
            with open_stream(f, gunzip=False) as stream:
                for location, html, _url in iter_warc_pages(str(f), stream, read.counts, skipped):
                    yield Document(id=location, text=html, source=str(f), format="html")
        elif has_suffix(f, HTML_SUFFIXES):
            doc = _from_page_file(f, skipped, read)
            if doc is not None:
                yield doc
        elif has_suffix(f, TEXT_SUFFIXES):
            doc = _from_text_file(f, skipped)
            if doc is not None:
                yield doc
        else:
            for location, record in iter_records(f, skipped):
                doc = _from_record(location, record, cfg, str(f), skipped, read)
                if doc is not None:
                    yield doc


def _from_record(location: str, record: dict, cfg: CorpusConfig, source: str, skipped: list | None,
                 read: ReadLog) -> Document | None:
    field_name = cfg.html_field or cfg.text_field
    value = record.get(field_name)
    if cfg.html_field is not None and isinstance(value, (bytes, str)):
        read.counts["web_records"] += 1
        try:
            html = value if isinstance(value, str) else decode_page(value)
        except BadEncoding:
            read.counts["skipped_bad_encoding"] += 1
            return None
        return Document(id=location, text=html, source=source, format="html")
    if isinstance(value, str):
        return Document(id=location, text=value, source=source)
    key = "corpus.html_field" if cfg.html_field is not None else "corpus.text_field"
    if field_name not in record:
        reason = (f"missing {'HTML' if cfg.html_field else 'text'} field '{field_name}' "
                  f"(the record has {sorted(record)[:10]}; set {key})")
    else:
        reason = (f"{'HTML' if cfg.html_field else 'text'} field '{field_name}' is not a string "
                  f"(got {type(value).__name__})")
    if skipped is None:
        raise DataError(f"{location}: {reason}")
    skipped.append((location, reason))
    return None


def _read_bytes(path: str | Path, skipped: list | None) -> bytes | None:
    try:
        with open_stream(path, gunzip=False) as f:
            return f.read()
    except DataError as e:  # cannot open: the message names the file already
        if skipped is None:
            raise
        reason = str(e).removeprefix(f"{path}: ")
    except OSError as e:
        reason = f"cannot read: {e.strerror or e}"
    if skipped is None:
        raise DataError(f"{path}: {reason}")
    skipped.append((str(path), reason))
    return None


def _from_page_file(path: str | Path, skipped: list | None, read: ReadLog) -> Document | None:
    raw = _read_bytes(path, skipped)
    if raw is None:
        return None
    read.counts["web_records"] += 1
    try:
        html = decode_page(raw)
    except BadEncoding:
        read.counts["skipped_bad_encoding"] += 1
        return None
    return Document(id=str(path), text=html, source=str(path), format="html")


def _from_text_file(path: str | Path, skipped: list | None) -> Document | None:
    raw = _read_bytes(path, skipped)
    if raw is None:
        return None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        reason = f"not UTF-8: {e.reason} at byte {e.start}"
    else:
        return Document(id=str(path), text=text, source=str(path))
    if skipped is None:
        raise DataError(f"{path}: {reason}")
    skipped.append((str(path), reason))
    return None
