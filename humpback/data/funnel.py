"""The segments funnel, told to a person: the table ``humpback prepare`` prints, and the error that says
why no segment survived (the files read when they held no document, else what each filter removed, with
the key that loosens it)."""

from __future__ import annotations

from collections.abc import Sequence

from ..errors import DataError
from .segment import FILTERS

_HINTS = {
    "no_header": "set corpus.require_header=false to keep text before a page's first header",
    "other_language": "the text is not in corpus.language (null keeps every language)",
    "too_short": "lower corpus.min_chars",
    "too_long": "raise corpus.max_chars",
    "bad_header": "headers were empty, ALL UPPERCASE or navigation",
    "boilerplate": "raise corpus.boilerplate_threshold",
    "repetitive": "raise corpus.repetition_threshold",
    "exact_duplicate": "the corpus repeats itself",
    "near_duplicate": "raise corpus.near_dedup_threshold or set corpus.near_dedup=false",
    "seed_overlap": "set corpus.drop_seed_overlap=false",
}


def describe_funnel(funnel: dict[str, int]) -> str:
    sections = funnel.get("sections", 0)
    labels = {name: f"  - {name}" if name in FILTERS or name.startswith("skipped_") else name for name in funnel}
    width = max([20, *map(len, labels.values())])
    rows = []
    for name, n in funnel.items():
        share = f"  ({100 * n / sections:.1f}% of sections)" if name in FILTERS + ("kept",) and sections else ""
        rows.append(f"{labels[name]:<{width}} {n:>9,}{share}")
    return "\n".join(rows)


MAX_FILES_NAMED = 5


def check_not_empty(funnel: dict[str, int], files: Sequence[str] = ()) -> None:
    """A :class:`DataError` that says why when no segment was kept: the files read when they held no
    document, else what each filter removed."""
    if funnel.get("kept", 0) > 0:
        return
    docs, sections = funnel.get("documents", 0), funnel.get("sections", 0)
    if docs == 0:
        named = ", ".join(files[:MAX_FILES_NAMED]) + (f" and {len(files) - MAX_FILES_NAMED} more"
                                                      if len(files) > MAX_FILES_NAMED else "")
        where = f" from {named}" if files else ""
        web = funnel.get("web_records", 0)
        if web:
            why = (f"{web} web records: {funnel.get('skipped_not_html', 0)} not HTML, "
                   f"{funnel.get('skipped_status', 0)} with an HTTP status other than 2xx, "
                   f"{funnel.get('skipped_bad_encoding', 0)} not decodable")
        else:
            why = "is the corpus empty?"
        raise DataError(f"no segment survived filtering: no document was read{where} ({why})")
    if sections == 0:
        raise DataError(f"no segment survived filtering: {docs} documents -> 0 sections (the documents are empty)")
    removed = sorted(((n, name) for name, n in funnel.items() if name in FILTERS and n),
                     key=lambda item: (-item[0], FILTERS.index(item[1])))
    what = ", ".join(f"{name} {n}" if k else f"{name} removed {n}" for k, (n, name) in enumerate(removed))
    hints = "; ".join(_HINTS[name] for _, name in removed)
    raise DataError(f"no segment survived filtering: {docs} documents -> {sections} sections; {what}; {hints}")
