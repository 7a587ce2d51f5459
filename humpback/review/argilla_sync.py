"""Argilla for teams (``pip install humpback[argilla]``): the review sample pushed to an Argilla server as a
dataset with the page's fields, and the reviewers' submitted responses pulled back into
``RUN_DIR/review/decisions.parquet``.

The dataset: one record per pair (its id is the pair's id), the fields ``instruction`` (the generated one),
``segment`` (the pair's output) and ``judge`` (scores, reasoning or per-principle answers, and whether
selection kept the pair), the questions ``verdict`` (accept / reject / edit) and ``edited_instruction``
(optional text), the judge's selection as a suggestion for ``verdict``, and metadata (iteration, kept,
the selection's score, the pair's sha256). A pull records each user's *submitted* response as a decision
under the user's name (drafts and discarded responses are counted and skipped, as are records outside
the sample and an ``edit`` without its text). The server and key come from ``ARGILLA_API_URL`` and
``ARGILLA_API_KEY`` (the Argilla client's own defaults).
"""

from __future__ import annotations

from collections import Counter
from typing import Any, Optional

from ..errors import HumpbackError
from .decisions import VERDICTS, decision, record
from .sample import ReviewSample

QUESTION = "verdict"
EDIT_QUESTION = "edited_instruction"
GUIDELINES = ("Read the segment (a passage of unlabelled text, the pair's output) and the instruction a model "
              "wrote for it. Accept the pair if the segment is a good answer to the instruction and worth training "
              "on; reject it if not; choose edit and write a better instruction if the segment is worth keeping "
              "but the instruction is wrong. The suggestion is the judge's selection.")


def settings(rg: Any) -> Any:
    """The dataset's settings: the page's fields, the verdict and the edited instruction."""
    return rg.Settings(
        guidelines=GUIDELINES,
        fields=[rg.TextField(name="instruction", title="Generated instruction"),
                rg.TextField(name="segment", title="Segment (the pair's output)"),
                rg.TextField(name="judge", title="Judge", use_markdown=True)],
        questions=[rg.LabelQuestion(name=QUESTION, title="Keep this pair?", labels=list(VERDICTS)),
                   rg.TextQuestion(name=EDIT_QUESTION, title="Edited instruction (with edit)", required=False)],
        metadata=[rg.IntegerMetadataProperty(name="iteration"),
                  rg.TermsMetadataProperty(name="kept", options=["kept", "dropped", "not selected"]),
                  rg.FloatMetadataProperty(name="selection_score")],
        allow_extra_metadata=True,
    )


def judge_text(item: dict, sample: ReviewSample) -> str:
    """The ``judge`` field: what the page's judge box shows (:mod:`.judge_text`'s lines), as Markdown."""
    kept = {None: "not selected yet", True: "**kept**", False: "**dropped**"}[item["kept"]]
    lines = [f"Judge `{sample.judge}`; selection {kept}", *item["judge_lines"]]
    for p in item.get("principles") or []:
        lines.append(f"- {p['principle']}: {_num(p['log_odds'])}")
    if item["reasoning"]:
        lines += ["", item["reasoning"]]
    return "\n\n".join(lines)


def records(rg: Any, sample: ReviewSample) -> list:
    out = []
    for item in sample.items:
        kept = {None: "not selected", True: "kept", False: "dropped"}[item["kept"]]
        suggestion = [] if item["kept"] is None else [rg.Suggestion(
            question_name=QUESTION, value="accept" if item["kept"] else "reject", agent=sample.judge or "judge")]
        metadata = {"iteration": sample.iteration, "kept": kept, "pair_sha256": item["pair_sha256"]}
        if item["selected_value"] is not None:
            metadata["selection_score"] = float(item["selected_value"])
        out.append(rg.Record(id=item["id"], fields={"instruction": item["instruction"], "segment": item["output"],
                                                    "judge": judge_text(item, sample)},
                             metadata=metadata, suggestions=suggestion))
    return out


def push(sample: ReviewSample, name: str, workspace: Optional[str] = None, client: Any = None) -> int:
    """Create the dataset ``name`` (or add to it) and log the sample's records (upserted by pair id)."""
    rg = _argilla()
    client = _connect(rg, client)
    with _server_errors(client.api_url):
        dataset = _dataset(client, name, workspace)
        if dataset is None:
            dataset = rg.Dataset(name=name, workspace=workspace, settings=settings(rg), client=client).create()
        dataset.records.log(records(rg, sample))
    return len(sample.items)


def pull(sample: ReviewSample, name: str, workspace: Optional[str] = None, client: Any = None) -> dict:
    """The dataset's submitted responses about the sample's pairs, recorded as decisions (one per user and
    pair; a later pull replaces them). Returns how many were recorded and why the others were skipped."""
    rg = _argilla()
    by_id = {item["id"]: item for item in sample.items}
    skipped: Counter = Counter()
    rows, names = [], {}
    client = _connect(rg, client)
    with _server_errors(client.api_url):
        dataset = _dataset(client, name, workspace)
        if dataset is None:
            raise HumpbackError(f"no Argilla dataset {name!r}" + (f" in workspace {workspace!r}" if workspace else "")
                                + "; push the sample first (--argilla-push)")
        for rec in dataset.records(with_responses=True):
            item = by_id.get(rec.id)
            if item is None:
                skipped["pair not in this sample"] += 1
                continue
            edits = {r.user_id: r.value for r in rec.responses[EDIT_QUESTION] or []}
            for response in rec.responses[QUESTION] or []:
                status = getattr(response.status, "value", response.status)
                if status != "submitted":
                    skipped[f"{status} response"] += 1
                    continue
                if response.value == "edit" and not str(edits.get(response.user_id) or "").strip():
                    skipped["edit without an edited instruction"] += 1
                    continue
                if response.user_id not in names:
                    user = client.users(id=response.user_id)
                    names[response.user_id] = user.username if user is not None else str(response.user_id)
                rows.append(decision(item["id"], response.value, names[response.user_id], sample.iteration,
                                     (rec.metadata or {}).get("pair_sha256") or item["pair_sha256"],
                                     instruction=edits.get(response.user_id), source="argilla"))
    if rows:
        record(sample.run_dir, rows)
    return {"recorded": len(rows), "skipped": sum(skipped.values()), "skipped_reasons": dict(skipped)}


def _dataset(client: Any, name: str, workspace: Optional[str]):
    import warnings

    with warnings.catch_warnings():  # "not found" is an answer here, not a warning
        warnings.simplefilter("ignore")
        return client.datasets(name=name, workspace=workspace)


def _argilla():
    try:
        import argilla as rg
    except ImportError:
        raise HumpbackError("the Argilla client is not installed: pip install 'humpback[argilla]' "
                            "(or pip install argilla)") from None
    return rg


def _connect(rg: Any, client: Any) -> Any:
    """The given client, or one to the server ARGILLA_API_URL names (the client checks the key at once)."""
    if client is not None:
        return client
    import os

    with _server_errors(os.environ.get("ARGILLA_API_URL", "http://localhost:6900")):
        return rg.Argilla()


class _server_errors:
    """The Argilla client's and the network's errors as one line that names the server."""

    def __init__(self, url: str):
        self.url = url

    def __enter__(self):
        return self

    def __exit__(self, kind, error, tb):
        if error is None or isinstance(error, HumpbackError):
            return False
        import httpx

        if isinstance(error, httpx.HTTPError) or type(error).__module__.startswith("argilla"):
            text = " ".join(str(error).split())
            raise HumpbackError(f"Argilla server {self.url}: {type(error).__name__}: {text[:300]}") from error
        return False


def _num(x) -> str:
    if x is None:
        return "-"
    return f"{x:g}" if isinstance(x, int) else f"{x:.4f}"
