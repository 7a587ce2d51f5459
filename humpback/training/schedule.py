"""The paper's training schedule: steps by data size, its effective batch, and a learning rate that
decays to a floor (the paper: 1e-5 to 9e-6)."""

from __future__ import annotations

import logging

logger = logging.getLogger(__name__)

# The paper's training steps by number of examples (Li et al. 2023, training details).
PAPER_STEPS = ((100, 30), (800, 300), (1_600, 600), (3_200, 500), (6_400, 600),
               (12_800, 600), (25_600, 1_200), (51_200, 1_600))
PAPER_BATCH = 32
PAPER_SMALL_BATCH = 8  # below PAPER_SMALL_DATA examples
PAPER_SMALL_DATA = 3_000


def paper_steps(n_examples: int) -> int:
    """Training steps for ``n_examples`` from the paper's table: linear in between, clamped outside."""
    if n_examples <= PAPER_STEPS[0][0]:
        return PAPER_STEPS[0][1]
    for (n0, s0), (n1, s1) in zip(PAPER_STEPS, PAPER_STEPS[1:]):
        if n_examples <= n1:
            return round(s0 + (s1 - s0) * (n_examples - n0) / (n1 - n0))
    return PAPER_STEPS[-1][1]


def paper_batch_size(n_examples: int) -> int:
    """The paper's effective batch: 32, or 8 below 3,000 examples."""
    return PAPER_SMALL_BATCH if n_examples < PAPER_SMALL_DATA else PAPER_BATCH


def paper_accumulation(n_examples: int, per_device_batch: int, world_size: int) -> int:
    """Gradient accumulation steps that make the paper's effective batch (never below 1)."""
    per_step = per_device_batch * world_size
    target = paper_batch_size(n_examples)
    accumulation = max(1, target // per_step)
    if accumulation * per_step != target:
        logger.warning("effective batch %d instead of the paper's %d (%d per device x %d processes)",
                       accumulation * per_step, target, per_device_batch, world_size)
    return accumulation


def lr_schedule(scheduler: str, learning_rate: float, min_lr_ratio: float | None) -> tuple[str, dict]:
    """``(lr_scheduler_type, lr_scheduler_kwargs)`` for the Trainer: ``scheduler`` as it is, or, with a
    floor of ``min_lr_ratio`` x the peak, the transformers schedule that decays to it: ``linear`` is
    ``polynomial`` with power 1 ending at ``lr_end``, ``cosine`` is ``cosine_with_min_lr``."""
    if min_lr_ratio is None:
        return scheduler, {}
    if scheduler == "linear":
        return "polynomial", {"lr_end": learning_rate * min_lr_ratio, "power": 1.0}
    if scheduler == "cosine":
        return "cosine_with_min_lr", {"min_lr_rate": min_lr_ratio}
    raise ValueError(f"min_lr_ratio needs lr_scheduler_type linear or cosine, got {scheduler!r}")
