"""Preference pairs from judged answers, as pure functions of rows: the prompt bank, the pairing rule, and
the rows TRL's DPO trainer reads.

The model answers each prompt of the bank ``n`` times; a judge scores every answer (its ``value``, higher
is better, whatever the judge). For each prompt the best answer is paired against the worst, as in
Self-Rewarding Language Models (Yuan et al. 2024): the highest and lowest scoring, the pair dropped when
their scores are equal. A prompt is not paired, and is counted by why, when:

- ``none_scored``: no answer has a score (every judgement failed to parse, the verifier raised);
- ``one_scored``: only one answer has a score;
- ``tie``: the best and the worst score the same (the judge cannot rank them);
- ``below_margin``: they differ by less than ``preferences.min_margin``.

Answers that ran out of ``preferences.max_new_tokens`` are judged and kept, but only paired with
``preferences.keep_truncated`` (a cut-off answer would teach the model to stop mid-sentence). With
``preferences.constraint`` or ``preferences.validator`` the answers are rejection sampled
(:func:`sample_answers`): one that never passed in ``preferences.max_tries`` attempts is kept with its last
attempt, judged and counted (``invalid_unpaired``), never paired. Among
answers with equal scores the one sampled first is taken, so a pairing is the same whatever order the
rows come in.

A pair is a row in TRL's conversational preference format: ``prompt`` (the system and user messages),
``chosen`` and ``rejected`` (one assistant message each), plus the two scores, their margin, which
samples they were and the judge's identity.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Iterable

from .chat import messages_for
from .errors import DataError
from .judges.health import judge_health, merge_health_counts

if TYPE_CHECKING:
    from .config import CurateConfig, PreferencesConfig

SKIPS = ("none_scored", "one_scored", "tie", "below_margin")
SAMPLING_KEYS = ("n", "temperature", "top_p", "max_new_tokens", "system_prompt")
CHECK_KEYS = {"constraint": None, "validator": None, "max_tries": 1}  # their defaults


def sampling_settings(cfg: "PreferencesConfig") -> dict:
    """What the answers' sampling depends on (the responses stage's key): the checks' keys only when set,
    so runs made before they existed keep their key."""
    return {**{key: getattr(cfg, key) for key in SAMPLING_KEYS},
            **{key: getattr(cfg, key) for key, default in CHECK_KEYS.items() if getattr(cfg, key) != default}}


def answer_constraint(cfg: "PreferencesConfig"):
    """The parsed ``preferences.constraint`` (sized for ``preferences.max_new_tokens``), or None."""
    if cfg.constraint is None:
        return None
    from .generation.constraints import parse_constraint

    return parse_constraint(cfg.constraint, cfg.max_new_tokens)


def checked(cfg: "PreferencesConfig") -> bool:
    """Whether the answers are checked (a constraint or a validator): their rows then say so."""
    return cfg.constraint is not None or cfg.validator is not None


def sample_answers(generate, prompts: list[str], part: list[dict], cfg: "PreferencesConfig", seed: int,
                   generator: str, validator=None, constraint=None) -> tuple[list[dict], list[dict]]:
    """(answer rows, the checks' stats of each of the ``n`` calls): ``cfg.n`` answers to each prompt of
    ``part`` (rendered as ``prompts``), answer i sampled with :func:`sample_seed` and, with a constraint
    or a validator, rejection sampled up to ``cfg.max_tries`` attempts. The rows of checked answers also
    hold ``tries`` and ``passed`` (the kept attempt passed) and the seed of the attempt kept."""
    from .generation.base import SamplingParams
    from .generation.rejection import generate_checked, retry_seed

    calls = []
    for i in range(cfg.n):
        params = SamplingParams(temperature=cfg.temperature, top_p=cfg.top_p, max_new_tokens=cfg.max_new_tokens,
                                seed=sample_seed(seed, i), constraint=constraint)
        calls.append(generate_checked(generate, prompts, params, validator, cfg.max_tries))
    rows = []
    for j, p in enumerate(part):
        for i, call in enumerate(calls):
            out, tries = call.texts[j], call.tries[j]
            row = {"response_id": response_id(p["prompt_id"], i), "prompt_id": p["prompt_id"],
                   "instruction": p["instruction"], "system": cfg.system_prompt, "sample": i, "response": str(out),
                   "truncated": getattr(out, "finish_reason", None) == "length", "generator": generator,
                   "temperature": cfg.temperature, "top_p": cfg.top_p, "max_new_tokens": cfg.max_new_tokens,
                   "seed": retry_seed(sample_seed(seed, i), tries - 1)}
            if checked(cfg):
                row.update(tries=tries, passed=call.passed[j])
            rows.append(row)
    return rows, [call.stats for call in calls]


def pairing_rule(min_margin: float, keep_truncated: bool) -> dict:
    """The rule :func:`pair_responses` applies, as plain data (the stats, the card and replay record it)."""
    return {"pair": "best_vs_worst", "score": "value", "min_margin": float(min_margin),
            "keep_truncated": bool(keep_truncated)}


def describe_pairing(rule: dict) -> str:
    """The pairing rule in words."""
    margin = f"at least {rule['min_margin']:g} apart" if rule["min_margin"] > 0 else "with different scores"
    cut = "" if rule["keep_truncated"] else "; answers cut off at the token limit were not paired"
    return f"the best and the worst judged answer to each prompt, {margin}, became a pair{cut}"


def judge_settings(curate: "CurateConfig", prefs: "PreferencesConfig") -> "CurateConfig":
    """What the preference judge reads: the curate section's judge settings (mode, system prompt, verifier,
    rubric, ...) with ``preferences.judge_kind`` and ``preferences.judge``."""
    return dataclasses.replace(curate, judge_kind=prefs.judge_kind, judge=prefs.judge)


def pair_responses(responses: list[dict], scores: list[dict], min_margin: float = 0.0,
                   keep_truncated: bool = False) -> tuple[list[dict], dict]:
    """(preference rows, counts) from the answers and their score rows (joined on ``response_id`` =
    ``candidate_id``). Counts: ``prompts``, ``pairs``, each of :data:`SKIPS`, ``truncated_unpaired`` and
    ``invalid_unpaired`` (answers that never passed the sampler's checks: judged, never paired)."""
    by_id = {s["candidate_id"]: s for s in scores}
    missing = [r["response_id"] for r in responses if r["response_id"] not in by_id]
    if missing:
        raise DataError(f"{len(missing)} answers have no score row (first: {missing[0]!r})")
    groups: dict[str, list[dict]] = {}
    for r in responses:
        groups.setdefault(r["prompt_id"], []).append(r)
    counts = {"prompts": len(groups), "pairs": 0, **dict.fromkeys(SKIPS, 0), "truncated_unpaired": 0,
              "invalid_unpaired": 0}
    pairs = []
    for prompt_id, answers in groups.items():
        scored = [a for a in answers if by_id[a["response_id"]]["value"] is not None]
        valid = [a for a in scored if a.get("passed") is not False]  # rows of unchecked answers have no flag
        counts["invalid_unpaired"] += len(scored) - len(valid)
        usable = [a for a in valid if keep_truncated or not a["truncated"]]
        counts["truncated_unpaired"] += len(valid) - len(usable)
        if len(usable) < 2:
            counts["none_scored" if not usable else "one_scored"] += 1
            continue
        value = lambda a: float(by_id[a["response_id"]]["value"])  # noqa: E731
        best = max(usable, key=lambda a: (value(a), -a["sample"]))
        worst = min(usable, key=lambda a: (value(a), a["sample"]))
        margin = value(best) - value(worst)
        if margin == 0:
            counts["tie"] += 1
        elif margin < min_margin:
            counts["below_margin"] += 1
        else:
            pairs.append(preference_row(best, worst, by_id[best["response_id"]], by_id[worst["response_id"]]))
    counts["pairs"] = len(pairs)
    return pairs, counts


def preference_row(best: dict, worst: dict, best_score: dict, worst_score: dict) -> dict:
    """One pair in TRL's conversational preference format, with its scores and provenance."""
    return {"prompt_id": best["prompt_id"], "prompt": messages_for(best["instruction"], system=best["system"]),
            "chosen": [{"role": "assistant", "content": best["response"]}],
            "rejected": [{"role": "assistant", "content": worst["response"]}],
            "chosen_score": float(best_score["value"]), "rejected_score": float(worst_score["value"]),
            "margin": float(best_score["value"]) - float(worst_score["value"]),
            "chosen_id": best["response_id"], "rejected_id": worst["response_id"],
            "judge": best_score["judge"], "judge_kind": best_score["judge_kind"], "generator": best["generator"]}


def dpo_rows(pairs: Iterable[dict]) -> list[dict]:
    """What the DPO trainer reads of each pair: ``prompt``, ``chosen``, ``rejected`` (plain message dicts)."""
    clean = lambda messages: [{"role": m["role"], "content": m["content"]} for m in messages]  # noqa: E731
    return [{"prompt": clean(p["prompt"]), "chosen": clean(p["chosen"]), "rejected": clean(p["rejected"])}
            for p in pairs]


def bank_from_rows(rows: Iterable[dict], id_field: str) -> tuple[list[dict], int]:
    """(prompts, duplicates): one prompt per distinct non-empty instruction, in order, ``prompt_id`` from
    ``id_field``; an instruction seen before is counted, not asked twice."""
    seen: set[str] = set()
    out, duplicates = [], 0
    for r in rows:
        text = (r.get("instruction") or "").strip()
        if not text:
            continue
        if text in seen:
            duplicates += 1
            continue
        seen.add(text)
        out.append({"prompt_id": str(r[id_field]), "instruction": text})
    return out, duplicates


def load_prompt_bank(source: str, where: str = "preferences.prompts") -> list[dict]:
    """The records of a prompt bank file or folder (JSON, JSONL, Parquet; ``datasets`` ids too), each with
    an ``instruction`` (an alpaca ``input`` is appended after a blank line); ``prompt_id`` is the record's
    place. A bank without a single prompt is an error, never an empty preference set."""
    from .data.records import iter_hub_records, iter_records

    local = Path(source).expanduser()
    records = iter_records(local) if local.exists() else iter_hub_records(source, None, "train", streaming=False)
    rows = []
    for i, (location, r) in enumerate(records):
        instruction = r.get("instruction")
        if not isinstance(instruction, str):
            raise DataError(f"{location}: a prompt of {where} {source!r} needs a string 'instruction' field, "
                            f"fields seen: {sorted(r)}")
        extra = r.get("input")
        if isinstance(extra, str) and extra.strip():
            instruction = f"{instruction.strip()}\n\n{extra.strip()}"
        rows.append({"prompt_id": f"{i:06d}", "instruction": instruction})
    if not any(r["instruction"].strip() for r in rows):
        raise DataError(f"{where} {source!r}: no prompt found ({len(rows)} records, none with a non-empty "
                        f"'instruction'); a prompt bank needs at least one")
    return rows


def responses_schema(with_checks: bool = False):
    """The answers' columns; checked answers (:func:`checked`) also have ``tries`` and ``passed``."""
    import pyarrow as pa

    fields = [("response_id", pa.string()), ("prompt_id", pa.string()), ("instruction", pa.string()),
              ("system", pa.string()), ("sample", pa.int64()), ("response", pa.string()),
              ("truncated", pa.bool_()), ("generator", pa.string()), ("temperature", pa.float64()),
              ("top_p", pa.float64()), ("max_new_tokens", pa.int64()), ("seed", pa.int64())]
    if with_checks:
        fields += [("tries", pa.int64()), ("passed", pa.bool_())]
    return pa.schema(fields)


def preferences_schema():
    import pyarrow as pa

    message = pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())]))
    return pa.schema([("prompt_id", pa.string()), ("prompt", message), ("chosen", message), ("rejected", message),
                      ("chosen_score", pa.float64()), ("rejected_score", pa.float64()), ("margin", pa.float64()),
                      ("chosen_id", pa.string()), ("rejected_id", pa.string()), ("judge", pa.string()),
                      ("judge_kind", pa.string()), ("generator", pa.string())])


def sample_seed(seed: int, sample: int) -> int:
    """The sampling seed of answer ``sample`` (0..n-1) to every prompt: the generators derive each prompt's
    own seed from it and the prompt (:func:`humpback.generation.base.prompt_seed`), so answer i to a prompt
    is the same whatever batch, shard or worker drew it, and the n answers differ."""
    return seed + 1_000_003 * (sample + 1)


def response_id(prompt_id: str, sample: int) -> str:
    return f"{prompt_id}#{sample}"


def merge_response_stats(shards: list[dict]) -> dict:
    """The shards' counts summed; the mean judge value over every scored answer."""
    failures: dict[str, int] = {}
    for s in shards:
        for kind, count in s["failures"].items():
            failures[kind] = failures.get(kind, 0) + count
    value_n = sum(s["value_n"] for s in shards)
    responses = sum(s["responses"] for s in shards)
    return {"prompts": sum(s["prompts"] for s in shards), "responses": responses,
            "truncated": sum(s["truncated"] for s in shards), "failures": failures,
            "response_chars_mean": sum(s["response_chars"] for s in shards) / responses if responses else None,
            "value_mean": sum(s["value_sum"] for s in shards) / value_n if value_n else None,
            "health": judge_health(merge_health_counts([s["health_counts"] for s in shards])),
            "served_by": sorted({s["served_by"] for s in shards if s.get("served_by")})}
