"""HTML pages -> the readable text of the page as a flat list of headers and paragraphs.

The page is parsed with a real HTML5 parser (selectolax's Lexbor engine), never with regular
expressions. What a reader does not read is dropped with its subtree: scripts, styles, templates,
embedded objects and forms' controls, and the page's furniture: ``<nav>``, ``<aside>``, every
``<footer>``, the page-level ``<header>`` (one inside an ``<article>`` or ``<section>`` is that
article's title block, by the HTML standard, and is kept), the ARIA landmarks that mean the same
(``role`` navigation, banner, contentinfo, complementary, search), elements whose class or id is one
of the names themes give the same furniture (:data:`DROP_NAMES`: Sphinx's ``footer`` and
``sphinxsidebar``, ``headerlink`` permalinks, ``breadcrumbs``, ...) and hidden elements.

What is left comes out in document order as :class:`Block` s: ``<h1>``..``<h6>`` as headers of levels
1..6 (their text alone: a trailing permalink sign such as Sphinx's "¶" is removed), everything else
as paragraphs, one per block element; list items and table rows are lines of their paragraph,
``<br>`` breaks a line and ``<pre>`` keeps its whitespace. :func:`humpback.data.segment.split_blocks`
cuts the blocks at the headers.

``decode_page`` turns a page's bytes into text with the charset its server or its ``<meta>`` declares,
else UTF-8; bytes that none of them decode are a :class:`BadEncoding`, which readers count.
"""

from __future__ import annotations

import codecs
import re
from dataclasses import dataclass

DROP_TAGS = frozenset({
    "script", "style", "noscript", "template", "svg", "math", "iframe", "object", "embed", "canvas",
    "select", "button", "textarea", "input", "nav", "aside", "footer", "dialog", "head", "title", "meta", "link",
})
DROP_ROLES = frozenset({"navigation", "banner", "contentinfo", "complementary", "search"})
# Class or id names (whole tokens) that themes give their furniture when they use no landmark element:
# Sphinx's "footer" and "sphinxsidebar" divs, permalink anchors ("headerlink"), breadcrumbs, menus.
DROP_NAMES = frozenset({
    "footer", "site-footer", "sidebar", "sphinxsidebar", "navbar", "nav", "navigation", "menu", "breadcrumb",
    "breadcrumbs", "headerlink", "skip-link", "cookie-banner", "cookie-notice",
})
HEADER_LEVELS = {f"h{i}": i for i in range(1, 7)}
# Elements that start and end a paragraph of their own.
PARAGRAPH_TAGS = frozenset({
    "p", "div", "section", "article", "main", "header", "blockquote", "figure", "figcaption", "address",
    "details", "summary", "fieldset", "legend", "form", "center", "body", "html", "ul", "ol", "dl", "table",
    "caption", "hr", "hgroup", "search",
})
# Elements that are one line of the paragraph around them.
LINE_TAGS = frozenset({"li", "dt", "dd", "tr", "option"})
CELL_TAGS = frozenset({"td", "th"})
SECTIONING = frozenset({"article", "section"})
_PERMALINK = re.compile(r"[\s¶§#🔗]+$")
_META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?\s*([A-Za-z0-9_.:-]+)""", re.IGNORECASE)
_LATIN1_LABELS = {"iso-8859-1", "iso8859-1", "latin1", "latin-1", "l1", "us-ascii", "ascii", "cp819"}


@dataclass(frozen=True)
class Block:
    level: int  # 1..6 for a header, 0 for a paragraph
    text: str


class BadEncoding(ValueError):
    """A page whose bytes no declared charset (nor UTF-8) decodes."""


def declared_charset(content_type: str | None) -> str | None:
    """The ``charset`` parameter of a ``Content-Type`` header value, if any."""
    if not content_type:
        return None
    for part in content_type.split(";")[1:]:
        key, _, value = part.partition("=")
        if key.strip().lower() == "charset" and value.strip().strip("\"'"):
            return value.strip().strip("\"'")
    return None


def decode_page(raw: bytes, charset: str | None = None) -> str:
    """The page's text: a byte-order mark wins, then ``charset`` (from the HTTP headers), then the page's
    own ``<meta charset>``, then UTF-8; the first that decodes the bytes strictly. Labels that mean Latin-1
    decode as Windows-1252, as browsers do. :class:`BadEncoding` when none does."""
    for bom, name in ((codecs.BOM_UTF8, "utf-8"), (codecs.BOM_UTF16_LE, "utf-16-le"),
                      (codecs.BOM_UTF16_BE, "utf-16-be")):
        if raw.startswith(bom):
            return raw[len(bom):].decode(name, errors="replace")
    meta = _META_CHARSET.search(raw[:4096])
    tried = []
    for label in (charset, meta.group(1).decode("ascii") if meta else None, "utf-8"):
        if not label:
            continue
        names = ("cp1252", "latin-1") if label.strip().lower() in _LATIN1_LABELS else (label.strip(),)
        for name in names:
            if name.lower() in tried:
                continue
            tried.append(name.lower())
            try:
                return raw.decode(name)
            except (UnicodeDecodeError, LookupError):
                continue
    raise BadEncoding(f"not decodable as {', '.join(tried)}")


def page_blocks(html: str) -> list[Block]:
    """The headers and paragraphs of a page, in document order (see the module docstring)."""
    from selectolax.lexbor import LexborHTMLParser

    root = LexborHTMLParser(html).root
    if root is None:
        return []
    out = _Blocks()
    # Depth-first over the tree with an explicit stack (pages nest deeper than Python's recursion
    # limit); a ("close", tag) entry closes the element pushed before it.
    stack: list = [root]
    while stack:
        node = stack.pop()
        if isinstance(node, tuple):
            out.close(node[1])
            continue
        tag = node.tag
        if tag == "-text":
            out.text(node.text_content or "")
            continue
        if tag is None or tag.startswith("-"):  # comments, doctype
            continue
        if _dropped(node, tag):
            continue
        if tag in HEADER_LEVELS:
            out.header(HEADER_LEVELS[tag], _PERMALINK.sub("", " ".join(node.text(deep=True, separator="").split())))
            continue
        if tag == "pre":
            out.preformatted(node.text(deep=True, separator=""))
            continue
        if tag == "br":
            out.line()
            continue
        out.open(tag)
        stack.append(("close", tag))
        child = node.last_child
        while child is not None:
            stack.append(child)
            child = child.prev
    out.paragraph()
    return out.blocks


def _dropped(node, tag: str) -> bool:
    if tag in DROP_TAGS:
        return True
    attrs = node.attributes
    if attrs:
        if "hidden" in attrs or (attrs.get("aria-hidden") or "").lower() == "true":
            return True
        if (attrs.get("role") or "").lower() in DROP_ROLES:
            return True
        names = f"{attrs.get('class') or ''} {attrs.get('id') or ''}".lower().split()
        if any(name in DROP_NAMES for name in names):
            return True
    if tag == "header":
        parent = node.parent
        while parent is not None:
            if parent.tag in SECTIONING:
                return False
            parent = parent.parent
        return True
    return False


class _Blocks:
    """Collects text into lines, lines into paragraphs, paragraphs and headers into blocks."""

    def __init__(self) -> None:
        self.blocks: list[Block] = []
        self._lines: list[str] = []
        self._words: list[str] = []
        self._cells = 0

    def text(self, s: str) -> None:
        self._words.append(s)

    def line(self) -> None:
        line = " ".join("".join(self._words).split())
        self._words = []
        if line:
            self._lines.append(f"| {line} |" if self._cells > 1 else line)
        self._cells = 0

    def paragraph(self) -> None:
        self.line()
        if self._lines:
            self.blocks.append(Block(0, "\n".join(self._lines)))
        self._lines = []

    def header(self, level: int, title: str) -> None:
        self.paragraph()
        self.blocks.append(Block(level, title))

    def preformatted(self, text: str) -> None:
        self.paragraph()
        text = text.strip("\n").rstrip()
        if text.strip():
            self.blocks.append(Block(0, text))

    def open(self, tag: str) -> None:
        if tag in PARAGRAPH_TAGS:
            self.paragraph()
        elif tag in LINE_TAGS:
            self.line()
        elif tag in CELL_TAGS:
            if self._cells:
                self._words.append(" | ")
            self._cells += 1

    def close(self, tag: str) -> None:
        if tag in PARAGRAPH_TAGS:
            self.paragraph()
        elif tag in LINE_TAGS:
            self.line()
