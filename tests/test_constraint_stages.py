"""A constraint and a validator on the augment stage of a tiny run: every kept instruction obeys, the
rows that never passed are rejected as ``invalid`` and counted, the checks are in the stage's stats,
and changing the constraint re-runs the stage."""

from __future__ import annotations

import shutil
from pathlib import Path

from humpback.config import load_config
from humpback.loop import open_run, prepare
from humpback.stages.augment import augment_stage
from humpback.stages.finetune import backward_stage
from humpback.store import read_table
from tiny_runs import TINY_RUNS

TINY = Path(__file__).parent.parent / "recipes" / "tiny-cpu.yaml"
# conftest's shared run "sharded" (tests/tiny_runs.py), copied: its augment stage is rerun under other checks.
FAST = TINY_RUNS["sharded"]


VALIDATOR = '''
def no_e_first(text):
    """Rejects an instruction whose first non-space character is 'e' or 'E'."""
    return not text.strip().lower().startswith("e")
'''


def test_augment_with_a_constraint_and_a_validator(tiny_run, tmp_path, monkeypatch):
    (tmp_path / "tiny_validators.py").write_text(VALIDATOR)
    monkeypatch.syspath_prepend(str(tmp_path))
    checks = ["augment.constraint=builtin:instruction-line", "augment.validator=tiny_validators:no_e_first",
              "augment.max_tries=3"]
    shutil.copytree(tiny_run("sharded").run_dir, tmp_path / "run")  # its backward model; the shared run stays
    rt = open_run(load_config(TINY, FAST + checks), tmp_path / "run", log=lambda _: None)
    prepare(rt)
    assert not backward_stage(rt).ran  # the shared run's backward model writes the instructions
    result = augment_stage(rt)
    stats = result.stats["checks"]
    assert result.ran and stats["constraint"]["spec"] == "builtin:instruction-line" and stats["max_tries"] == 3
    assert stats["validator"]["verifier"] == "tiny_validators:no_e_first"
    assert stats["rows"] == result.stats["segments"] == 12 and stats["violations"] == 0
    assert stats["tries"] == 12 + stats["validator_rejections"]  # each failed attempt is retried, up to 3
    candidates = read_table(rt.store.path("augment/candidates"))
    rejected = read_table(rt.store.path("augment/rejected"))
    assert all("\n" not in r["raw_generation"] and r["raw_generation"].strip() for r in candidates + rejected)
    assert all(not r["raw_generation"].strip().lower().startswith("e") for r in candidates)
    invalid = [r for r in rejected if r["reason"] == "invalid"]
    assert len(invalid) == result.stats["rejected"]["invalid"] <= stats["never_passed"]
    assert len(candidates) + len(rejected) == 12  # nothing dropped
    rt.close()

    rt = open_run(load_config(TINY, FAST + checks), tmp_path / "run", log=lambda _: None)
    assert not augment_stage(rt).ran  # the same checks: done
    rt.close()
    rt = open_run(load_config(TINY, FAST + ["augment.constraint=regex:[A-Z][^\\n]*"]), tmp_path / "run",
                  log=lambda _: None)
    again = augment_stage(rt)
    assert again.ran and again.stats["checks"]["constraint"]["spec"] == "regex:[A-Z][^\\n]*"
    assert all(r["raw_generation"][:1].isupper() for r in read_table(rt.store.path("augment/candidates")))
    rt.close()
