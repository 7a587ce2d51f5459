"""Entry point for one training under ``accelerate launch`` (started by the finetune stage).

Every process runs this; the Trainer distributes the work and the main process saves the model
and writes the result JSON.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m humpback.train_worker")
    p.add_argument("--config", required=True, help="resolved run config (YAML)")
    p.add_argument("--base-model", required=True)
    p.add_argument("--rows", required=True, help="Parquet file of chat `messages` rows")
    p.add_argument("--output", required=True)
    p.add_argument("--result", required=True)
    args = p.parse_args(argv)

    from .config import load_config
    from .store import read_table, write_json
    from .training import train_sft

    cfg = load_config(args.config)
    rows = read_table(Path(args.rows))
    r = train_sft(args.base_model, rows, Path(args.output), cfg.train, seed=cfg.random_seed,
                  revision=cfg.base_model_revision, progress=cfg.tracking.progress,
                  # A wandb run of its own, in the humpback run's group (WANDB_* set by humpback.tracking).
                  report_to="wandb" if cfg.tracking.backend == "wandb" else "none")
    if int(os.environ.get("RANK", "0")) == 0:
        write_json(Path(args.result), r.summary())


if __name__ == "__main__":
    main()
