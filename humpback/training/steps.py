"""The training bar: one bar over optimizer steps with the latest loss and learning rate, fed by a
``TrainerCallback``; the Trainer's log dicts go to the run's log, not to the console.

The callback turns the Trainer's progress into events (``begin``, ``step``, ``log``, ``end``). In this
process :class:`StepBar` draws them as a :mod:`humpback.progress` bar. Under ``accelerate launch`` the
main process prints each event as one line, ``EVENT_PREFIX`` and JSON, on its stdout, and the parent
(:mod:`.launch`) reads them back into its own :class:`StepBar`.
"""

from __future__ import annotations

import json
import math
from typing import Any, Callable, Optional

from .. import progress
from ..console import details

EVENT_PREFIX = "@humpback-train "
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


def print_event(event: Event) -> None:
    """How the main process under ``accelerate launch`` hands an event to its parent."""
    print(EVENT_PREFIX + json.dumps(event), flush=True)


def read_event(line: str) -> Optional[Event]:
    """The event a line of the launched process's output carries, or None for any other line."""
    if not line.startswith(EVENT_PREFIX):
        return None
    try:
        return json.loads(line[len(EVENT_PREFIX):])
    except json.JSONDecodeError:
        return None


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
