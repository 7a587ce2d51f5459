"""One ``humpback run`` per run folder at a time.

The main process of a run holds an exclusive ``flock`` on ``RUN_DIR/.run.lock`` for as long as it runs;
the file says who holds it (pid, host, since). A second run stops at once with that information. A
process that is killed releases its flock with it, so the lock it leaves behind is recognised as stale
and taken over (flock is honoured across the machines of a shared filesystem where the filesystem
supports locking, as NFSv4 and Lustre do). The other workers of one sharded run do not take the lock.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from pathlib import Path
from typing import Optional

from .. import layout
from ..errors import StoreError

# Locks this process holds, by run folder: opening the same run again in one process is allowed.
_held: dict[Path, "RunLock"] = {}


class RunLock:
    def __init__(self, root: Path):
        self.root = Path(root)
        self.path = self.root / layout.RUN_LOCK
        self._file = None
        self.stale: Optional[dict] = None  # what a killed earlier holder left, if this lock took it over

    def acquire(self) -> "RunLock":
        key = self.root.resolve()
        if key in _held:
            return _held[key]
        self.root.mkdir(parents=True, exist_ok=True)
        f = open(self.path, "a+")
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read(self.path)
            f.close()
            raise StoreError(f"another humpback run holds {self.root} ({describe(holder)}); wait for it to "
                             f"finish or stop it, or use another --run-dir") from None
        self.stale = _read(self.path) or None
        f.seek(0)
        f.truncate()
        f.write(json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                            "since": time.strftime("%Y-%m-%dT%H:%M:%S%z")}))
        f.flush()
        self._file = f
        _held[key] = self
        return self

    def release(self) -> None:
        if self._file is None:
            return
        _held.pop(self.root.resolve(), None)
        self._file.seek(0)
        self._file.truncate()
        fcntl.flock(self._file, fcntl.LOCK_UN)
        self._file.close()
        self._file = None


def describe(holder: Optional[dict]) -> str:
    if not holder:
        return "holder unknown"
    return f"pid {holder.get('pid')}, host {holder.get('host')}, since {holder.get('since')}"


def _read(path: Path) -> dict:
    try:
        text = path.read_text().strip()
        return json.loads(text) if text else {}
    except (OSError, json.JSONDecodeError):
        return {}
