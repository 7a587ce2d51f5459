"""The manifest: the record of a run folder's stages and attempts, and why a stage must run.

A stage's *key* is a hash of everything its output depends on (config section, prompt text, model
identity, the recorded hashes of its input files, the format version). A finished stage whose key
matches, and whose outputs are present with the recorded hashes, is skipped; anything else re-runs it,
and the reason is printed. Because a stage's inputs enter its key through their content hashes, a change
re-runs exactly the stages downstream of it. How a stage goes through these records (declare -> skip or
run -> finish) is :mod:`.lifecycle`; the run folder's store (:class:`~.folder.RunStore`) builds on this.

On the console a stage is one line when it starts (``[augment] running (new); reads ...`` or
``[augment] up to date, skipped``), its bar, and its result line (:meth:`Manifest.result`), which the
manifest keeps so that a skipped stage shows it again.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Optional, Sequence

from .. import FORMAT_VERSION, __version__
from .. import layout
from ..errors import StoreError
from .files import hash_path, package_versions, write_json
from .workers import Worker, poll_seconds as default_poll_seconds, wait_until


class Manifest:
    """The manifest of the run folder ``root``: each stage's entry (status, key, outputs' hashes, stats,
    result lines) and each attempt. Paths are relative to ``root`` (see :mod:`humpback.layout`)."""

    def __init__(self, root: Path | str, log: Callable[[str], None] = print, worker: Worker = Worker(),
                 poll_seconds: float | None = None):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.log = log
        self.worker = worker
        self._results: list[str] = []
        self.poll_seconds = poll_seconds if poll_seconds is not None else default_poll_seconds()
        self._attempt: Optional[int] = None  # this process's attempt at the run (see begin_attempt)
        self._command: Optional[str] = None
        with self._lock():
            self.manifest = self._load_manifest()

    # paths -----------------------------------------------------------------
    def path(self, rel: str) -> Path:
        return self.root / rel

    def exists(self, rel: str) -> bool:
        return self.path(rel).exists()

    # manifest --------------------------------------------------------------
    def _load_manifest(self) -> dict:
        p = self.path(layout.MANIFEST)
        if not p.exists():
            return {"format_version": FORMAT_VERSION, "created": _now(), "stages": {}}
        try:
            m = json.loads(p.read_text())
        except json.JSONDecodeError as e:
            raise StoreError(f"{p}: not valid JSON ({e}); move the run folder aside to start afresh") from None
        if m.get("format_version") != FORMAT_VERSION:
            raise StoreError(
                f"{p}: run folder format {m.get('format_version')} cannot be resumed by this humpback "
                f"(format {FORMAT_VERSION}); start a new run folder"
            )
        return m

    @contextlib.contextmanager
    def _lock(self):
        """An exclusive lock on the manifest: several workers may share one run folder."""
        with open(self.path(layout.MANIFEST_LOCK), "a") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)

    def refresh(self) -> None:
        """Re-read the manifest (another worker may have finished stages)."""
        with self._lock():
            self.manifest = self._load_manifest()

    def _set_stage(self, name: str, entry: dict) -> None:
        """Record one stage's entry: re-read, update and write the manifest under the lock."""
        with self._lock():
            self.manifest = self._load_manifest()
            self.manifest["stages"][name] = entry
            self.manifest["humpback_version"] = __version__
            self.manifest["packages"] = package_versions()
            self.manifest["updated"] = _now()
            write_json(self.path(layout.MANIFEST), self.manifest)

    def begin_attempt(self, command: str) -> None:
        """Make this process a new attempt at the run (each command on the folder is one). It is
        recorded in the manifest when it first writes something (a stage starts, a figure is logged),
        so a command that stops before doing anything leaves the manifest as it was."""
        self._command = command

    @property
    def attempt(self) -> Optional[int]:
        """This process's attempt id (recorded on first use), or the latest one for a helper worker."""
        if self._attempt is None and self._command is not None:
            with self._lock():
                self.manifest = self._load_manifest()
                attempts = self.manifest.setdefault("attempts", [])
                self._attempt = len(attempts) + 1
                attempts.append({"attempt": self._attempt, "started": _now(), "pid": os.getpid(),
                                 "host": socket.gethostname(), "command": self._command})
                write_json(self.path(layout.MANIFEST), self.manifest)
        return self._attempt

    @attempt.setter
    def attempt(self, value: Optional[int]) -> None:
        self._attempt = value

    def latest_attempt(self) -> Optional[int]:
        attempts = self.manifest.get("attempts") or []
        return attempts[-1]["attempt"] if attempts else None

    def unfinished(self) -> list[tuple[str, dict]]:
        """Stages the manifest records as started but not done: killed, failed or interrupted."""
        return [(n, e) for n, e in self.manifest["stages"].items() if e.get("status") != "done"]

    def stage_entry(self, name: str) -> dict | None:
        return self.manifest["stages"].get(name)

    def output_hash(self, rel: str) -> str:
        """The content hash recorded for a stage output (used as the input hash downstream)."""
        for entry in self.manifest["stages"].values():
            if rel in entry.get("outputs", {}):
                return entry["outputs"][rel]
        raise StoreError(f"{self.path(rel)}: no finished stage has produced this file")

    # a stage's records (the order they come in: :mod:`.lifecycle`) ---------------
    def depends_on(self, deps: dict, inputs: Iterable[str]) -> dict:
        return {"deps": deps, "inputs": {rel: self.output_hash(rel) for rel in inputs},
                "format_version": FORMAT_VERSION}

    def start(self, name: str, key: str, **extra: Any) -> None:
        self._results = []
        attempt = self.attempt  # first, under its own lock: it may record the attempt
        self._set_stage(name, {"status": "running", "key": key, "started": _now(), "attempt": attempt, **extra})

    @contextlib.contextmanager
    def failing(self, name: str, key: str):
        """Record a stage that raises as ``failed`` (with the error) or ``interrupted`` before the error
        goes on; a process that is killed leaves it ``running``, which the next start reports."""
        try:
            yield
        except BaseException as e:
            if self.worker.is_main:
                entry = dict(self.stage_entry(name) or {"key": key, "started": _now()})
                entry.update(status="interrupted" if isinstance(e, KeyboardInterrupt) else "failed",
                             error=f"{type(e).__name__}: {e}"[:1000], ended=_now())
                self._set_stage(name, entry)
            raise

    def result(self, line: str) -> None:
        """The running stage's result line (``augment: 96 segments -> 96 candidates``), shown under its
        bar and kept in its manifest entry, so that a later run that skips the stage shows it again."""
        self._results.append(line)
        self.log(f"  {line}")

    def skipped(self, name: str, entry: dict) -> None:
        """The lines of a stage skipped as up to date: that, and the result its run recorded."""
        self.log(f"[{name}] up to date, skipped")
        for line in entry.get("result", []):
            self.log(f"  {line}")

    def finish(self, name: str, key: str, full: dict, outputs: Sequence[str], stats: dict, started: float) -> None:
        self._set_stage(name, {
            "status": "done",
            "key": key,
            "depends_on": full,
            "outputs": {rel: hash_path(self.path(rel)) for rel in outputs},
            "stats": stats,
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
            "finished": _now(),
            "seconds": round(time.time() - started, 3),
            "worker": self.worker.index,
            "result": self._results,
        })
        self._results = []

    def finished_entry(self, name: str, key: str) -> Optional[dict]:
        """The manifest entry of ``name`` if it is done with ``key`` (re-read from disk), else None."""
        self.refresh()
        entry = self.stage_entry(name)
        return entry if entry and entry.get("status") == "done" and entry.get("key") == key else None

    def wait_for(self, name: str, key: str, line: str) -> dict:
        """A helper worker waits (saying ``line``) until another one has finished ``name`` with ``key``;
        returns the stage's statistics."""
        entry = wait_until(lambda: self.finished_entry(name, key), lambda: self.log(line), self.poll_seconds)
        return entry.get("stats", {})

    def why_run(self, prev: dict | None, key: str, full: dict, outputs: Sequence[str], force: bool) -> str | None:
        """Why a stage must run (forced, new, unfinished, changed, output missing), or None: skip it."""
        if force:
            return "forced"
        if prev is None:
            return "new"
        if prev.get("status") != "done":
            return unfinished_reason(prev)
        if prev.get("key") != key:
            changed = _diff_keys(prev.get("depends_on", {}), full)
            return "changed: " + ", ".join(changed) if changed else "changed"
        for rel in outputs:
            p = self.path(rel)
            if not p.exists():
                return f"output {rel} is missing"
            if hash_path(p) != prev["outputs"].get(rel):
                return f"output {rel} does not match its recorded hash"
        return None


def unfinished_reason(entry: dict) -> str:
    """Why a stage recorded as started is not done, in words."""
    if entry.get("status") == "failed":
        return f"failed last time: {entry.get('error', 'no error recorded')}"
    if entry.get("status") == "interrupted":
        return "interrupted last time"
    return "did not finish last time"  # still marked running: its process was killed


def _diff_keys(old: Any, new: Any, prefix: str = "") -> list[str]:
    """Dotted names of the leaves that differ between two nested dicts."""
    if not (isinstance(old, dict) and isinstance(new, dict)):
        return [prefix.rstrip(".") or "value"] if old != new else []
    out: list[str] = []
    for k in sorted(set(old) | set(new), key=str):
        if k in ("deps", "inputs"):
            out += _diff_keys(old.get(k), new.get(k), prefix)
        else:
            out += _diff_keys(old.get(k), new.get(k), f"{prefix}{k}.")
    return out


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")
