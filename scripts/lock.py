"""The lock file: the exact versions of humpback's dependencies, taken from a working environment, which
`make setup` installs through pip's constraints (``pip install -c requirements/lock.txt``).

    python scripts/lock.py                     # write requirements/lock.txt from this Python's packages
    python scripts/lock.py --check             # does this Python have the locked versions? (exit 1 if not)
    make lock                                  # the first, with the project's venv (VENV=... picks another)

What is locked: every package that installing humpback with its optional groups (``--groups``, by
default all but vLLM's) needs on this platform, found by walking the installed packages' own
requirements from pyproject.toml's, with the version installed here. torch is not locked, nor what
only torch needs (the CUDA libraries, triton, sympy): the Makefile's TORCH_SPEC picks the build. A
constraints file may name a package nothing requires (pip then ignores it): ``--also`` adds such names.
"""

from __future__ import annotations

import argparse
import platform
import sys
from importlib import metadata
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent
LOCK = ROOT / "requirements" / "lock.txt"
NOT_LOCKED = {"torch", "humpback"}  # TORCH_SPEC picks torch; humpback is the project itself
SKIPPED_GROUPS = {"vllm"}  # GPU only, far larger than the rest, not installed by `make setup`


def project_requirements(groups: list[str] | None) -> list[tuple[Requirement, str]]:
    """pyproject.toml's dependencies and those of its optional ``groups`` (None: all but
    :data:`SKIPPED_GROUPS`), each with the group it comes from."""
    try:
        import tomllib
    except ModuleNotFoundError:
        sys.exit("lock.py: needs Python 3.11 or later (tomllib) to read pyproject.toml")
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    optional = project.get("optional-dependencies", {})
    unknown = sorted(set(groups or []) - set(optional))
    if unknown:
        sys.exit(f"lock.py: pyproject.toml has no optional group {', '.join(unknown)} (it has {', '.join(optional)})")
    chosen = [g for g in optional if g not in SKIPPED_GROUPS] if groups is None else groups
    out = [(Requirement(r), "dependencies") for r in project["dependencies"]]
    for group in chosen:
        out += [(Requirement(r), group) for r in optional[group]]
    return out


def closure(roots: list[tuple[Requirement, str]]) -> tuple[dict[str, str], list[str]]:
    """The installed version of every package the ``roots`` need here, through their own requirements
    (markers evaluated for this Python and platform, extras followed); and what is required but not
    installed."""
    env = default_environment()
    versions: dict[str, str] = {}
    extras_done: set[tuple[str, str]] = set()
    missing: list[str] = []
    todo = [(req, "") for req, _ in roots]
    while todo:
        req, extra = todo.pop()
        if req.marker is not None and not req.marker.evaluate({**env, "extra": extra}):
            continue
        name = canonicalize_name(req.name)
        if name in NOT_LOCKED:
            continue
        try:
            dist = metadata.distribution(req.name)
        except metadata.PackageNotFoundError:
            missing.append(str(req))
            continue
        wanted = {""} | {canonicalize_name(e) for e in req.extras}
        new = [e for e in sorted(wanted) if (name, e) not in extras_done]
        if name not in versions:
            versions[name] = dist.version
        for e in new:
            extras_done.add((name, e))
            todo += [(Requirement(r), e) for r in dist.requires or []]
    return versions, missing


def write_lock(path: Path, versions: dict[str, str], also: list[str], groups: list[str] | None) -> None:
    for name in also:
        try:
            versions.setdefault(canonicalize_name(name), metadata.version(name))
        except metadata.PackageNotFoundError:
            sys.exit(f"lock.py: --also {name}: not installed in {sys.prefix}")
    torch = _version("torch") or "not installed"
    header = [
        "# The versions humpback's figures were measured with: pip constraints that `make setup` installs through",
        "# (pip install -c requirements/lock.txt). Written by `make lock` (python scripts/lock.py) from an",
        "# environment that ran the suite; do not edit by hand: change pyproject.toml or the environment, then",
        "# run `make lock` again. torch is not here: the Makefile's TORCH_SPEC picks its build (CPU or CUDA).",
        f"# Made with Python {platform.python_version()} on {platform.system()} {platform.machine()} "
        f"(torch there: {torch}); "
        f"groups: {', '.join(groups) if groups else 'all but ' + ', '.join(sorted(SKIPPED_GROUPS))}.",
    ]
    lines = [f"{name}=={version}" for name, version in sorted(versions.items())]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(header + lines) + "\n")


def read_lock(path: Path) -> dict[str, str]:
    pins = {}
    for n, line in enumerate(path.read_text().splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        req = Requirement(line)
        spec = list(req.specifier)
        if len(spec) != 1 or spec[0].operator != "==":
            sys.exit(f"lock.py: {path}:{n}: {line!r} is not a pin (name==version)")
        pins[canonicalize_name(req.name)] = spec[0].version
    return pins


def check(path: Path) -> int:
    """0 when every locked package installed here has its locked version, else 1 with the differences.
    A locked package that is not installed is named, not counted: pip applies a constraint only to
    what something requires (``--also`` pins, an optional group this environment did not install)."""
    pins = read_lock(path)
    differ, absent = [], []
    for name, want in sorted(pins.items()):
        have = _version(name)
        if have is None:
            absent.append(name)
        elif have != want:
            differ.append(f"  {name}: locked {want}, installed {have}")
    if absent:
        print(f"lock.py: locked but not installed here (nothing here requires them): {', '.join(absent)}")
    if differ:
        print(f"lock.py: {len(differ)} package(s) differ from {path}:", *differ, sep="\n")
        return 1
    print(f"lock.py: the {len(pins) - len(absent)} locked packages installed here have their locked versions")
    return 0


def _version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--output", type=Path, default=LOCK, help="the lock file (default requirements/lock.txt)")
    p.add_argument("--check", action="store_true", help="compare this Python's packages with the lock instead")
    p.add_argument("--groups", help="optional groups to lock, comma-separated (default: all but vllm)")
    p.add_argument("--also", action="append", default=[], help="a further installed package to pin (repeatable)")
    args = p.parse_args(argv)
    if args.check:
        return check(args.output)
    groups = [g.strip() for g in args.groups.split(",") if g.strip()] if args.groups else None
    versions, missing = closure(project_requirements(groups))
    if missing:
        print(f"lock.py: not installed in {sys.prefix}, so not locked: {', '.join(sorted(set(missing)))}; "
              "install the project first (make setup)", file=sys.stderr)
        return 1
    write_lock(args.output, versions, args.also, groups)
    print(f"lock.py: wrote {len(versions)} pins to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
