"""The verifier judge: a Python function the recipe names checks each pair.

``curate.verifier: package.module:function`` is **user code that the recipe trusts**: humpback imports
the module and calls ``function(row)`` on every pair, in this process, with the rights of the user who
runs it. Name only code you would run yourself. ``row`` is a dict with ``candidate_id``,
``instruction`` and ``output``; the function returns a number (higher is better; ``True``/``False``
count as 1/0), e.g. 1.0 when a checker accepts the answer. This is the formal-verification kind of
synthetic data of the RetroInstruct guide: where correctness can be computed, compute it.

An exception inside the function, or a return value that is not a finite number, fails that row
only: it is counted, with the message (``parse_status`` ``error`` or ``bad_value``; ``raw`` holds the
exception's type and message), and the stage goes on.
"""

from __future__ import annotations

import importlib
import math
import numbers
import re
from typing import Callable

from ..errors import ConfigError
from . import CurationJudge, score_row

_PATH = re.compile(r"^[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*:[A-Za-z_][\w]*$")


def check_path(path: str, where: str = "curate.verifier") -> None:
    """``package.module:function``, or a ConfigError saying so."""
    if not isinstance(path, str) or not _PATH.match(path):
        raise ConfigError(f"'{where}' must name a function as package.module:function, got {path!r}")


def load_verifier(path: str, key: str = "curate.verifier") -> Callable:
    """The function ``package.module:function`` names at recipe key ``key`` (imported: this runs the
    module's code). The verifier judge and the generation steps' validators load theirs here."""
    check_path(path, key)
    module_name, func_name = path.split(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise ConfigError(f"{key} {path!r}: cannot import {module_name!r}: {e}") from None
    fn = getattr(module, func_name, None)
    if not callable(fn):
        raise ConfigError(f"{key} {path!r}: module {module_name!r} has no function {func_name!r}")
    return fn


def verifier_identity(path: str) -> dict:
    """What identifies the verifier in the stage key: its name and its module's source, so that an
    edited verifier re-scores."""
    import hashlib
    import inspect

    module = importlib.import_module(path.split(":")[0])
    try:
        source = inspect.getsource(module)
    except (OSError, TypeError):
        source = ""
    return {"verifier": path, "source": hashlib.sha256(source.encode()).hexdigest()[:16]}


def verify_rows(rows: list[dict], fn: Callable[[dict], object], judge: str) -> list[dict]:
    """One score row per row; a failure inside ``fn`` is that row's status and message."""
    out = []
    for r in rows:
        arg = {"candidate_id": r["candidate_id"], "instruction": r["instruction"], "output": r["output"]}
        try:
            result = fn(arg)
        except Exception as e:  # noqa: BLE001 - user code: every failure is data
            out.append(score_row(r["candidate_id"], "verifier", "verifier", judge, value=None,
                                 raw=f"{type(e).__name__}: {e}", parse_status="error"))
            continue
        value = _number(result)
        if value is None:
            out.append(score_row(r["candidate_id"], "verifier", "verifier", judge, value=None,
                                 raw=f"returned {result!r:.200}, not a number", parse_status="bad_value"))
        else:
            out.append(score_row(r["candidate_id"], "verifier", "verifier", judge, value=value, raw=repr(result)))
    return out


def _number(result: object) -> float | None:
    if isinstance(result, bool):
        return float(result)
    if isinstance(result, numbers.Real) and math.isfinite(float(result)):
        return float(result)
    return None


def score(rows: list[dict], judge: CurationJudge) -> list[dict]:
    return verify_rows(rows, load_verifier(judge.cfg.verifier), judge.name)
