"""Review decisions as data: the decisions table (atomic, locked, two writers lose nothing, a corrupted
file is one line), decisions applied to a curated set, the judge-reviewer agreement and the reading
order, all exactly, on rows made here."""

import datetime as dt
import os
import subprocess
import sys
from pathlib import Path

import pytest

from humpback import layout
from humpback.errors import StoreError
from humpback.evaluation.exact import wilson_interval
from humpback.review.apply import apply_decisions
from humpback.review.decisions import (decision, decisions_sha256, disagreements, effective, pair_sha256,
                                       read_decisions, record)
from humpback.review.quality import judge_selection, review_quality
from humpback.review.sample import _order, in_part, parse_part
from humpback.errors import HumpbackError

T0 = dt.datetime(2026, 1, 1, 12, 0, tzinfo=dt.timezone.utc)


def _at(minutes: int) -> dt.datetime:
    return T0 + dt.timedelta(minutes=minutes)


def _cand(i: int, instruction: str = None) -> dict:
    return {"candidate_id": f"c{i}", "segment_id": f"c{i}", "instruction": instruction or f"instruction {i}",
            "output": f"output {i}"}


def _dec(i: int, verdict: str, reviewer: str = "alice", minute: int = 0, instruction: str = None, sha: str = None):
    c = _cand(i)
    return decision(c["candidate_id"], verdict, reviewer, 1, sha or pair_sha256(c["instruction"], c["output"]),
                    instruction=instruction, time=_at(minute))


def test_decisions_are_replaced_per_pair_and_reviewer_and_withdrawn(tmp_path):
    record(tmp_path, [_dec(1, "accept", minute=0), _dec(2, "reject", minute=1)])
    record(tmp_path, [_dec(1, "reject", "bob", minute=2)])
    table = record(tmp_path, [_dec(1, "edit", minute=3, instruction="  a better instruction  ")])
    assert [(r["candidate_id"], r["reviewer"], r["verdict"], r["instruction"]) for r in table] == [
        ("c2", "alice", "reject", None), ("c1", "bob", "reject", None),
        ("c1", "alice", "edit", "a better instruction")]
    rows = read_decisions(tmp_path)
    assert rows == table and rows[0]["time"] == _at(1) and rows[0]["iteration"] == 1 and rows[0]["source"] == "page"
    # the pair's decision is the latest; alice (edit: kept) and bob (reject) disagree about c1
    assert {cid: d["verdict"] for cid, d in effective(rows).items()} == {"c1": "edit", "c2": "reject"}
    assert disagreements(rows) == 1
    assert [r["reviewer"] for r in record(tmp_path, [], remove=[("c1", "alice")])
            if r["candidate_id"] == "c1"] == ["bob"]
    assert sorted(p.name for p in (tmp_path / "review").iterdir()) == [".decisions.lock", "decisions.parquet"]
    assert decisions_sha256(tmp_path) and decisions_sha256(tmp_path / "nothing") is None


def test_a_decision_is_checked():
    with pytest.raises(ValueError, match="verdict must be one of accept, reject, edit"):
        _dec(1, "maybe")
    with pytest.raises(ValueError, match="an edit needs the new instruction"):
        _dec(1, "edit", instruction="   ")
    with pytest.raises(ValueError, match="reviewer's name"):
        _dec(1, "accept", reviewer=" ")
    assert _dec(1, "accept", instruction="ignored")["instruction"] is None


def test_a_corrupted_decisions_file_is_one_line(tmp_path):
    path = tmp_path / layout.REVIEW_DECISIONS
    path.parent.mkdir()
    path.write_bytes(b"PAR1 this is not parquet")
    with pytest.raises(StoreError,
                       match=r"decisions.parquet: not a readable decisions table \(.*\); move it aside") as e:
        read_decisions(tmp_path)
    assert "\n" not in str(e.value)
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"candidate_id": ["c1"], "verdict": ["accept"]}), path)
    with pytest.raises(StoreError, match="not a decisions table \\(no column instruction, reviewer, time"):
        read_decisions(tmp_path)
    with pytest.raises(StoreError):  # nothing is written over a file that cannot be read
        record(tmp_path, [_dec(1, "accept")])


_WRITER = """
import datetime as dt, sys
from humpback.review.decisions import decision, record
who, n = sys.argv[1], int(sys.argv[2])
for i in range(n):
    record(sys.argv[3], [decision(f"{who}-{i}", "accept", who, 1, "sha")])
"""


def test_two_reviewers_writing_at_once_lose_nothing(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parent.parent)}
    procs = [subprocess.Popen([sys.executable, "-c", _WRITER, who, "25", str(tmp_path)], env=env)
             for who in ("alice", "bob")]
    assert [p.wait(timeout=120) for p in procs] == [0, 0]
    rows = read_decisions(tmp_path)
    assert sorted(r["candidate_id"] for r in rows) == sorted(f"{w}-{i}" for w in ("alice", "bob") for i in range(25))


def test_decisions_applied_to_a_curated_set():
    candidates = [_cand(i) for i in range(1, 7)]
    scores = [{"candidate_id": c["candidate_id"], "score": i, "expected_score": i + 0.5, "value": float(i)}
              for i, c in enumerate(candidates, 1)]
    curated = [{**candidates[i - 1], "score": i, "expected_score": i + 0.5, "value": float(i)} for i in (1, 2, 3, 6)]
    decisions = [_dec(1, "reject"), _dec(2, "edit", instruction="edited two"), _dec(4, "accept"),
                 _dec(5, "edit", instruction="edited five"), _dec(3, "reject", sha="another text"),  # stale
                 _dec(6, "accept", minute=0), _dec(6, "reject", "bob", minute=5)]  # bob's later reject wins
    rows, stats = apply_decisions(curated, candidates, scores, decisions)
    assert [(r["candidate_id"], r["instruction"]) for r in rows] == [("c2", "edited two"), ("c3", "instruction 3")]
    assert stats == {"reviewed": 5, "accepted": 1, "rejected": 2, "edited": 2, "reviewers": ["alice", "bob"],
                     "stale": 1, "disagreements": 1, "selected": 4, "rejected_dropped": 2, "edited_applied": 1,
                     "forced_in": 0, "force_accepted": False, "kept": 2}
    rows, stats = apply_decisions(curated, candidates, scores, decisions, force_accepted=True)
    assert rows[2:] == [{"candidate_id": "c4", "segment_id": "c4", "instruction": "instruction 4",
                         "output": "output 4",
                         "score": 4, "expected_score": 4.5, "value": 4.0},
                        {"candidate_id": "c5", "segment_id": "c5", "instruction": "edited five", "output": "output 5",
                         "score": 5, "expected_score": 5.5, "value": 5.0}]
    assert (stats["forced_in"], stats["edited_applied"], stats["kept"]) == (2, 2, 4)
    # applying the same decisions again changes nothing more (an export of a reviewed replay)
    again, _ = apply_decisions(rows, candidates, scores, decisions, force_accepted=True)
    assert again == rows


def test_judge_reviewer_agreement_and_dev_set_figures():
    decided = {"a": {"verdict": "accept"}, "b": {"verdict": "reject"}, "c": {"verdict": "edit"},
               "d": {"verdict": "reject"}, "e": {"verdict": "accept"}}
    q = review_quality(decided, selected={"a", "b", "e", "zz"})
    # positives a, c, e; selected among the reviewed: a, b, e -> tp a, e
    assert q["pairs"] == 5 and q["positives"] == 3 and q["selected"] == 3 and q["true_positives"] == 2
    assert q["precision"] == pytest.approx(2 / 3) and q["recall"] == pytest.approx(2 / 3)
    assert q["agreeing"] == 3 and q["agreement"] == pytest.approx(0.6)  # a, d, e
    assert q["agreement_ci"] == list(wilson_interval(3, 5))
    empty = review_quality({}, {"a"})
    assert empty["agreement"] is None and empty["agreement_ci"] == [None, None]


def test_judge_selection_from_a_recorded_rule():
    candidates = [_cand(i) for i in range(1, 6)]
    scores = [{"candidate_id": f"c{i}", "score": s, "logits_score": None, "expected_score": e, "value": e}
              for i, s, e in ((1, 5, 4.1), (2, 3, 3.0), (3, None, None), (4, 4, 4.6), (5, 5, 2.0))]
    assert judge_selection(candidates, scores, {"select": "threshold", "score_field": "score", "threshold": 4}) == \
        {"c1", "c4", "c5"}
    assert judge_selection(candidates, scores, {"select": "top_fraction", "score_field": "expected_score",
                                                "top_fraction": 0.4}) == {"c1", "c4"}
    assert judge_selection(candidates, scores, {"select": "top_k", "score_field": "value", "top_k": 1}) == {"c4"}


def test_threshold_order_reads_the_pairs_nearest_the_cutoff_first_alternating_kept_and_dropped():
    pool = [{"candidate_id": f"c{i}"} for i in range(8)]
    values = {"c0": 5.0, "c1": 4.2, "c2": 3.9, "c3": 4.0, "c4": 1.0, "c5": None, "c6": 4.6, "c7": 3.0}
    scores = {cid: {"v": v} for cid, v in values.items()}
    kept = {"c0", "c1", "c3", "c6"}  # threshold 4
    order = [c["candidate_id"] for c in _order(pool, scores, kept, "v", 4.0, "threshold", seed=3)]
    assert order == ["c3", "c2", "c1", "c7", "c6", "c4", "c0", "c5"]
    shuffled = [c["candidate_id"] for c in _order(pool, scores, kept, "v", 4.0, "random", seed=3)]
    assert sorted(shuffled) == sorted(values) and shuffled == [c["candidate_id"] for c in
                                                               _order(pool, scores, kept, "v", 4.0, "random", seed=3)]


def test_parts_split_the_pool_into_disjoint_samples():
    ids = [f"pair-{i}" for i in range(300)]
    parts = [{i for i in ids if in_part(i, (k, 3))} for k in range(3)]
    assert set().union(*parts) == set(ids) and sum(map(len, parts)) == len(ids)
    assert all(len(p) > 60 for p in parts)
    assert parse_part("2/3") == (1, 3)
    for bad in ("0/2", "3/2", "x"):
        with pytest.raises(HumpbackError, match="--part"):
            parse_part(bad)
