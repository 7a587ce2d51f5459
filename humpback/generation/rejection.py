"""Generation checked against its format, with rejection sampling: generate, validate, sample again the
rows that failed, up to ``max_tries`` attempts.

An answer passes when it obeys the step's constraint (:meth:`Constraint.check`, whatever the backend:
a server that ignored the structured-output field is caught here) and the recipe's validator, a Python
function ``package.module:function`` called on the answer's text that returns true to accept (user code
the recipe trusts, as the verifier judge's). A row that never passes is **kept with its last attempt**
and counted (``never_passed``); its ``passed`` flag says so. Each retry samples with its own seed
(:func:`retry_seed`), so a resumed or sharded run draws the same attempts.
"""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass
from typing import Callable, Optional, Sequence

from .base import SamplingParams
from .constraints import Constraint

STAT_COUNTS = ("rows", "tries", "passed_attempts", "accepted", "never_passed", "violations", "validator_rejections",
               "validator_errors")


@dataclass
class Checked:
    """The answers of one call (the last attempt per row) and what the checks found."""

    texts: list[str]
    tries: list[int]  # attempts per row, >= 1
    passed: list[bool]  # the kept attempt passed
    stats: dict


def retry_seed(seed: int, attempt: int) -> int:
    """The sampling seed of attempt ``attempt`` (0: the recipe's own ``seed``)."""
    if attempt == 0:
        return seed
    h = hashlib.blake2b(f"{seed}/retry/{attempt}".encode(), digest_size=8)
    return int.from_bytes(h.digest(), "little") & (2**62 - 1)


def generate_checked(generate: Callable[[Sequence[str], SamplingParams], list[str]], prompts: Sequence[str],
                     params: SamplingParams, validator: Optional[Callable[[str], object]] = None,
                     max_tries: int = 1) -> Checked:
    """``generate(prompts, params)`` with every answer checked against ``params.constraint`` and
    ``validator``; the rows that fail are generated again (a fresh seed each time) until they pass or
    have had ``max_tries`` attempts. With neither a constraint nor a validator: one plain call."""
    if max_tries < 1:
        raise ValueError(f"max_tries must be >= 1, got {max_tries}")
    n = len(prompts)
    texts: list[str] = [""] * n
    tries, passed = [0] * n, [False] * n
    counts = dict.fromkeys(STAT_COUNTS, 0)
    counts["rows"] = n
    pending = list(range(n))
    checking = params.constraint is not None or validator is not None
    for attempt in range(max_tries if checking else 1):
        if not pending:
            break
        out = generate([prompts[i] for i in pending],
                       dataclasses.replace(params, seed=retry_seed(params.seed, attempt)))
        failed = []
        for i, text in zip(pending, out, strict=True):
            texts[i], tries[i] = text, tries[i] + 1
            ok = _passes(_body(text, params.stop), params.constraint, validator, counts)
            passed[i] = ok
            if not ok:
                failed.append(i)
        pending = failed
    counts["tries"] = sum(tries)
    counts["accepted"] = sum(passed) if checking else n
    counts["never_passed"] = n - counts["accepted"]
    if not checking:
        counts["passed_attempts"] = n
        passed = [True] * n
    return Checked(texts, tries, passed, counts)


def _body(text: str, stop: Sequence[str]) -> str:
    """The answer without the stop string it ended at (a delimiter, not part of the format)."""
    for s in stop:
        if text.endswith(s):
            return text[: len(text) - len(s)]
    return text


def _passes(text: str, constraint: Optional[Constraint], validator, counts: dict) -> bool:
    if constraint is not None and not constraint.check(text):
        counts["violations"] += 1
        return False
    if validator is not None:
        try:
            ok = bool(validator(str(text)))
        except Exception:  # noqa: BLE001 - user code: a failure rejects this attempt, counted
            counts["validator_errors"] += 1
            return False
        if not ok:
            counts["validator_rejections"] += 1
            return False
    counts["passed_attempts"] += 1
    return True


def merge_checked(parts: Sequence[Optional[dict]], constraint: Optional[dict] = None,
                  validator: Optional[dict] = None, max_tries: int = 1) -> dict:
    """The stage's record of its checks: the shards' counts summed, the acceptance rate (attempts that
    passed / attempts), and what was checked (the constraint's and validator's identities)."""
    out = {k: sum((p or {}).get(k, 0) for p in parts) for k in STAT_COUNTS}
    out["acceptance_rate"] = out["passed_attempts"] / out["tries"] if out["tries"] else None
    out.update(constraint=constraint, validator=validator, max_tries=max_tries)
    return out


def check_identity(constraint: Optional[Constraint], validator: Optional[str], max_tries: int) -> dict:
    """What a step checks, as :func:`merge_checked` takes it and a stage key records it (the constraint's and
    the validator's identities, max_tries); {} when the step checks nothing."""
    if constraint is None and validator is None:
        return {}
    from ..judges.verifier import verifier_identity

    return {"constraint": constraint.identity() if constraint is not None else None,
            "validator": verifier_identity(validator) if validator else None, "max_tries": max_tries}


def describe_checked(step: str, stats: dict, backend: str) -> list[str]:
    """Warnings for a stage's checks: answers that broke the constraint (a server that ignored it, or
    answers cut by the token limit), rows kept though they never passed."""
    notes = []
    if stats.get("constraint") and stats["violations"]:
        why = ("the server may have ignored the structured-output request" if backend in ("openai", "vllm")
               else "cut by the token limit, or bytes that do not decode")
        notes.append(f"{step}: {stats['violations']} of {stats['tries']} answers broke the constraint "
                     f"{stats['constraint']['spec']!r} ({why}); checked, not trusted")
    if stats["never_passed"]:
        notes.append(f"{step}: {stats['never_passed']} of {stats['rows']} rows never passed in "
                     f"{stats['max_tries']} tries; kept with their last attempt")
    return notes


def load_validator(path: str, key: str) -> Callable[[str], object]:
    """The function ``package.module:function`` names (imported: user code the recipe trusts, loaded as
    the verifier judge's is)."""
    from ..judges.verifier import load_verifier

    return load_verifier(path, key)
