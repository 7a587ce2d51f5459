"""Documents -> segments: sectioning at headers, the paper's cleaning filters, deduplication, a funnel.

A segment is the text after a header with the subtrees of lower headers (paper: after an HTML header).
In an HTML page (``humpback.data.webpage``) the headers are ``<h1>``..``<h6>``, and a segment's text is
what follows its header (the header itself is kept apart, in ``Segment.header``). In text documents they
are markdown ``#``..``######`` lines and underlined titles (``=`` ``-`` ``~`` ``^`` ``*`` ...), whose levels
follow reStructuredText's rule: the first underline style met in a document is level 1, the next new one
level 2, and so on (Python's own docs underline titles with ``*``, then ``=``, ``-``, ``~``; markdown's
``=`` before ``-`` comes out as levels 1 and 2); the header line stays at the top of the text. A subtree
longer than ``max_chars`` is emitted as its own text before its first child plus its children,
recursively; a leaf still too long is split at blank lines. Segments never overlap. Text before a page's
first header has no header: the ``no_header`` filter drops it when ``corpus.require_header`` is set (the
paper's segments all follow one).

Each filter is a small pure function; the :class:`Segmenter` applies them in :data:`FILTERS` order and
counts every removal under the filter's name. Dedup state holds hashes and LSH buckets, never texts.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

from ..config import CorpusConfig
from .corpus import Document
from .dedup import LSHIndex, MinHasher
from .webpage import Block, page_blocks

FILTERS = ("no_header", "too_short", "too_long", "bad_header", "boilerplate", "repetitive", "other_language",
           "exact_duplicate", "near_duplicate", "seed_overlap")
MAX_REPETITION_SENTENCES = 200
BOILERPLATE_MAX_LINE = 150  # longer lines are prose, even when they mention a privacy policy

_ATX = re.compile(r"^ {0,3}(#{1,6})(?:[ \t]+(.*?))?(?:[ \t]+#+)?[ \t]*$")
_UNDERLINE = re.compile(r"^([=\-~^*])\1{2,}[ \t]*$")
_FENCE = re.compile(r"^ {0,3}(```|~~~)")
_PARAGRAPH_BREAK = re.compile(r"\n[ \t]*\n")
_WORD = re.compile(r"\w+")
_SENTENCE_TOKEN = re.compile(r"\w+|[.!?]+(?=\s|$)|\n[ \t]*\n")
_NAV_HEADER = re.compile(
    r"\b(advertisements?|adverts?|sponsored|forums?|quick ?links?|free newsletters?|newsletter sign ?up"
    r"|related (posts|articles|stories|links|content)|popular posts|recent (posts|comments)|share this"
    r"|comments?|leave a (reply|comment)|navigation|menu|sidebar|footer|follow us|site map|sitemap)\b",
    re.IGNORECASE,
)
_BOILERPLATE_LINE = re.compile(
    r"\b(we use cookies|(this|our) (web)?site uses cookies|cookie (policy|settings|preferences|consent|notice)"
    r"|accept (all )?cookies|copyright|all rights reserved|privacy policy|terms (of (use|service)|and conditions)"
    r"|subscribe|sign (up|in)|log ?in|register now|share (on|this|via)|follow us|tweet this|pin it"
    r"|click here|read more|continue reading|skip to (main )?content|back to top)\b|©|\(c\) \d{4}",
    re.IGNORECASE,
)
_LINK_SEP = re.compile(r"[|»›·]")


@dataclass(frozen=True)
class Segment:
    id: str  # first 16 hex chars of blake2b of the normalised text
    doc_id: str
    header: str | None
    text: str


@dataclass
class _Header:
    start: int  # first line (an overline, if any)
    body: int  # first line after the header
    level: int
    title: str
    end: int = -1  # line after the subtree
    children: list | None = None


def find_headers(lines: Sequence[str]) -> list[_Header]:
    headers, in_fence, i = [], False, 0
    styles: dict[str, int] = {}  # underline character -> level, in order of first appearance (reST)
    while i < len(lines):
        line = lines[i]
        nxt = lines[i + 1] if i + 1 < len(lines) else ""
        if not in_fence and _is_underlined_title(lines, i):
            overline = i > 0 and lines[i - 1].strip() == nxt.strip() and (not headers or headers[-1].body < i)
            level = styles.setdefault(nxt.strip()[0], min(len(styles) + 1, 6))
            headers.append(_Header(i - overline, i + 2, level, line.strip()))
            i += 2
            continue
        if _FENCE.match(line):
            in_fence = not in_fence
        elif not in_fence and (m := _ATX.match(line)):
            headers.append(_Header(i, i + 1, len(m.group(1)), (m.group(2) or "").strip()))
        i += 1
    return headers


def _is_underlined_title(lines: Sequence[str], i: int) -> bool:
    if i + 1 >= len(lines) or not (m := _UNDERLINE.match(lines[i + 1])):
        return False
    title = lines[i].strip()
    if not title or _ATX.match(lines[i]) or _UNDERLINE.match(lines[i]) or len(title) > len(lines[i + 1].strip()):
        return False
    before = lines[i - 1].strip() if i > 0 else ""
    return not before or bool(_UNDERLINE.match(before)) and before[0] == m.group(1)


def split_sections(text: str, max_chars: int) -> list[tuple[str | None, str]]:
    """``(header, text)`` pieces of a text document: header subtrees of at most ``max_chars`` where possible,
    each starting with its header line."""
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    return _cut(lines, find_headers(lines), max_chars, header_in_text=True)


def split_blocks(blocks: Sequence[Block], max_chars: int) -> list[tuple[str | None, str]]:
    """``(header, text)`` pieces of an HTML page's blocks (:func:`humpback.data.webpage.page_blocks`): the
    text after each header with the subtrees of lower headers (their titles as lines of it)."""
    lines: list[str] = []
    headers: list[_Header] = []
    for block in blocks:
        if block.level:
            headers.append(_Header(len(lines), len(lines) + 1, block.level, block.text))
            lines.append(block.text)
        else:
            lines.extend(block.text.split("\n"))
        lines.append("")
    return _cut(lines, headers, max_chars, header_in_text=False)


def _cut(lines: list[str], headers: list[_Header], max_chars: int,
         header_in_text: bool) -> list[tuple[str | None, str]]:
    if not headers:
        return [(None, p) for p in split_paragraphs("\n".join(lines), max_chars)]
    roots: list[_Header] = []
    stack: list[_Header] = []
    for h in headers:
        h.children = []
        while stack and stack[-1].level >= h.level:
            stack.pop().end = h.start
        (stack[-1].children if stack else roots).append(h)
        stack.append(h)
    for h in stack:
        h.end = len(lines)

    out = [(None, p) for p in split_paragraphs("\n".join(lines[: headers[0].start]), max_chars)]

    def emit(h: _Header) -> None:
        first = h.start if header_in_text else h.body
        whole = "\n".join(lines[first: h.end]).strip()
        if len(whole) <= max_chars or not h.children:
            if "\n".join(lines[h.body: h.end]).strip():  # a header with no body is not a section
                out.extend((h.title, p) for p in split_paragraphs(whole, max_chars))
            return
        if "\n".join(lines[h.body: h.children[0].start]).strip():
            own = "\n".join(lines[first: h.children[0].start])
            out.extend((h.title, p) for p in split_paragraphs(own, max_chars))
        for child in h.children:
            emit(child)

    for root in roots:
        emit(root)
    return out


def split_paragraphs(text: str, max_chars: int) -> list[str]:
    """Pack blank-line separated paragraphs greedily into pieces of at most ``max_chars`` (a single longer
    paragraph stays whole, for the ``too_long`` filter)."""
    text = text.strip()
    if len(text) <= max_chars:
        return [text] if text else []
    pieces, current, size = [], [], 0
    for para in _PARAGRAPH_BREAK.split(text):
        para = para.strip("\n")
        if not para.strip():
            continue
        if current and size + 2 + len(para) > max_chars:
            pieces.append("\n\n".join(current).strip())
            current, size = [], 0
        size += (2 if current else 0) + len(para)
        current.append(para)
    if current:
        pieces.append("\n\n".join(current).strip())
    return pieces


def is_too_short(text: str, min_chars: int) -> bool:
    return len(text) < min_chars


def is_too_long(text: str, max_chars: int) -> bool:
    return len(text) > max_chars


def is_bad_header(header: str | None) -> bool:
    """Empty, ALL UPPERCASE, or navigation headers. A headerless segment (None) is not dropped."""
    if header is None:
        return False
    h = header.strip().strip("*_`#").strip()
    return not h or (h == h.upper() and h != h.lower()) or bool(_NAV_HEADER.search(h))


def is_boilerplate_line(line: str) -> bool:
    line = line.strip()
    if len(line) <= BOILERPLATE_MAX_LINE and _BOILERPLATE_LINE.search(line):
        return True
    if line.startswith("|"):  # a markdown table row, not a list of links
        return False
    parts = [p.strip() for p in _LINK_SEP.split(line)]
    if len(parts) < 2 or not all(0 < len(p) <= 40 for p in parts):
        return False
    return len(parts) >= 3 or "»" in line or "›" in line


def boilerplate_fraction(text: str) -> float:
    lines = [line for line in text.splitlines() if line.strip()]
    return sum(map(is_boilerplate_line, lines)) / len(lines) if lines else 0.0


def is_boilerplate(text: str, threshold: float) -> bool:
    fraction = boilerplate_fraction(text)
    return fraction > 0 and fraction >= threshold


def sentence_words(text: str) -> list[list[str]]:
    """Lowercased words of each sentence: one ends at ``.``/``!``/``?`` before a space, or at a blank line
    (a single line break is a hard wrap, not a sentence end)."""
    out, current = [], []
    for token in _SENTENCE_TOKEN.findall(text.lower()):
        if token[0].isalnum() or token[0] == "_":
            current.append(token)
        elif current:
            out.append(current)
            current = []
    if current:
        out.append(current)
    return out


def has_repeated_sentences(text: str, n: int = 3, threshold: float = 0.8,
                           max_sentences: int = MAX_REPETITION_SENTENCES) -> bool:
    """True if two of the first ``max_sentences`` sentences have word n-gram Jaccard >= ``threshold``.
    Pairs are found through an inverted index of n-grams, so unrelated sentences cost nothing."""
    index: dict[tuple, list[int]] = {}
    sizes: list[int] = []
    for words in sentence_words(text)[:max_sentences]:
        grams = set(zip(*(words[k:] for k in range(n))))
        if not grams:
            continue
        i, shared = len(sizes), {}
        for g in grams:
            postings = index.get(g)
            if postings is None:
                index[g] = [i]
                continue
            for j in postings:
                shared[j] = shared.get(j, 0) + 1
            postings.append(i)
        sizes.append(len(grams))
        if any(inter / (sizes[i] + sizes[j] - inter) >= threshold for j, inter in shared.items()):
            return True
    return False


def normalise_for_dedup(text: str) -> str:
    """The text lower-cased with runs of whitespace as one space: what exact-duplicate detection compares."""
    return " ".join(text.lower().split())


def text_id(normalised: str) -> str:
    return hashlib.blake2b(normalised.encode("utf-8")).hexdigest()[:16]


class Segmenter:
    """Turns documents into kept segments (streaming) and counts what each step removed."""

    def __init__(self, cfg: CorpusConfig, seed_outputs: Sequence[str] = ()):
        self.cfg = cfg
        self._funnel = {"documents": 0, "pages": 0, "sections": 0, **dict.fromkeys(FILTERS, 0), "kept": 0}
        self._language = None
        if cfg.language is not None:
            from .language import LanguageFilter

            self._language = LanguageFilter(cfg.language)
        self._seen: set[str] = set()
        self._hasher = MinHasher()
        self._near = LSHIndex(cfg.near_dedup_threshold) if cfg.near_dedup else None
        self._seed_exact: set[str] = set()
        self._seed_near = LSHIndex(cfg.near_dedup_threshold) if cfg.drop_seed_overlap and seed_outputs else None
        for output in seed_outputs if cfg.drop_seed_overlap else ():
            norm = normalise_for_dedup(output)
            self._seed_exact.add(text_id(norm))
            self._seed_near.add(self._hasher.signature(norm))

    @property
    def funnel(self) -> dict[str, int]:
        return dict(self._funnel)

    def _full(self) -> bool:
        return self.cfg.max_segments is not None and self._funnel["kept"] >= self.cfg.max_segments

    def segments(self, documents: Iterable[Document]) -> Iterator[Segment]:
        f = self._funnel
        if self._full():
            return
        for doc in documents:
            f["documents"] += 1
            if doc.format == "html":
                f["pages"] += 1
                pieces = split_blocks(page_blocks(doc.text), self.cfg.max_chars)
            else:
                pieces = split_sections(doc.text, self.cfg.max_chars)
            for header, text in pieces:
                f["sections"] += 1
                segment = self._keep(doc, header, text)
                if isinstance(segment, str):
                    f[segment] += 1
                    continue
                f["kept"] += 1
                yield segment
                if self._full():
                    return

    def _keep(self, doc: Document, header: str | None, text: str) -> Segment | str:
        """The segment, or the name of the first filter that removes it."""
        cfg = self.cfg
        if header is None and cfg.require_header:
            return "no_header"
        if is_too_short(text, cfg.min_chars):
            return "too_short"
        if is_too_long(text, cfg.max_chars):
            return "too_long"
        if is_bad_header(header):
            return "bad_header"
        if is_boilerplate(text, cfg.boilerplate_threshold):
            return "boilerplate"
        if has_repeated_sentences(text, cfg.repetition_ngram, cfg.repetition_threshold):
            return "repetitive"
        if self._language is not None and not self._language.keeps(text):
            return "other_language"
        norm = normalise_for_dedup(text)
        sid = text_id(norm)
        if sid in self._seen:
            return "exact_duplicate"
        sig = self._hasher.signature(norm) if self._near is not None or self._seed_near is not None else None
        if self._near is not None and self._near.query(sig):
            return "near_duplicate"
        if sid in self._seed_exact or (self._seed_near is not None and self._seed_near.query(sig)):
            return "seed_overlap"
        self._seen.add(sid)
        if self._near is not None:
            self._near.add(sig)
        return Segment(id=sid, doc_id=doc.id, header=header, text=text)
