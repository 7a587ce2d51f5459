"""`humpback review` in a real browser: headless Chromium (Debian's, driven by Playwright through its
``executable_path``; no browser is downloaded) loads the page the command serves on the session's tiny
run, reviews 10 pairs by keyboard (one of them edited), the server is killed, a new one is started, and
the reloaded page shows every decision kept. Screenshots go to the test's folder (and to
$HUMPBACK_SCREENSHOTS when set, to look at them)."""

import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from browser import LAUNCH_ARGS, chromium, keep_screenshot, playwright
from humpback.review.decisions import read_decisions
from humpback.store import read_table

ROOT = Path(__file__).parent.parent


pytestmark = [
    pytest.mark.skipif(chromium() is None, reason="no chromium (scripts/ensure_chromium.sh installs Debian's)"),
    pytest.mark.skipif(playwright() is None, reason="playwright is not installed (pip install playwright; its "
                                                     "browsers are not needed: the system chromium is used)"),
]


class Server:
    """``humpback review`` in a subprocess; ``url`` is the address it printed."""

    def __init__(self, run_dir: Path, *args: str):
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        self.proc = subprocess.Popen([sys.executable, "-u", "-m", "humpback", "review", str(run_dir), "--no-browser",
                                      *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
        self.lines = []
        for line in self.proc.stdout:
            self.lines.append(line)
            m = re.match(r"Review page: (http://127\.0\.0\.1:\d+/)", line)
            if m:
                self.url = m.group(1)
                return
        raise AssertionError("the server printed no address:\n" + "".join(self.lines))

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)


def _shot(page, tmp_path: Path, name: str) -> Path:
    path = tmp_path / f"{name}.png"
    page.screenshot(path=str(path), full_page=False)
    keep_screenshot(path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    return path


def test_review_ten_pairs_by_keyboard_kill_the_server_and_find_them_kept(tiny_cli_run, tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(tiny_cli_run[0], run_dir)
    candidates = {c["candidate_id"]: c for c in read_table(run_dir / "augment/candidates")}
    assert len(candidates) >= 10
    server = Server(run_dir, "--iteration", "1", "--reviewer", "tester", "--sample", "12")
    assert "Reviewer tester: 0 of 12 already decided" in "".join(server.lines)
    with playwright()() as p:
        browser = p.chromium.launch(executable_path=chromium(), args=LAUNCH_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 900})
            page.set_default_timeout(30_000)
            page.goto(server.url)
            page.wait_for_selector("body[data-ready='1']")
            assert page.inner_text("#progress") == "0 of 12 decided"
            _shot(page, tmp_path, "review-1-loaded")
            verdicts = {}
            for i in range(10):
                pair = page.inner_text("#pairline")
                cid = re.search(r"id (\S+)", pair).group(1)
                assert page.inner_text("#instruction") == candidates[cid]["instruction"]
                assert page.inner_text("#segment") == candidates[cid]["output"]
                if i == 3:
                    page.keyboard.press("e")
                    page.wait_for_selector("#edit-box", state="visible")
                    page.keyboard.press("Control+a")
                    page.keyboard.type("Explain what this passage of the Python documentation says.")
                    _shot(page, tmp_path, "review-2-editing")
                    page.keyboard.press("Control+Enter")
                    verdicts[cid] = "edit"
                else:
                    key = "a" if i % 3 else "r"
                    page.keyboard.press(key)
                    verdicts[cid] = {"a": "accept", "r": "reject"}[key]
                page.wait_for_selector(f"body[data-done='{i + 1}']")
            assert page.inner_text("#progress") == "10 of 12 decided"
            agreement = page.inner_text("#agreement")
            _shot(page, tmp_path, "review-3-ten-decided")
            # every decision is on disk already: kill the server, no goodbye
            rows = read_decisions(run_dir)
            assert {r["candidate_id"]: r["verdict"] for r in rows} == verdicts
            assert {r["reviewer"] for r in rows} == {"tester"} and {r["iteration"] for r in rows} == {1}
            edited = next(r for r in rows if r["verdict"] == "edit")
            assert edited["instruction"] == "Explain what this passage of the Python documentation says."
            server.kill()

            server = Server(run_dir, "--iteration", "1", "--reviewer", "tester", "--sample", "12")
            assert "Reviewer tester: 10 of 12 already decided" in "".join(server.lines)
            page.goto(server.url)  # a new port: the reloaded page reads the decisions back
            page.wait_for_selector("body[data-ready='1']")
            assert page.inner_text("#progress") == "10 of 12 decided"
            assert page.inner_text("#agreement") == agreement
            chips = page.eval_on_selector_all("#strip span", "els => els.map(e => e.className.split(' ')[0])")
            assert sorted(c for c in chips if c) == sorted(verdicts.values())
            page.goto(server.url + "#4")  # the 4th pair, the edited one
            page.wait_for_selector("body[data-current='3']")
            assert page.get_attribute("#verdict", "data-verdict") == "edit"
            assert page.inner_text("#edited") == edited["instruction"]
            _shot(page, tmp_path, "review-4-after-restart")
            page.keyboard.press("u")  # withdraw the edit
            page.wait_for_selector("body[data-done='9']")
            assert edited["candidate_id"] not in {r["candidate_id"] for r in read_decisions(run_dir)}
        finally:
            browser.close()
            server.kill()
