"""Several processes sharing one run folder: which share of the work is this process's, and how
one waits for the others."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Callable, Optional

from ..errors import StoreError

# How often a worker looks for the others' progress (HUMPBACK_POLL_SECONDS, default 5 s).
DEFAULT_POLL_SECONDS = 5.0


@dataclass(frozen=True)
class Worker:
    """Which share of the sharded stages this process does: shards s with s % count == index.

    Worker 0 also runs the unsharded stages (data, training); the others wait for them."""

    index: int = 0
    count: int = 1

    @classmethod
    def from_env(cls, index: int | None = None, count: int | None = None) -> "Worker":
        """Explicit values, else SLURM array variables, else torchrun's RANK/WORLD_SIZE, else 0 of 1."""
        env = os.environ
        if index is None and count is None:
            if "SLURM_ARRAY_TASK_ID" in env and "SLURM_ARRAY_TASK_COUNT" in env:
                offset = int(env.get("SLURM_ARRAY_TASK_MIN", "0"))
                index, count = int(env["SLURM_ARRAY_TASK_ID"]) - offset, int(env["SLURM_ARRAY_TASK_COUNT"])
            elif "RANK" in env and "WORLD_SIZE" in env:
                index, count = int(env["RANK"]), int(env["WORLD_SIZE"])
        worker = cls(index if index is not None else 0, count if count is not None else 1)
        if not 0 <= worker.index < worker.count:
            raise StoreError(f"worker index {worker.index} is not in 0..{worker.count - 1}")
        return worker

    @property
    def is_main(self) -> bool:
        return self.index == 0

    def owns(self, shard: int) -> bool:
        return shard % self.count == self.index


def poll_seconds() -> float:
    return float(os.environ.get("HUMPBACK_POLL_SECONDS", DEFAULT_POLL_SECONDS))


def wait_until(ready: Callable[[], Optional[object]], announce: Callable[[], None], every: float) -> object:
    """Call ``ready`` every ``every`` seconds until it returns something other than None; ``announce``
    once, the first time it has to wait."""
    announced = False
    while True:
        value = ready()
        if value is not None:
            return value
        if not announced:
            announce()
            announced = True
        time.sleep(every)
