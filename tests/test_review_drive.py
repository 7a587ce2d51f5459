"""scripts/review_drive.py, the reviewer's check of the review page, on the session's tiny run: it reviews
a sample by keyboard in headless Chromium (verdicts from a file and from its fallback pattern, edits
included), kills the server half-way, sees a verdict refused while it is down, restarts it and finds every
verdict again, and its summary matches the decisions file."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from humpback.review.decisions import read_decisions
from humpback.review.sample import load_sample

ROOT = Path(__file__).parent.parent
pytestmark = [
    pytest.mark.skipif(not any(shutil.which(b) for b in ("chromium", "chromium-browser", "google-chrome")),
                       reason="no chromium (scripts/ensure_chromium.sh installs Debian's)"),
]


def test_review_drive_reviews_restarts_and_keeps_every_verdict(tiny_cli_run, tmp_path):
    pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    run_dir = tmp_path / "run"
    shutil.copytree(tiny_cli_run[0], run_dir)
    ids = [item["id"] for item in load_sample(run_dir, 1, n=8).items]  # the order the page shows them in
    edit = "Summarise this passage of the Python documentation."
    verdicts = {ids[0]: "accept", ids[1]: "reject", ids[5]: {"edit": edit}}  # the 6th after the restart
    (tmp_path / "verdicts.json").write_text(json.dumps(verdicts))
    cmd = [sys.executable, str(ROOT / "scripts/review_drive.py"), str(run_dir), "--iteration", "1", "--pairs", "8",
           "--restart-after", "4", "--reviewer", "drive", "--verdicts", str(tmp_path / "verdicts.json"),
           "--screenshots", str(tmp_path / "shots"), "--summary", str(tmp_path / "drive.json")]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((tmp_path / "drive.json").read_text())
    assert summary["pairs_reviewed"] == summary["sample"] == 8
    assert "killed server 1 (SIGKILL) after 4 verdicts" in summary["log"][1]
    assert summary["log"][2].endswith("4 of 8 already decided") and summary["progress"] == "8 of 8 decided"
    rows = {r["candidate_id"]: r for r in read_decisions(run_dir)}
    assert len(rows) == 8 and {r["reviewer"] for r in rows.values()} == {"drive"}
    assert set(rows) == set(ids) and summary["from_verdicts_file"] == 3
    assert [rows[i]["verdict"] for i in ids[:2]] == ["accept", "reject"] and rows[ids[5]]["instruction"] == edit
    assert rows[ids[3]]["verdict"] == "edit"  # the fallback pattern edits the 4th pair (before the restart)
    counts = {v: sum(r["verdict"] == v for r in rows.values()) for v in ("accept", "reject", "edit")}
    assert summary["counts"] == counts and counts["edit"] == 2
    names = [Path(p).name for p in summary["screenshots"]]
    assert names[:4] == ["01-loaded.png", "02-editing.png", "03-before-kill.png", "04-server-down.png"]
    assert all(Path(p).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in summary["screenshots"])

    # a second run on the same folder and reviewer would mix with these verdicts: refused, exit 2
    again = subprocess.run(cmd[:-2], capture_output=True, text=True, timeout=120)
    assert again.returncode == 2 and "already holds decisions by drive" in again.stderr
