"""Web archives: the HTML pages of a WARC file (Common Crawl's format), read with ``warcio``.

A WARC file is a sequence of records, gzipped one by one (``.warc.gz``) or not. The pages are its
``response`` records (and ``resource`` records, as ``wget --warc-file`` writes for local files) whose
payload is HTML: ``Content-Type`` ``text/html`` or ``application/xhtml+xml``, from the HTTP headers, or
Common Crawl's ``WARC-Identified-Payload-Type`` when those say nothing. Requests, metadata and warcinfo
records are not pages and are passed over. Every response is counted, and so is every one that is
not a page: not HTML, an HTTP status other than 2xx (redirects, errors) or bytes that do not decode
(:func:`humpback.data.webpage.decode_page`). A page's id is ``<file>@<offset>``, the byte offset of its
record, where warcio can read it again.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import BinaryIO

from ..errors import DataError
from .webpage import BadEncoding, declared_charset, decode_page

WARC_SUFFIXES = (".warc", ".warc.gz")
HTML_TYPES = ("text/html", "application/xhtml+xml")
# What the reader counts, in this order in the funnel.
WEB_COUNTS = ("web_records", "skipped_not_html", "skipped_status", "skipped_bad_encoding")


def is_html_type(content_type: str | None) -> bool:
    return bool(content_type) and content_type.split(";", 1)[0].strip().lower() in HTML_TYPES


def iter_warc_pages(name: str, stream: BinaryIO, counts: Counter,
                    skipped: list | None = None) -> Iterator[tuple[str, str, str | None]]:
    """``(id, html, url)`` for each HTML page of the WARC ``stream`` (``name`` is where it came from);
    ``counts`` gets :data:`WEB_COUNTS`. A stream that stops being readable WARC raises
    :class:`DataError`, or, with a ``skipped`` list, is appended to it and reading stops there."""
    from warcio.archiveiterator import ArchiveIterator

    records = ArchiveIterator(stream)
    while True:
        try:
            record = next(records)
        except StopIteration:
            return
        except Exception as e:  # warcio raises ArchiveLoadFailed, zlib.error, EOFError, ...
            reason = f"not readable WARC: {type(e).__name__}: {e}"
            if skipped is None:
                raise DataError(f"{name}: {reason}") from None
            skipped.append((name, reason))
            return
        if record.rec_type not in ("response", "resource"):
            continue
        counts["web_records"] += 1
        http = record.http_headers if record.rec_type == "response" else None
        if http is not None and not http.get_statuscode().startswith("2"):
            counts["skipped_status"] += 1
            continue
        headers = http if http is not None else record.rec_headers
        content_type = (headers.get_header("Content-Type")
                        or record.rec_headers.get_header("WARC-Identified-Payload-Type"))
        if not is_html_type(content_type):
            counts["skipped_not_html"] += 1
            continue
        try:
            raw = record.content_stream().read()
        except Exception:  # a broken chunked or compressed payload
            raw = None
        offset = records.get_record_offset()  # (warcio reads the rest of the record to know it)
        if raw is None:
            counts["skipped_bad_encoding"] += 1
            continue
        try:
            html = decode_page(raw, declared_charset(content_type))
        except BadEncoding:
            counts["skipped_bad_encoding"] += 1
            continue
        yield f"{name}@{offset}", html, record.rec_headers.get_header("WARC-Target-URI")
