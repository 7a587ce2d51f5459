"""The TensorBoard mirror: scalars, histograms and a text table of pairs in RUN_DIR/tensorboard."""

from __future__ import annotations

from typing import Any, Optional

from .. import layout
from ..config import TrackingConfig
from ..errors import ConfigError
from . import SCORE_BINS, Tracker, _is_number, _Logged, _score_counts


class TensorBoardTracker(Tracker):
    """Scalars, histograms and a text table of pairs in ``RUN_DIR/tensorboard``."""

    backend = "tensorboard"

    def __init__(self, cfg: TrackingConfig, store: Any, name: str, config: dict):
        import yaml

        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as e:
            raise ConfigError(f"tracking.backend: tensorboard needs the tensorboard package ({e}); "
                              "pip install tensorboard") from None

        self.logged = _Logged(store, "tensorboard")
        self.writer = SummaryWriter(log_dir=str(store.path(layout.TENSORBOARD)))
        self.writer.add_text("config", "    " + yaml.safe_dump(config, sort_keys=False).replace("\n", "\n    "))
        self._counts: dict[str, int] = {}
        self._finished = False

    def metric(self, stage: str, name: str, value: Any, iteration: Optional[int] = None) -> None:
        if not _is_number(value):
            return
        tag = f"{stage}/{name}"
        # Figures without an iteration (data stages) are numbered in order.
        self.writer.add_scalar(tag, value, global_step=iteration if iteration is not None else self._next(tag))

    def log_iteration(self, k: int, figures: dict, distributions: dict[str, list], pairs: list[dict]) -> None:
        import numpy as np

        digest = self.logged.digest([], [figures, distributions, pairs])
        if not self.logged.once(f"iteration:{k}", digest):
            return
        for n, v in figures.items():
            if _is_number(v):
                self.writer.add_scalar(f"iter/{n}", v, global_step=k)
        counts = _score_counts(distributions.get("scores", []))
        if sum(counts):
            self.writer.add_histogram_raw("iter/score_histogram", min=1, max=5, num=sum(counts),
                                          sum=float(sum(c * (i + 1) for i, c in enumerate(counts))),
                                          sum_squares=float(sum(c * (i + 1) ** 2 for i, c in enumerate(counts))),
                                          bucket_limits=SCORE_BINS[1:], bucket_counts=counts, global_step=k)
        for n, values in distributions.items():
            if n != "scores" and values:
                self.writer.add_histogram(f"iter/{n}", np.asarray(values, dtype=float), global_step=k)
        if pairs:
            columns = list(pairs[0])
            lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
            for p in pairs:
                lines.append("| " + " | ".join(_cell(p[c]) for c in columns) + " |")
            self.writer.add_text("iter/pairs", "\n".join(lines), global_step=k)
        self.writer.flush()
        self.logged.done(f"iteration:{k}", digest)

    def log_losses(self, model: str, losses: list[dict]) -> None:
        digest = self.logged.digest([], losses)
        if not losses or not self.logged.once(f"losses:{model}", digest):
            return
        for point in losses:
            self.writer.add_scalar(f"loss/{model}", point["loss"], global_step=point["step"])
        self.writer.flush()
        self.logged.done(f"losses:{model}", digest)

    def where(self) -> Optional[str]:
        return f"tensorboard --logdir {self.writer.log_dir}"

    def finish(self, failed: bool = False) -> None:
        if not self._finished:
            self._finished = True
            self.writer.close()

    def _next(self, tag: str) -> int:
        self._counts[tag] = self._counts.get(tag, 0) + 1
        return self._counts[tag] - 1


def _cell(value: Any) -> str:
    text = "" if value is None else str(value)
    text = " ".join(text.split())
    return (text[:200] + "...") if len(text) > 200 else text.replace("|", "\\|")


