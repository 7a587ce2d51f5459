"""Drive `humpback review` in headless Chromium, the way a reviewer would, and check what it kept.

    python scripts/review_drive.py RUN_DIR --iteration 1 --pairs 50 --restart-after 25 \
        --verdicts verdicts.json --screenshots shots/ --summary drive.json

RUN_DIR must be a copy you may write to: the decisions go to RUN_DIR/review/decisions.parquet. The script
starts `humpback review RUN_DIR --no-browser` (threshold order), opens the printed address in Chromium at
1280x800 (Debian's chromium, driven by Playwright through its executable path: no browser is downloaded),
and gives every pair of the sample a verdict by keyboard (A accept, R reject, E edit + Ctrl+Enter). After
``--restart-after`` verdicts it kills the server (SIGKILL, no goodbye), checks that a verdict given while
the server is down says "NOT saved", starts a new server, reloads the page and checks that every earlier
verdict, the progress and the agreement are shown again, then reviews the rest. After every verdict the
decisions file is read back and must hold it. Screenshots of each step go to ``--screenshots``.

Verdicts: ``--verdicts FILE`` is a JSON object {pair id: "accept" | "reject" | {"edit": "new instruction"}}
(a human's verdicts, typed in by the script); pairs it does not name get the fallback pattern (every third
pair rejected, the fourth edited, the rest accepted), which only exercises the page. Exit status 0: every
check passed; 1: a check failed (the message says which); 2: bad input.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from humpback import layout  # noqa: E402
from humpback.review.decisions import effective, read_decisions  # noqa: E402

VIEWPORT = {"width": 1280, "height": 800}
KEYS = {"accept": "a", "reject": "r"}


class CheckFailed(Exception):
    pass


def check(ok: bool, what: str) -> None:
    if not ok:
        raise CheckFailed(what)


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return shutil.which(name)
    raise SystemExit("review_drive: no chromium on PATH (scripts/ensure_chromium.sh installs Debian's)")


class Server:
    """``humpback review`` in a subprocess; ``url`` and ``decided`` are what it printed."""

    def __init__(self, args: argparse.Namespace):
        cmd = [sys.executable, "-u", "-m", "humpback", "review", str(args.run_dir), "--no-browser", "--iteration",
               str(args.iteration), "--sample", str(args.pairs), "--reviewer", args.reviewer, "--order", args.order]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
        self.lines: list[str] = []
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))
            m = re.match(r"Review page: (http://127\.0\.0\.1:\d+/)", line)
            if m:
                self.url = m.group(1)
                found = re.search(r"(\d+) of (\d+) already decided", "\n".join(self.lines))
                self.decided, self.total = (int(found.group(1)), int(found.group(2))) if found else (None, None)
                return
        self.proc.wait()
        raise CheckFailed("the review server printed no address:\n" + "\n".join(self.lines))

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()


def fallback(i: int) -> object:
    if i == 3:
        return {"edit": None}
    return "reject" if i % 3 == 0 else "accept"


def on_disk(run_dir: Path, reviewer: str) -> dict[str, dict]:
    return {cid: d for cid, d in effective(read_decisions(run_dir)).items() if d["reviewer"] == reviewer}


class Drive:
    def __init__(self, args: argparse.Namespace, page):
        self.args, self.page = args, page
        self.verdicts = json.loads(Path(args.verdicts).read_text()) if args.verdicts else {}
        self.given: dict[str, dict] = {}
        self.shots: list[str] = []
        self.edits = 0

    def shot(self, name: str) -> None:
        if self.args.screenshots:
            path = Path(self.args.screenshots) / f"{len(self.shots) + 1:02d}-{name}.png"
            self.page.screenshot(path=str(path), full_page=False)
            self.shots.append(str(path))

    def load(self, url: str) -> None:
        self.page.goto(url)
        self.page.wait_for_selector("body[data-ready='1']")

    def done(self) -> int:
        return int(self.page.get_attribute("body", "data-done"))

    def current_id(self) -> str:
        return re.search(r"id (\S+)", self.page.inner_text("#pairline")).group(1)

    def verdict_for(self, cid: str) -> tuple[str, str | None]:
        v = self.verdicts.get(cid, fallback(len(self.given)))
        if isinstance(v, dict):
            text = v.get("edit") or self.page.inner_text("#instruction").strip() + " Answer from the passage."
            return "edit", text
        check(v in KEYS, f"--verdicts: pair {cid}: {v!r} is not accept, reject or {{'edit': text}}")
        return v, None

    def review_one(self) -> None:
        page, before = self.page, self.done()
        cid, index = self.current_id(), int(page.get_attribute("body", "data-current"))
        check(cid not in self.given, f"pair {cid} was shown again after its verdict")
        verdict, text = self.verdict_for(cid)
        if verdict == "edit":
            page.keyboard.press("e")
            page.wait_for_selector("#edit-box", state="visible")
            page.keyboard.press("Control+a")
            page.keyboard.type(text)
            if not self.edits:
                self.shot("editing")
            self.edits += 1
            page.keyboard.press("Control+Enter")
        else:
            page.keyboard.press(KEYS[verdict])
        page.wait_for_selector(f"body[data-done='{before + 1}']")
        self.given[cid] = {"verdict": verdict, "instruction": text, "index": index}
        saved = on_disk(self.args.run_dir, self.args.reviewer).get(cid)
        check(saved is not None and saved["verdict"] == verdict and saved["instruction"] == text,
              f"pair {cid}: the page said saved, the decisions file holds {saved}")

    def shown_verdicts(self) -> list[str]:
        return self.page.eval_on_selector_all("#strip span", "els => els.map(e => e.className.split(' ')[0])")

    def offline_verdict_is_refused(self) -> None:
        """With the server killed, a verdict must say it was NOT saved (and change nothing on disk)."""
        before = dict(on_disk(self.args.run_dir, self.args.reviewer))
        self.page.keyboard.press("a")
        self.page.wait_for_selector("#status.error")
        check("NOT saved" in self.page.inner_text("#status"), "a verdict without a server did not say NOT saved")
        check(on_disk(self.args.run_dir, self.args.reviewer) == before, "the decisions changed without a server")
        self.shot("server-down")


def run(args: argparse.Namespace) -> dict:
    from playwright.sync_api import sync_playwright

    if args.screenshots:
        Path(args.screenshots).mkdir(parents=True, exist_ok=True)
    server = Server(args)
    log = [f"server 1: {server.url}, {server.decided} of {server.total} already decided"]
    start = time.time()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium(),
                                    args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"])
        try:
            page = browser.new_page(viewport=VIEWPORT)
            page.set_default_timeout(30_000)
            drive = Drive(args, page)
            drive.load(server.url)
            total = int(page.inner_text("#progress").split(" of ")[1].split()[0])
            check(total == server.total, f"the page shows {total} pairs, the server said {server.total}")
            drive.shot("loaded")
            restart_at = min(args.restart_after, total)
            while drive.done() < restart_at:
                drive.review_one()
            progress, agreement = page.inner_text("#progress"), page.inner_text("#agreement")
            drive.shot("before-kill")
            server.kill()
            log.append(f"killed server 1 (SIGKILL) after {len(drive.given)} verdicts: {progress}; {agreement}")
            drive.offline_verdict_is_refused()

            server = Server(args)
            log.append(f"server 2: {server.url}, {server.decided} of {server.total} already decided")
            check(server.decided == len(drive.given), f"server 2 found {server.decided} decisions, "
                                                      f"{len(drive.given)} were given")
            drive.load(server.url)
            check(page.inner_text("#progress") == progress, f"after the restart: {page.inner_text('#progress')!r}, "
                                                            f"before: {progress!r}")
            check(page.inner_text("#agreement") == agreement, "the agreement changed across the restart")
            check(sorted(c for c in drive.shown_verdicts() if c) == sorted(g["verdict"] for g in drive.given.values()),
                  "the pair strip does not show the verdicts given before the restart")
            drive.shot("after-restart")
            edited = next((cid for cid, g in drive.given.items() if g["verdict"] == "edit"), None)
            if edited is not None:  # the edited pair, reached through its address, shows the reviewer's text
                index = drive.given[edited]["index"]
                drive.load(server.url + f"#{index + 1}")
                page.wait_for_selector(f"body[data-current='{index}']")
                check(page.inner_text("#edited") == drive.given[edited]["instruction"],
                      "the edited pair does not show the reviewer's instruction after the restart")
                drive.shot("edited-pair-after-restart")
                page.keyboard.press("n")  # on to the next undecided pair
            while drive.done() < total:
                drive.review_one()
            drive.shot("all-decided")
            final = {"progress": page.inner_text("#progress"), "agreement": page.inner_text("#agreement")}
        finally:
            browser.close()
            server.stop()
    saved = on_disk(args.run_dir, args.reviewer)
    check({cid: d["verdict"] for cid, d in saved.items()} == {c: g["verdict"] for c, g in drive.given.items()},
          "the decisions file does not hold exactly the verdicts given")
    counts = {v: sum(g["verdict"] == v for g in drive.given.values()) for v in ("accept", "reject", "edit")}
    return {"run_dir": str(args.run_dir), "iteration": args.iteration, "reviewer": args.reviewer,
            "pairs_reviewed": len(drive.given), "sample": total, "counts": counts,
            "from_verdicts_file": sum(cid in drive.verdicts for cid in drive.given), "log": log, **final,
            "screenshots": drive.shots, "seconds": round(time.time() - start, 1)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("run_dir", type=Path, help="a run folder you may write to (a copy): decisions go into it")
    ap.add_argument("--iteration", type=int, default=1)
    ap.add_argument("--pairs", type=int, default=50, help="sample size asked of the server (it may have fewer)")
    ap.add_argument("--restart-after", type=int, default=25, help="kill and restart the server after N verdicts")
    ap.add_argument("--order", choices=["threshold", "random"], default="threshold")
    ap.add_argument("--reviewer", default="review-drive")
    ap.add_argument("--verdicts", help="JSON {pair id: accept | reject | {\"edit\": text}}")
    ap.add_argument("--screenshots", help="folder for the screenshots (1280x800)")
    ap.add_argument("--summary", help="also write the summary JSON to this file")
    args = ap.parse_args(argv)
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        print("review_drive: playwright is not installed (pip install playwright; the system chromium is used)",
              file=sys.stderr)
        return 2
    if not (args.run_dir / layout.MANIFEST).exists():
        print(f"review_drive: {args.run_dir} is not a humpback run folder", file=sys.stderr)
        return 2
    if on_disk(args.run_dir, args.reviewer):
        print(f"review_drive: {args.run_dir} already holds decisions by {args.reviewer}; use a fresh copy or "
              f"another --reviewer", file=sys.stderr)
        return 2
    try:
        summary = run(args)
    except CheckFailed as e:
        print(f"review_drive: FAILED: {e}", file=sys.stderr)
        return 1
    text = json.dumps(summary, indent=2)
    print(text)
    if args.summary:
        Path(args.summary).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
