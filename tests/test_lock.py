"""The lock file that `make setup` installs through (requirements/lock.txt, written by scripts/lock.py)
agrees with pyproject.toml: every dependency is pinned, to a version its bounds allow."""

import importlib.util
from pathlib import Path

import pytest
from packaging.markers import default_environment
from packaging.utils import canonicalize_name

ROOT = Path(__file__).parent.parent
spec = importlib.util.spec_from_file_location("lock_script", ROOT / "scripts" / "lock.py")
lock = importlib.util.module_from_spec(spec)
spec.loader.exec_module(lock)


def test_every_dependency_is_pinned_within_its_bounds():
    pytest.importorskip("tomllib", reason="scripts/lock.py reads pyproject.toml with tomllib (Python 3.11+)")
    pins = lock.read_lock(lock.LOCK)
    env = default_environment()
    checked = []
    for req, group in lock.project_requirements(None):
        if req.marker is not None and not req.marker.evaluate({**env, "extra": ""}):
            continue
        name = canonicalize_name(req.name)
        if name in lock.NOT_LOCKED:
            continue
        assert name in pins, f"{req} ({group}) is not in {lock.LOCK}: run make lock"
        assert req.specifier.contains(pins[name], prereleases=True), f"{name}=={pins[name]} is outside {req} ({group})"
        checked.append(name)
    assert {"transformers", "trl", "peft", "datasets", "accelerate", "numpy"} <= set(checked)
    assert "torch" not in pins  # TORCH_SPEC picks the build


def test_read_lock_refuses_what_is_not_a_pin(tmp_path):
    bad = tmp_path / "lock.txt"
    bad.write_text("# a comment\nnumpy==2.4.6\ntransformers>=5\n")
    with pytest.raises(SystemExit, match=r"lock.txt:3: 'transformers>=5' is not a pin"):
        lock.read_lock(bad)
