"""The training bar: one bar over optimizer steps with the latest loss and learning rate, fed by a
``TrainerCallback``; the Trainer's log dicts go to the run's log, not to the console.

The callback turns the Trainer's progress into events (``begin``, ``step``, ``log``, ``end``). In this
process :class:`StepBar` draws them as a :mod:`humpback.progress` bar. Under ``accelerate launch`` the
main process appends each event as one JSON line to an events file of its own (:class:`EventWriter`),
never to the stdout/stderr pipe that the libraries' free-form output shares, and the parent
(:mod:`.launch`) follows that file (:class:`EventReader`) into its own :class:`StepBar`.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any, Callable, Optional

from .. import progress
from ..console import details

Event = dict


class StepBar:
    """Training events drawn as a bar of optimizer steps, its postfix ``loss 7.526, lr 5.5e-04``."""

    def __init__(self, show: bool = True):
        self.show = show
        self.bar: Optional[Any] = None

    def __call__(self, event: Event) -> None:
        kind = event.get("event")
        if kind == "begin":
            self.close()
            self.bar = progress.open_bar(event.get("total") or None, "steps", "train", show=self.show)
        elif self.bar is None:
            return
        elif kind == "step":
            self.bar.update(event["step"] - self.bar.n)
        elif kind == "log":
            self.bar.set_postfix_str(postfix(event))
        elif kind == "end":
            self.close()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def postfix(event: Event) -> str:
    """``loss 7.526, lr 5.5e-04`` from a ``log`` event (either may be missing)."""
    parts = []
    if isinstance(event.get("loss"), (int, float)) and math.isfinite(event["loss"]):
        parts.append(f"loss {event['loss']:.3f}")
    if isinstance(event.get("lr"), (int, float)):
        parts.append(f"lr {event['lr']:.1e}")
    return ", ".join(parts)


class EventWriter:
    """How the main process under ``accelerate launch`` hands events to its parent: each event one
    complete JSON line, appended to ``path`` in a single ``write`` (nothing else writes to the file)."""

    def __init__(self, path: Path):
        self.path = Path(path)

    def __call__(self, event: Event) -> None:
        data = (json.dumps(event) + "\n").encode("utf-8")
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            while data:  # a regular file takes it in one write; a short write is finished, never interleaved
                data = data[os.write(fd, data):]
        finally:
            os.close(fd)


class EventReader:
    """Follows an events file as it grows: :meth:`read` returns the events of the complete lines
    appended since the last call. A line still being written (no newline yet) waits for its rest, so
    an event that reaches the file in pieces is read whole; a complete line that is not an event is
    kept in :attr:`bad` (and logged), never dropped silently."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.offset = 0
        self.pending = b""
        self.bad: list[str] = []

    def read(self, final: bool = False) -> list[Event]:
        """The new events; with ``final`` (the writer has exited) an unfinished last line counts as bad."""
        try:
            with open(self.path, "rb") as f:
                f.seek(self.offset)
                chunk = f.read()
        except FileNotFoundError:
            chunk = b""
        self.offset += len(chunk)
        *lines, self.pending = (self.pending + chunk).split(b"\n")
        if final and self.pending:
            lines, self.pending = lines + [self.pending], b""
        events = []
        for raw in lines:
            event = _event(raw)
            if event is None:
                text = raw.decode("utf-8", errors="replace")
                self.bad.append(text)
                details.warning("training events file %s: not an event: %r", self.path, text[:200])
            else:
                events.append(event)
        return events


def _event(raw: bytes) -> Optional[Event]:
    try:
        event = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None
    return event if isinstance(event, dict) and isinstance(event.get("event"), str) else None


def step_callback(emit: Callable[[Event], None]):
    """A ``TrainerCallback`` that reports the main process's progress to ``emit`` and writes the
    Trainer's log dicts to the run's log."""
    from transformers import TrainerCallback

    class StepEvents(TrainerCallback):
        def on_train_begin(self, args, state, control, **kwargs):
            if state.is_world_process_zero:
                emit({"event": "begin", "total": state.max_steps})

        def on_step_end(self, args, state, control, **kwargs):
            if state.is_world_process_zero:
                emit({"event": "step", "step": state.global_step})

        def on_log(self, args, state, control, logs=None, **kwargs):
            if not (state.is_world_process_zero and logs):
                return
            details.info("trainer step %d: %s", state.global_step,
                         {k: v for k, v in logs.items() if k != "total_flos"})
            if "loss" in logs:
                emit({"event": "log", "step": state.global_step, "loss": _number(logs["loss"]),
                      "lr": _number(logs.get("learning_rate"))})

        def on_train_end(self, args, state, control, **kwargs):
            if state.is_world_process_zero:
                emit({"event": "end"})

    return StepEvents()


def _number(value: Any) -> Optional[float]:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None
