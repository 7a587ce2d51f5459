"""What a finished training leaves in its output folder: the weights and tokenizer, nothing else, and
the same bytes for the same training."""

from __future__ import annotations

import json
from pathlib import Path

# PEFT keeps these as sets and writes them in set order, which changes with each process's hash seed: two
# identical trainings then wrote different adapter_config.json files, so model hashes (and every later
# stage's key) differed between two runs of one recipe.
SET_VALUED = ("target_modules", "modules_to_save", "exclude_modules")


def tidy_saved_model(folder: str | Path) -> None:
    """Remove the Trainer's ``training_args.bin`` (a pickle nothing reads) and sort the set-valued lists
    of ``adapter_config.json`` (where there is one)."""
    folder = Path(folder)
    (folder / "training_args.bin").unlink(missing_ok=True)
    path = folder / "adapter_config.json"
    if not path.is_file():
        return
    config = json.loads(path.read_text())
    for key in SET_VALUED:
        if isinstance(config.get(key), list) and all(isinstance(v, str) for v in config[key]):
            config[key] = sorted(config[key])
    path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
