"""The documentation: docs/config.md is what `humpback keys` writes from the config classes, every relative
link of README.md and docs/*.md leads to a file (and a heading, for a #anchor), docs/index.md lists every
page, and the README stays a short front page with the demo's result on its first screen."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from humpback.cli import main
from humpback.config import describe_keys
from humpback.config_reference import keys_markdown

ROOT = Path(__file__).parent.parent
DOCS = ROOT / "docs"
PAGES = [ROOT / "README.md", *sorted(DOCS.glob("*.md"))]

FENCE = re.compile(r"^(```|~~~).*?^\1", re.MULTILINE | re.DOTALL)
CODE_SPAN = re.compile(r"(`+).+?\1", re.DOTALL)
LINK = re.compile(r"\[(?:[^\[\]]|\[[^\]]*\])*\]\(([^()\s]+)(?:\s+\"[^\"]*\")?\)")
HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*\s*$", re.MULTILINE)


def prose(text: str) -> str:
    """The text outside fenced code blocks and code spans (where a [x](y) is not a link)."""
    return CODE_SPAN.sub("", FENCE.sub("", text))


def slug(heading: str) -> str:
    """GitHub's anchor for a heading (github-slugger): the rendered text lower-cased, punctuation removed
    (letters, digits, '-', '_' and spaces stay), spaces turned into '-'."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading).replace("`", "").lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    seen: dict[str, int] = {}
    out = set()
    for m in HEADING.finditer(FENCE.sub("", path.read_text())):
        base = slug(m.group(1))
        n = seen.get(base, 0)
        seen[base] = n + 1
        out.add(base if n == 0 else f"{base}-{n}")
    return out


def relative_links(path: Path) -> list[str]:
    return [target for target in LINK.findall(prose(path.read_text()))
            if not re.match(r"^[a-z][a-z0-9+.-]*:", target)]  # https:, mailto:, ...


def test_config_reference_is_current():
    written = (DOCS / "config.md").read_text()
    assert written == keys_markdown(), "docs/config.md is out of date: run `humpback keys --output docs/config.md`"


def test_config_reference_has_every_key_default_and_meaning():
    text = (DOCS / "config.md").read_text()
    rows = {line.split(" | ")[0].strip("| `"): line for line in text.splitlines() if line.startswith("| `")}
    keys = describe_keys()
    assert set(rows) == {key for key, _, _ in keys}
    assert rows["curate.threshold"] == "| `curate.threshold` | float | `5` | select=threshold: keep pairs whose " \
        "score is &gt;= this (paper: 5, the A5 set). |"
    assert rows["seed.format"].startswith('| `seed.format` | "auto" \\| "messages" \\| "alpaca" \\| "oasst" \\| '
                                          '"self_instruct" | `"auto"` | ')
    assert rows["base_model"].startswith("| `base_model` | str | required | Hub id or local path")
    assert "| `name` | str | `\"humpback\"` | Run name; the default run folder is runs/&lt;name&gt;. |" in text
    assert "## corpus\n\nUnlabelled text (backtranslation needs it; self_instruct has none). Optional section " \
        "(default `null`).\n" in text


def test_keys_command_prints_and_writes_the_reference(tmp_path, capsys):
    assert main(["keys"]) == 0
    assert capsys.readouterr().out == keys_markdown()
    out = tmp_path / "config.md"
    assert main(["keys", "--output", str(out)]) == 0
    assert out.read_text() == keys_markdown()
    assert capsys.readouterr().out == f"Wrote {out}\n"


def test_slug_is_githubs():
    assert slug("The controlled world: does the loop work?") == "the-controlled-world-does-the-loop-work"
    assert slug("The console and the run's log") == "the-console-and-the-runs-log"
    assert slug("An OpenAI-compatible server (`generation.backend: openai`)") == \
        "an-openai-compatible-server-generationbackend-openai"
    assert slug("Speed on the real model") == "speed-on-the-real-model"


def test_link_finder_reads_links_not_code():
    page = "[a](x.md) and `[b](y.md)`\n```\n[c](z.md)\n```\n[d](https://e.org) [f](#g) [h [i]](j.md#k)\n"
    assert LINK.findall(prose(page)) == ["x.md", "https://e.org", "#g", "j.md#k"]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves(page):
    broken = []
    for target in relative_links(page):
        file_part, _, anchor = target.partition("#")
        dest = (page.parent / file_part).resolve() if file_part else page
        if not dest.exists():
            broken.append(f"{target}: no such file")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            broken.append(f"{target}: no heading with anchor #{anchor} in {dest.relative_to(ROOT)}")
    assert not broken, f"{page.relative_to(ROOT)}: broken links:\n" + "\n".join(broken)


def test_readme_and_index_link_every_docs_page():
    pages = {p.name for p in DOCS.glob("*.md")} - {"index.md"}
    listed = {Path(t.partition("#")[0]).name for t in relative_links(DOCS / "index.md")}
    assert pages <= listed, f"docs/index.md does not list {sorted(pages - listed)}"
    assert "docs/index.md" in relative_links(ROOT / "README.md")
    assert sum(len(relative_links(p)) for p in PAGES) > 100  # the link check reads links at all


def test_readme_is_a_short_front_page():
    readme = (ROOT / "README.md").read_bytes()
    assert len(readme) <= 12 * 1024, f"README.md is {len(readme)} bytes; move the details into docs/"
    first_screen = "\n".join(readme.decode().splitlines()[:60])
    assert "make demo" in first_screen and "Did it get better?" in first_screen
    # The README quotes the captured run whose whole console is in docs/quickstart.md: its result table,
    # every model's row with an exact match and its interval, is the same text in both.
    table = first_screen[first_screen.index("Did it get better?"):].split("\n\n")[0]
    rows = [line for line in table.splitlines() if line.startswith(("base ", "m0 ", "iter_1 ", "iter_2 "))]
    assert len(rows) == 4 and all(re.search(r"\d\.\d{3} \[\d\.\d{3}, \d\.\d{3}\]$", r) for r in rows), table
    assert table in (DOCS / "quickstart.md").read_text()
