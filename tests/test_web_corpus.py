"""Web input: HTML parsing, decoding, header cuts, WARC files (made here with warcio), URLs, lists,
an HTML column, the language filter, and the funnel's web counts."""

import http.server
import json
import threading
from functools import partial

import pytest
from records import english, german, write_jsonl, write_warc

from humpback.config import CorpusConfig
from humpback.data.corpus import Document, ReadLog, corpus_files, iter_documents
from humpback.data.funnel import check_not_empty, describe_funnel
from humpback.data.segment import Segmenter, is_bad_header, split_blocks
from humpback.data.webpage import BadEncoding, Block, decode_page, declared_charset, page_blocks
from humpback.errors import ConfigError, DataError


def page(title: str, sections: list[tuple[int, str, str]], lead: str = "") -> str:
    """A page as a documentation theme writes one: a site header, navigation, a sidebar and a footer
    around an article of (level, header, text) sections."""
    body = "".join(f"<h{lv}>{h}<a class=\"headerlink\" href=\"#x\">¶</a></h{lv}>\n<p>{t}</p>\n"
                   for lv, h, t in sections)
    return (f"<!DOCTYPE html><html><head><title>{title}</title><style>p {{color: red}}</style>"
            f"<script>var tracking = 1;</script></head><body>"
            f"<header><a href=\"/\">Example site</a> <nav>Home | Docs | Blog | About</nav></header>"
            f"<div class=\"related\" role=\"navigation\"><a>previous</a> | <a>next</a> | <a>index</a></div>"
            f"<main><article><p>{lead}</p>{body}</article></main>"
            f"<aside><h2>Related posts</h2><p>Other things to read</p></aside>"
            f"<div class=\"footer\">© Copyright 2024, Example. All rights reserved.</div></body></html>")


def web_cfg(**kw) -> CorpusConfig:
    return CorpusConfig(**{"path": "unused", "min_chars": 300, "max_chars": 3000, **kw})


def test_page_blocks_keep_the_reading_text_in_order():
    html = ("<html><head><title>T</title></head><body><header><nav>Home</nav></header>"
            "<article><header><h1>The <code>title</code><a class='headerlink'>¶</a></h1></header>"
            "<p>Hello <b>world</b>,\n  spaced   text.<br>Next line.</p><ul><li>one</li><li>two <i>2</i></li></ul>"
            "<table><tr><th>a</th><th>b</th></tr><tr><td>1</td><td>2</td></tr></table>"
            "<h2>Sub</h2><pre>code\n   indented</pre><p hidden>hidden</p><div aria-hidden='true'>x</div>"
            "<script>var x;</script><!-- a comment --></article><aside>aside</aside><footer>(c) us</footer>"
            "</body></html>")
    assert page_blocks(html) == [
        Block(1, "The title"),
        Block(0, "Hello world, spaced text.\nNext line."),
        Block(0, "one\ntwo 2"),
        Block(0, "| a | b |\n| 1 | 2 |"),
        Block(2, "Sub"),
        Block(0, "code\n   indented"),
    ]


def test_page_blocks_survive_deep_nesting():
    html = "<div>" * 5000 + "<h2>Deep</h2><p>text</p>" + "</div>" * 5000
    assert page_blocks(html) == [Block(2, "Deep"), Block(0, "text")]


def test_decode_page_charsets():
    assert decode_page("café".encode("utf-8")) == "café"
    assert decode_page("café".encode("cp1252"), "ISO-8859-1") == "café"  # Latin-1 labels read as Windows-1252
    assert decode_page("‘quoted’".encode("cp1252"), "iso-8859-1") == "‘quoted’"
    meta = '<meta charset="windows-1252"><p>café</p>'.encode("cp1252")
    assert decode_page(meta) == '<meta charset="windows-1252"><p>café</p>'
    assert decode_page(b"\xef\xbb\xbfBOM") == "BOM"
    assert decode_page("日本".encode("shift_jis"), "shift_jis") == "日本"
    with pytest.raises(BadEncoding, match="not decodable as utf-8"):
        decode_page("café".encode("latin-1"))  # undeclared, not UTF-8
    with pytest.raises(BadEncoding, match="not decodable as no-such-charset, utf-8"):
        decode_page(b"\xfa\xfb\xfc", "no-such-charset")
    assert declared_charset("text/html; charset=\"UTF-8\"") == "UTF-8"
    assert declared_charset("text/html") is None and declared_charset(None) is None


def test_split_blocks_cuts_at_headers_with_the_subtrees_of_lower_ones():
    blocks = [Block(0, "lead"), Block(1, "Top"), Block(0, "top text"), Block(2, "A"), Block(0, "a text"),
              Block(3, "A.1"), Block(0, "deep"), Block(2, "B"), Block(0, "b text"), Block(2, "Empty")]
    # Everything fits: the whole subtree of each root, its header kept apart.
    assert split_blocks(blocks, 1000) == [(None, "lead"),
                                          ("Top", "top text\n\nA\n\na text\n\nA.1\n\ndeep\n\nB\n\nb text\n\nEmpty")]
    # Too long: each header's own text, then its children's subtrees; a header with no body is no section.
    assert split_blocks(blocks, 20) == [(None, "lead"), ("Top", "top text"), ("A", "a text\n\nA.1\n\ndeep"),
                                        ("B", "b text")]


def test_html_segments_keep_real_headers_and_drop_bad_ones():
    sections = [(1, "Getting started", english(1)), (2, "Navigation", english(2)), (2, "SHOUTING HEADER", english(3)),
                (2, "", english(4)), (2, "Installing the package", english(5)), (3, "Advertisement", english(6))]
    doc = Document("p.html", page("Guide", sections, lead=english(7)), "p.html", "html")
    seg = Segmenter(web_cfg(max_chars=1000))
    kept = list(seg.segments([doc]))
    assert [s.header for s in kept] == [None, "Getting started", "Installing the package"]
    assert kept[1].text == english(1)  # the text after the header, without it
    assert not any(is_bad_header(s.header) for s in kept)
    assert not any("©" in s.text or "Home | Docs" in s.text or "¶" in s.text or "Related posts" in s.text
                   for s in kept)
    f = seg.funnel
    assert (f["documents"], f["pages"], f["sections"], f["bad_header"], f["kept"]) == (1, 1, 7, 4, 3)
    seg = Segmenter(web_cfg(max_chars=1000, require_header=True))
    assert [s.header for s in seg.segments([doc])] == ["Getting started", "Installing the package"]
    assert seg.funnel["no_header"] == 1


def test_folder_of_html_pages(tmp_path):
    (tmp_path / "site" / "sub").mkdir(parents=True)
    (tmp_path / "site" / "index.html").write_text(page("Index", [(1, "Welcome to the site", english(10))]))
    (tmp_path / "site" / "sub" / "b.htm").write_bytes(
        page("B", [(1, "Café au lait", english(11))]).replace("<head>", "<head><meta charset='windows-1252'>")
        .encode("cp1252"))
    (tmp_path / "site" / "sub" / "broken.html").write_bytes("<h1>Caf\xe9</h1>".encode("latin-1"))
    read = ReadLog()
    docs = list(iter_documents(web_cfg(path=str(tmp_path / "site")), read=read))
    assert [(d.id, d.format) for d in docs] == [(str(tmp_path / "site" / "index.html"), "html"),
                                                (str(tmp_path / "site" / "sub" / "b.htm"), "html")]
    assert read.funnel() == {"web_records": 3, "skipped_not_html": 0, "skipped_status": 0, "skipped_bad_encoding": 1}
    kept = list(Segmenter(web_cfg()).segments(docs))
    assert [s.header for s in kept] == ["Welcome to the site", "Café au lait"]


WARC_PAGES = [
    ("request", "http://example.org/a", None, None, None),
    ("response", "http://example.org/a", "200 OK", "text/html; charset=utf-8",
     page("A", [(1, "First page header", english(20)), (2, "Second part here", english(21))]).encode()),
    ("response", "http://example.org/logo.png", "200 OK", "image/png", b"\x89PNG\r\n"),
    ("response", "http://example.org/old", "301 Moved Permanently", "text/html", b"<a href=/new>moved</a>"),
    ("response", "http://example.org/latin", "200 OK", "text/html", "<h1>Caf\xe9</h1>".encode("latin-1")),
    ("response", "http://example.org/de", "200 OK", "application/xhtml+xml; charset=iso-8859-1",
     page("De", [(1, "Eine deutsche Seite", german(22))]).encode("cp1252")),
]


def test_warc_file_pages_and_counts(tmp_path):
    warc = write_warc(tmp_path / "crawl.warc.gz", WARC_PAGES)
    read = ReadLog()
    docs = list(iter_documents(web_cfg(path=str(warc)), read=read))
    assert [d.format for d in docs] == ["html", "html"]
    assert all(d.id.startswith(f"{warc}@") and d.source == str(warc) for d in docs)
    assert read.files == [str(warc)]
    assert read.funnel() == {"web_records": 5, "skipped_not_html": 1, "skipped_status": 1, "skipped_bad_encoding": 1}
    # The id is the record's offset: warcio reads the same record there again.
    from warcio.archiveiterator import ArchiveIterator

    with open(warc, "rb") as f:
        f.seek(int(docs[0].id.rsplit("@", 1)[1]))
        record = next(iter(ArchiveIterator(f)))
        assert record.rec_headers.get_header("WARC-Target-URI") == "http://example.org/a"

    seg = Segmenter(web_cfg(language="en"))
    kept = list(seg.segments(docs))
    # The h1's whole subtree fits in max_chars: one segment, the h2's title a line of it.
    assert [(s.header, s.text) for s in kept] == [("First page header",
                                                   f"{english(20)}\n\nSecond part here\n\n{english(21)}")]
    assert seg.funnel["other_language"] == 1 and seg.funnel["pages"] == 2
    funnel = {**read.funnel(), **seg.funnel}
    table = describe_funnel(funnel)
    assert "  - skipped_not_html" in table and "  - other_language" in table


def test_uncompressed_warc_and_a_broken_one(tmp_path):
    warc = write_warc(tmp_path / "crawl.warc", WARC_PAGES[:2])
    assert len(list(iter_documents(web_cfg(path=str(warc))))) == 1
    broken = tmp_path / "broken.warc.gz"
    broken.write_bytes(b"<html>not a warc</html>\n")
    with pytest.raises(DataError, match=rf"^{broken}: not readable WARC: "):
        list(iter_documents(web_cfg(path=str(broken))))
    skipped = []
    assert list(iter_documents(web_cfg(path=str(broken), skip_invalid=True), skipped)) == []
    assert skipped[0][0] == str(broken) and skipped[0][1].startswith("not readable WARC: ")


def test_warc_and_list_over_http(tmp_path):
    """fsspec streams a WARC from a URL (a server on the loopback, the same files as local ones), and a
    .paths list names files relative to its host's root, as Common Crawl's warc.paths.gz does."""
    root = tmp_path / "www"
    (root / "crawl-data" / "segments").mkdir(parents=True)
    write_warc(root / "crawl-data" / "segments" / "one.warc.gz", WARC_PAGES)
    (root / "crawl-data" / "warc.paths").write_text("crawl-data/segments/one.warc.gz\n")
    handler = partial(_QuietHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}"
        url = f"{base}/crawl-data/segments/one.warc.gz"
        read = ReadLog()
        remote = list(iter_documents(web_cfg(path=url), read=read))
        local = list(iter_documents(web_cfg(path=str(root / "crawl-data" / "segments" / "one.warc.gz"))))
        assert [d.text for d in remote] == [d.text for d in local] and len(remote) == 2
        assert remote[0].id.startswith(f"{url}@") and read.files == [url]
        assert corpus_files(f"{base}/crawl-data/warc.paths") == [url]
        assert len(list(iter_documents(web_cfg(path=f"{base}/crawl-data/warc.paths")))) == 2
        with pytest.raises(DataError, match=rf"^{base}/missing.warc.gz: cannot open: "):
            list(iter_documents(web_cfg(path=f"{base}/missing.warc.gz")))
    finally:
        server.shutdown()
        server.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


def test_local_paths_list(tmp_path):
    write_warc(tmp_path / "a.warc.gz", WARC_PAGES[:2])
    (tmp_path / "p.html").write_text(page("P", [(1, "A page header", english(30))]))
    listing = tmp_path / "corpus.paths"
    listing.write_text(f"# my crawl\na.warc.gz\n\n{tmp_path / 'p.html'}\n")
    assert corpus_files(str(listing)) == [tmp_path / "a.warc.gz", tmp_path / "p.html"]
    assert len(list(iter_documents(web_cfg(path=str(listing))))) == 2
    listing.write_text("notes.pdf\n")
    with pytest.raises(DataError, match=rf"^{listing}:1: 'notes.pdf' is not a corpus file"):
        corpus_files(str(listing))


def test_html_column_of_records(tmp_path):
    rows = [{"url": "u1", "html": page("One", [(1, "Column page header", english(40))])},
            {"url": "u2", "html": None}]
    f = write_jsonl(tmp_path / "pages.jsonl", rows)
    with pytest.raises(DataError, match=rf"^{f}:2: HTML field 'html' is not a string \(got NoneType\)$"):
        list(iter_documents(web_cfg(path=str(f), html_field="html")))
    docs = list(iter_documents(web_cfg(path=str(f), html_field="html", skip_invalid=True), []))
    assert [(d.id, d.format) for d in docs] == [(f"{f}:1", "html")]
    assert [s.header for s in Segmenter(web_cfg()).segments(docs)] == ["Column page header"]


def test_language_must_be_known():
    with pytest.raises(ConfigError, match="'corpus.language': 'english' is not a language the identifier knows"):
        Segmenter(web_cfg(language="english"))


def test_empty_corpus_names_the_files_it_read(tmp_path):
    warc = write_warc(tmp_path / "images.warc.gz", [WARC_PAGES[2], WARC_PAGES[3]])
    read = ReadLog()
    seg = Segmenter(web_cfg(path=str(warc)))
    assert list(seg.segments(iter_documents(web_cfg(path=str(warc)), read=read))) == []
    with pytest.raises(DataError, match=rf"^no segment survived filtering: no document was read from {warc} "
                                        r"\(2 web records: 1 not HTML, 1 with an HTTP status other than 2xx, "
                                        r"0 not decodable\)$"):
        check_not_empty({**read.funnel(), **seg.funnel}, read.files)
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    with pytest.raises(DataError, match=rf"no document was read from {empty} \(is the corpus empty\?\)$"):
        check_not_empty({"documents": 0}, [str(empty)])


def test_prepare_on_html_pages_and_a_warc(tmp_path, docs_seed_path):
    """The data stages on a folder of pages and a WARC file: header-cut segments whose headers all
    passed the header filters, and the web counts in data/funnel.json."""
    from humpback import cli
    from humpback.store import read_table

    corpus = tmp_path / "corpus"
    corpus.mkdir()
    write_warc(corpus / "crawl.warc.gz", WARC_PAGES)
    (corpus / "guide.html").write_text(page("Guide", [(1, "Getting started", english(50)), (2, "Menu", english(51)),
                                                      (2, "Configuring the tool", english(52))]))
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"base_model: x\nseed: {{path: {docs_seed_path}, format: alpaca}}\n"
                      f"corpus: {{path: {corpus}, min_chars: 300, max_chars: 1000, language: en, "
                      "require_header: true}\n")
    assert cli.main(["prepare", str(recipe), "--run-dir", str(tmp_path / "run"), "--quiet"]) == 0
    funnel = json.loads((tmp_path / "run" / "data" / "funnel.json").read_text())
    assert {k: funnel[k] for k in ("web_records", "skipped_not_html", "skipped_status", "skipped_bad_encoding",
                                   "documents", "pages", "no_header", "bad_header", "other_language", "kept")} == {
        "web_records": 6, "skipped_not_html": 1, "skipped_status": 1, "skipped_bad_encoding": 1, "documents": 3,
        "pages": 3, "no_header": 0, "bad_header": 1, "other_language": 1, "kept": 4}
    segments = read_table(tmp_path / "run" / "data" / "segments.parquet")
    assert sorted(s["header"] for s in segments) == ["Configuring the tool", "First page header", "Getting started",
                                                     "Second part here"]
    assert not any(is_bad_header(s["header"]) for s in segments)
