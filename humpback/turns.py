"""Shards in flight at once in the driver's threads (``workers.engine: ray``) take turns.

A shard's own code (reading rows, rendering prompts with the tokenizer, writing its files) runs while
its thread holds the turn; a thread gives the turn up only while it waits for a remote model call
(:class:`humpback.generation.remote.RemoteGenerator`). So the stages' code runs one shard at a time, as
in a local run, and only the model calls overlap.
"""

from __future__ import annotations

import contextlib
import threading
from typing import Iterator

_turn = threading.Lock()
_mine = threading.local()


@contextlib.contextmanager
def turn() -> Iterator[None]:
    """Hold the turn while one shard's code runs."""
    with _turn:
        _mine.held = True
        try:
            yield
        finally:
            _mine.held = False


@contextlib.contextmanager
def waiting() -> Iterator[None]:
    """Give the turn up while this thread waits (a no-op in a thread that does not hold it)."""
    if not getattr(_mine, "held", False):
        yield
        return
    _mine.held = False
    _turn.release()
    try:
        yield
    finally:
        _turn.acquire()
        _mine.held = True
