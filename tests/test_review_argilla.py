"""Argilla for teams, against a local fake of an Argilla server (tests/argilla_fake.py: the REST endpoints
the real Argilla 2.x client calls, served in process through an httpx MockTransport; no Argilla server
can be started here). The real ``argilla`` client pushes the review sample of the session's tiny run as
a dataset with the page's fields, annotators' responses are made in the fake, and a pull records the
submitted ones in review/decisions.parquet, which the review page then shows."""

import shutil

import pytest

pytest.importorskip("argilla", reason="the Argilla client is an optional extra (pip install 'humpback[argilla]')")

from argilla_fake import FakeArgilla  # noqa: E402

from humpback import cli  # noqa: E402
from humpback.errors import HumpbackError  # noqa: E402
from humpback.review import argilla_sync  # noqa: E402
from humpback.review.decisions import effective, read_decisions  # noqa: E402
from humpback.review.sample import load_sample  # noqa: E402
from humpback.review.session import ReviewSession  # noqa: E402


@pytest.fixture
def run(tiny_cli_run, tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(tiny_cli_run[0], run_dir)
    return run_dir


def test_push_the_sample_and_pull_the_submitted_responses_back(run, monkeypatch, capsys):
    fake = FakeArgilla()
    monkeypatch.setattr(argilla_sync, "_connect", lambda rg, client: client or fake.client())
    assert cli.main(["review", str(run), "--iteration", "1", "--sample", "6", "--argilla-push", "hb-review"]) == 0
    assert "Pushed 6 pairs of iteration 1: 6 of 12 scored pairs" in capsys.readouterr().out
    sample = load_sample(run, 1, n=6)
    (ds,) = fake.datasets.values()
    assert ds["name"] == "hb-review" and ds["status"] == "ready" and "Accept the pair if" in ds["guidelines"]
    children = {kind: [c["name"] for c in items] for (_, kind), items in fake.children.items()}
    assert children == {"fields": ["instruction", "segment", "judge"], "questions": ["verdict", "edited_instruction"],
                        "metadata-properties": ["iteration", "kept", "selection_score"]}
    verdict = next(q for (_, kind), qs in fake.children.items() if kind == "questions" for q in qs
                   if q["name"] == "verdict")
    assert [o["value"] for o in verdict["settings"]["options"]] == ["accept", "reject", "edit"]
    records = fake.records[ds["id"]]
    assert list(records) == [item["id"] for item in sample.items]
    for item in sample.items:
        rec = records[item["id"]]
        assert rec["fields"]["instruction"] == item["instruction"] and rec["fields"]["segment"] == item["output"]
        assert rec["metadata"]["pair_sha256"] == item["pair_sha256"] and rec["metadata"]["kept"] == "kept"
        assert [(s["question_id"] == verdict["id"], s["value"]) for s in rec["suggestions"]] == [(True, "accept")]
        assert "**kept**" in rec["fields"]["judge"]
    # a second push updates the same records
    assert argilla_sync.push(sample, "hb-review", client=fake.client()) == 6
    assert len(fake.records[ds["id"]]) == 6

    ids = [item["id"] for item in sample.items]
    fake.respond("hb-review", ids[0], "ana", {"verdict": "accept"})
    fake.respond("hb-review", ids[1], "ana", {"verdict": "edit", "edited_instruction": "Describe the statement."})
    fake.respond("hb-review", ids[1], "ben", {"verdict": "reject"})
    fake.respond("hb-review", ids[2], "ben", {"verdict": "reject"}, status="draft")
    fake.respond("hb-review", ids[3], "ana", {"verdict": "edit"})
    assert cli.main(["review", str(run), "--iteration", "1", "--sample", "6", "--argilla-pull", "hb-review"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert ("Pulled 3 decisions from the Argilla dataset hb-review into " in out and "(2 responses skipped: "
            "{'draft response': 1, 'edit without an edited instruction': 1})" in out)
    rows = read_decisions(run)
    assert sorted((r["candidate_id"], r["reviewer"], r["verdict"], r["instruction"], r["source"]) for r in rows) == \
        sorted([(ids[0], "ana", "accept", None, "argilla"),
                (ids[1], "ana", "edit", "Describe the statement.", "argilla"),
                (ids[1], "ben", "reject", None, "argilla")])
    # pulled at one time, ana's edit and ben's reject disagree: the reject decides
    assert effective(rows)[ids[1]]["verdict"] == "reject"
    progress = ReviewSession(sample, "tester").progress()
    assert progress["done"] == 2 and progress["decisions"][ids[0]]["reviewer"] == "ana"


def test_argilla_errors_are_one_line(run, monkeypatch, capsys):
    fake = FakeArgilla()
    sample = load_sample(run, 1, n=3)
    with pytest.raises(HumpbackError, match="no Argilla dataset 'missing'; push the sample first"):
        argilla_sync.pull(sample, "missing", client=fake.client())
    monkeypatch.setenv("ARGILLA_API_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("ARGILLA_API_KEY", "key")
    assert cli.main(["review", str(run), "--argilla-push", "hb-review"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("humpback: error: Argilla server http://127.0.0.1:9: ") and err.count("\n") == 1, err
