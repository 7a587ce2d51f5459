"""Shared fixtures: a session cache folder (tests never touch ~/.cache) and the builtin tiny assets."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from tiny_runs import TINY_RUNS, recipe_of


@pytest.fixture(scope="session", autouse=True)
def humpback_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Point HUMPBACK_CACHE at a session tmp folder for the whole test session."""
    path = tmp_path_factory.mktemp("humpback-cache")
    mp = pytest.MonkeyPatch()
    mp.setenv("HUMPBACK_CACHE", str(path))
    yield path
    mp.undo()


@pytest.fixture(scope="session")
def tiny_model_dir(humpback_cache: Path) -> Path:
    from humpback.tiny import materialize

    return materialize("tiny-llama")


@pytest.fixture(scope="session")
def docs_corpus_path(humpback_cache: Path) -> Path:
    from humpback.tiny import materialize

    return materialize("python-docs")


@pytest.fixture(scope="session")
def docs_seed_path(humpback_cache: Path) -> Path:
    from humpback.tiny import materialize

    return materialize("python-docs-seed")


@pytest.fixture(autouse=True)
def hf_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep `datasets` caches and locks inside each test's folder, never in ~/.cache."""
    import datasets

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf-cache")


# The tiny run the report, inspect and review tests read (one per session): the whole loop on the tiny
# recipe, made by the `humpback` command in a subprocess that also prints which wandb modules it
# imported (none: tracking is off). 12 segments: the review page's browser test reviews 10 pairs.
TINY_RECIPE = Path(__file__).parent.parent / "recipes" / "tiny-cpu.yaml"
TINY_FAST = ["corpus.max_segments=12", "train.max_steps=2", "train.logging_steps=1", "train.max_length=256",
             "augment.max_new_tokens=8", "generation.batch_size=8", "curate.select=threshold",
             "curate.select_on=argmax", "curate.threshold=1"]


@pytest.fixture(scope="session")
def tiny_cli_run(tmp_path_factory: pytest.TempPathFactory, humpback_cache: Path) -> tuple[Path, str, str]:
    """(run folder, stdout, stderr) of ``humpback run recipes/tiny-cpu.yaml --quiet`` with TINY_FAST."""
    import os
    import subprocess
    import sys

    run_dir = tmp_path_factory.mktemp("run") / "tiny"
    code = ("import json, sys\nfrom humpback import cli\n"
            f"rc = cli.main(['run', {str(TINY_RECIPE)!r}, '--run-dir', {str(run_dir)!r}, '--quiet', *{TINY_FAST!r}])\n"
            "print(json.dumps([m for m in sys.modules if m.split('.')[0] == 'wandb']))\n"
            "sys.exit(rc)\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600,
                          env=os.environ.copy())
    assert proc.returncode == 0, proc.stderr[-3000:]
    return run_dir, proc.stdout, proc.stderr


# The controlled world's recipe (recipes/world-cpu.yaml: a likelihood judge, a labelled dev set, exact-match
# eval, no held-out loss, no pairwise judging) on the tiny random Llama instead of the world's pretrained
# base model (whose build takes minutes): the shape of `make demo`'s run in under a minute. Its numbers
# mean nothing; the report tests read which figures it has. One per session.
WORLD_RECIPE = Path(__file__).parent.parent / "recipes" / "world-cpu.yaml"
WORLD_FAST = ["base_model=builtin:tiny-llama", "corpus.max_segments=48", "eval.max_prompts=16",
              "eval.max_new_tokens=12", "train.max_steps=2", "train.logging_steps=1", "train.max_length=128",
              "augment.max_new_tokens=8", "augment.keep_truncated=true", "generation.batch_size=16"]


@pytest.fixture(scope="session")
def tiny_world_run(tmp_path_factory: pytest.TempPathFactory, humpback_cache: Path) -> Path:
    """The run folder of ``humpback run recipes/world-cpu.yaml --quiet`` with WORLD_FAST."""
    import os
    import subprocess
    import sys

    run_dir = tmp_path_factory.mktemp("run") / "world"
    code = ("import sys\nfrom humpback import cli\n"
            f"sys.exit(cli.main(['run', {str(WORLD_RECIPE)!r}, '--run-dir', {str(run_dir)!r}, '--quiet', "
            f"*{WORLD_FAST!r}]))\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600,
                          env=os.environ.copy())
    assert proc.returncode == 0, proc.stderr[-3000:]
    return run_dir


# Named tiny runs that test modules share: the recipe tiny_runs.recipe_of(name) (the tiny recipe unless named
# otherwise) with the overrides of tiny_runs.TINY_RUNS[name], run once per session in this process
# (loop.open_run) the first time a test asks for it by name, e.g. ``tiny_run("sharded").run_dir``. The folders
# are shared: a test that changes a run (a rerun, a rejudge, a damaged file) copies it first (shutil.copytree).
# Modules that need a run of their own (killed midway, under Ray, two settings compared) keep it and say why.


@dataclass
class TinyRun:
    """A finished run of the tiny recipe: its folder, the loop's summaries and its console lines."""

    run_dir: Path
    summaries: list
    lines: list[str]
    overrides: list[str]


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory: pytest.TempPathFactory, humpback_cache: Path) -> Callable[[str], TinyRun]:
    """``tiny_run(name)``: the run of TINY_RUNS[name], made the first time it is asked for, then cached."""
    from humpback.config import load_config
    from humpback.loop import open_run, run

    runs: dict[str, TinyRun] = {}

    def get(name: str) -> TinyRun:
        if name not in runs:
            overrides = list(TINY_RUNS[name])
            run_dir = tmp_path_factory.mktemp(f"tiny-{name}") / "run"
            lines: list[str] = []
            recipe = TINY_RECIPE.parent / recipe_of(name)
            summaries = run(open_run(load_config(recipe, overrides), run_dir, log=lines.append))
            runs[name] = TinyRun(run_dir, summaries, lines, overrides)
        return runs[name]

    return get
