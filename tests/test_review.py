"""Review decisions on the session's tiny run (tests/conftest.py): the sample the page reads, the
command's bad input as one line, and the decisions feeding the loop: a replay trains without the
rejected pair, on the edited instruction and with the accepted pair forced in, and says so; an export
leaves the rejected pair out and its card states the review; the report shows the agreement."""

import json
import shutil
import socket
from pathlib import Path

import pytest

from humpback import cli
from humpback.config import load_config
from humpback.errors import ConfigError
from humpback.review.decisions import decision, decisions_sha256, pair_sha256, read_decisions, record
from humpback.review.quality import iteration_quality, judge_selection
from humpback.review.sample import load_sample
from humpback.store import read_table
from humpback.view.report import write_report

TINY_RECIPE = Path(__file__).parent.parent / "recipes" / "tiny-cpu.yaml"


@pytest.fixture
def run(tiny_cli_run, tmp_path):
    """A copy of the tiny run, to write decisions into."""
    run_dir = tmp_path / "run"
    shutil.copytree(tiny_cli_run[0], run_dir)
    return run_dir


def _decide(run_dir, cid, verdict, instruction=None, reviewer="tester", iteration=1):
    c = {c["candidate_id"]: c for c in read_table(run_dir / "augment/candidates")}[cid]
    record(run_dir, [decision(cid, verdict, reviewer, iteration, pair_sha256(c["instruction"], c["output"]),
                              instruction=instruction)])


def test_the_sample_shows_each_pair_as_the_run_holds_it(run):
    candidates = {c["candidate_id"]: c for c in read_table(run / "augment/candidates")}
    manifest = json.loads((run / "manifest.json").read_text())["stages"]
    for k in (1, 2):
        scores = {s["candidate_id"]: s for s in read_table(run / f"iter_{k}/scores")}
        curated = {c["candidate_id"] for c in read_table(run / f"iter_{k}/curated.parquet")}
        # the judge's selection recomputed from the saved scores and the recorded rule is the curated set
        rule = manifest[f"iter_{k}/select"]["stats"]["rule"]
        assert judge_selection(list(candidates.values()), list(scores.values()), rule) == curated
        sample = load_sample(run, k, n=5, order="random", seed=2)
        assert sample.iteration == k and len(sample.items) == 5 and sample.pool == len(candidates)
        assert sample.cutoff == 1.0 and sample.score_field == "logits_score"
        for item in sample.items:
            c, s = candidates[item["id"]], scores[item["id"]]
            assert (item["instruction"], item["output"], item["kept"]) == (c["instruction"], c["output"],
                                                                            item["id"] in curated)
            assert (item["score"], item["expected_score"], item["probs"]) == (s["score"], s["expected_score"],
                                                                              pytest.approx(s["probs"]))
            assert item["selected_value"] == s["logits_score"] and item["reasoning"] == ""  # logits mode
            # the judge box in words: what selection read against its cutoff, then the judge's own figures
            assert item["judge_lines"][0] == (f"argmax score {s['logits_score']}; selection cutoff 1: "
                                              f"{'kept' if item['kept'] else 'dropped'}")
            assert item["judge_lines"][1].startswith(f"rating judge (logits): argmax score {s['logits_score']}, ")
    assert load_sample(run).iteration == 2  # the latest scored iteration
    parts = [{i["id"] for i in load_sample(run, 1, n=100, part=(p, 2)).items} for p in (0, 1)]
    assert not parts[0] & parts[1] and parts[0] | parts[1] == set(candidates)


def test_bad_input_is_one_line(run, tmp_path, capsys):
    def error(*args):
        assert cli.main(["review", *map(str, args), "--no-browser"]) == 2
        err = capsys.readouterr().err
        assert err.startswith("humpback: error: ") and err.count("\n") == 1, err
        return err

    bare = tmp_path / "bare"
    bare.mkdir()
    (bare / "manifest.json").write_text('{"stages": {}}')
    assert "no candidates to review (augment/candidates is missing or empty" in error(bare)
    assert "not a humpback run folder (no manifest.json)" in error(tmp_path / "nothing")
    assert "iteration 7 has no scores (iterations with scores: 1, 2)" in error(run, "--iteration", "7")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        assert f"port {port} on 127.0.0.1 is in use" in error(run, "--port", port)
    (run / "review").mkdir()
    (run / "review/decisions.parquet").write_text("half a file")
    assert "decisions.parquet: not a readable decisions table" in error(run)
    assert "move it aside" in error(run, "--part", "1/2")


def test_review_force_accepted_needs_review():
    with pytest.raises(ConfigError, match="'curate.review_force_accepted' needs curate.review true"):
        load_config(TINY_RECIPE, ["curate.review_force_accepted=true"])


def test_replay_and_export_honour_the_decisions_and_say_so(run, tmp_path, capsys):
    candidates = read_table(run / "augment/candidates")
    scores = read_table(run / "iter_1/scores")
    # the replay keeps the top 3 by the argmax score (ties by id); the decisions change that set
    top3 = [s["candidate_id"] for s in sorted(scores, key=lambda s: (-s["logits_score"], s["candidate_id"]))[:3]]
    outside = next(c["candidate_id"] for c in candidates if c["candidate_id"] not in top3)
    rejected, edited, accepted = top3[0], top3[1], outside
    _decide(run, rejected, "reject")
    _decide(run, edited, "edit", instruction="Summarise this passage.")
    _decide(run, accepted, "accept", reviewer="other")
    sha = decisions_sha256(run)

    out = tmp_path / "replay"
    assert cli.main(["replay", str(run), "--iteration", "1", "--output", str(out), "--force-accepted", "--quiet",
                     "curate.select=top_k", "curate.top_k=3"]) == 0
    printed = capsys.readouterr().out
    assert (f"review: 3 reviewed pairs (decisions sha256 {sha[:16]}): 1 rejected pairs dropped, 1 edited "
            f"instructions used, 1 accepted pairs forced in") in " ".join(printed.split())
    mixture = [r for r in read_table(out / "iter_1/train.parquet") if r["source"] == "augmented"]
    assert [r["id"] for r in mixture] == [edited, top3[2], accepted]
    user = {r["id"]: next(m["content"] for m in r["messages"] if m["role"] == "user") for r in mixture}
    assert user[edited] == "Summarise this passage."
    # the decisions are part of the curated set's key, and travel with the replay
    select = json.loads((out / "manifest.json").read_text())["stages"]["iter_1/select"]
    assert select["depends_on"]["deps"]["review"] == {"decisions_sha256": sha, "force_accepted": True}
    assert select["stats"]["review"]["quality"]["pairs"] == 3 and decisions_sha256(out) == sha

    # export of the replay: the same pairs; its card states the review and the agreement
    assert cli.main(["export", str(out), "--iteration", "1", "--output", str(tmp_path / "exp")]) == 0
    rows = [json.loads(line) for line in (tmp_path / "exp/train.jsonl").read_text().splitlines()]
    assert [r["id"] for r in rows] == [edited, top3[2], accepted]
    card = (tmp_path / "exp/README.md").read_text()
    assert "## Human review" in card and "3 pairs of this run were read in `humpback review` by other, tester: " \
                                         "1 accepted, 1 rejected, 1 edited." in card
    assert f"sha256 `{sha}`" in card and "Judge-reviewer agreement (iteration 1's selection" in card
    # the replay's A(1) was made with the decisions: the card says so, not "0 rejected pairs left out"
    assert (f"Iteration 1's curated set was selected with them (`curate.review`, decisions sha256 `{sha[:16]}`): "
            "1 rejected pairs dropped, 1 edited instructions used, 1 accepted pairs the judge had dropped forced in."
            in card) and "This export honours them: the curated set already does." in card

    # export of the run itself: rejected out, edit in; --no-review: the judge's selection as it was
    curated = [c["candidate_id"] for c in read_table(run / "iter_1/curated.parquet")]
    assert cli.main(["export", str(run), "--iteration", "1", "--output", str(tmp_path / "e1")]) == 0
    rows = [json.loads(line) for line in (tmp_path / "e1/train.jsonl").read_text().splitlines()]
    assert [r["id"] for r in rows] == [c for c in curated if c != rejected]
    assert next(r["instruction"] for r in rows if r["id"] == edited) == "Summarise this passage."
    assert "This export honours them: 1 rejected pairs left out, 1 edited instructions used" in \
        (tmp_path / "e1/README.md").read_text()
    assert cli.main(["export", str(run), "--iteration", "1", "--output", str(tmp_path / "e2"), "--no-review"]) == 0
    assert [json.loads(line)["id"] for line in (tmp_path / "e2/train.jsonl").read_text().splitlines()] == curated
    assert "does not honour them (`--no-review`)" in (tmp_path / "e2/README.md").read_text()


def test_the_report_states_the_review_and_every_iterations_agreement(run):
    candidates = [c["candidate_id"] for c in read_table(run / "augment/candidates")]
    for cid, verdict in zip(candidates, ["accept", "reject", "accept", "accept", "reject"]):
        _decide(run, cid, verdict)
    quality = iteration_quality(run)
    assert [q["iteration"] for q in quality] == [1, 2] and all(q["pairs"] == 5 for q in quality)
    # threshold 1 keeps every pair: the judge agrees with the three accepts only
    assert [q["agreeing"] for q in quality] == [3, 3]
    assert quality[0]["agreement_ci"][0] < 0.6 < quality[0]["agreement_ci"][1]
    text = write_report(run).read_text()
    assert ("<p id='review-counts' data-reviewed='5' data-accepted='3' data-rejected='2' data-edited='0'>" in text)
    lo, hi = quality[0]["agreement_ci"]
    assert f"<td data-key='agreement'>0.600</td><td>{lo:.3f}-{hi:.3f}</td>" in text
    assert len(read_decisions(run)) == 5
