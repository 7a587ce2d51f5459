"""Accelerator housekeeping shared by training and the generation backends."""

from __future__ import annotations

import gc


def free_memory() -> None:
    """Collect garbage and hand cached CUDA memory back, so the next model of the loop fits."""
    gc.collect()
    try:
        import torch
    except ImportError:  # pragma: no cover
        return
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def pick_device(device: str) -> str:
    """``auto``: CUDA when there is one, else the CPU; any other name as it is."""
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"
