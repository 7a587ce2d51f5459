"""The figures of one iteration, from the stage statistics the manifest holds: the one place that
``iter_K/stats.json``, the summary, the report and the trackers' per-iteration rows read."""

from __future__ import annotations

from typing import Optional, Sequence

from .. import layout
from ..scoring import SCORES, describe_rule, short_rule


def iteration_figures(stages: dict, k: int, candidates: Optional[int] = None) -> dict:
    """Iteration K as flat figures (numbers, plus ``judge`` and ``selection`` in words), from the
    finished stages in ``stages`` (the manifest's). ``candidates``: the pool size where no augment
    stage of this run recorded it (a replay imports its pool)."""
    it = layout.iteration(k)
    done = lambda name: stages.get(name, {}).get("stats") if stages.get(name, {}).get("status") == "done" else None  # noqa: E731
    funnel = (done("segments") or {}).get("funnel") or {}
    augment = done("augment") or {}
    score, select, train = done(it.stage("score")), done(it.stage("select")), done(it.stage("train"))
    pool = augment.get("candidates", candidates)
    f: dict = {"iteration": k}
    if funnel:
        f.update({"funnel/documents": funnel.get("documents"), "funnel/sections": funnel.get("sections"),
                  "funnel/segments": funnel.get("kept")})
    tasks = done("tasks")  # augment.source self_instruct
    if tasks:
        f.update({"funnel/seed_tasks": tasks.get("seed_tasks"), "funnel/task_prompts": tasks.get("prompts"),
                  "funnel/tasks_written": tasks.get("generated"), "funnel/tasks": tasks.get("tasks")})
        if augment:
            f.update({"funnel/tasks_with_instances": augment.get("tasks_with_instances"),
                      "funnel/instances": augment.get("instances_parsed")})
    if augment and not tasks:
        f["segments"] = augment.get("segments")
    if pool is not None:
        f["candidates"] = f["funnel/candidates"] = pool
    if score is not None:
        f["judge"] = score.get("judge")
        f["judge_kind"] = score.get("judge_kind", "rating")
        f["scored"] = score["scored"]
        f["parse_failures"] = score["parse_failures"]
        f["parse_failure_rate"] = score["parse_failure_rate"]
        for s in SCORES:
            f[f"score_count/{s}"] = score["histogram"][str(s)]
        f["score_count/none"] = score["histogram"]["none"]
        f["expected_score_mean"] = score.get("expected_score_mean")
        f["value_mean"] = score.get("value_mean")
        f.update(health_figures(score.get("health")))
    if select is not None:
        f["curated"] = f["funnel/curated"] = select["curated"]
        f["acceptance_rate"] = select["acceptance_rate"]
        f["threshold"] = select.get("threshold")
        f["selection"] = short_rule(select["rule"])
        f["selection_rule"] = describe_rule(select["rule"])
        f["instruction_chars_median"] = select.get("instruction_chars_median")
        f["output_chars_median"] = select.get("output_chars_median")
        dev = select.get("dev")
        if dev:
            f.update({f"dev/{name}": dev[name] for name in ("precision", "recall", "f1", "pairs", "positives")})
    dev_auc = (done(it.stage("dev")) or {}).get("auc")
    if dev_auc:
        f["dev/auc"] = dev_auc["auc"]
    if train is not None:
        f["train_examples"] = train.get("num_examples")
        f["train_steps"] = train.get("steps")
        f["train_loss"] = train.get("train_loss")
    f.update(preference_figures(done(it.stage("responses")), done(it.stage("preferences")), done(it.stage("dpo"))))
    return f


def preference_figures(responses: Optional[dict], pairs: Optional[dict], dpo: Optional[dict]) -> dict:
    """train.objective dpo: the answers, the pairs and the DPO of an iteration, as figures (``preferences/*``,
    ``dpo/*``); empty for an SFT iteration."""
    f: dict = {}
    if responses is not None:
        f.update({"preferences/prompts": responses.get("prompts"), "preferences/responses": responses.get("responses"),
                  "preferences/truncated": responses.get("truncated"), "preferences/judge": responses.get("judge"),
                  "preferences/judge_kind": responses.get("judge_kind"),
                  "preferences/value_mean": responses.get("value_mean")})
    if pairs is not None:
        f.update({f"preferences/{k}": pairs.get(k) for k in ("pairs", "pair_rate", "tie", "below_margin",
                                                             "none_scored",
                                                             "one_scored", "margin_mean")})
    if dpo is not None:
        f.update({"dpo/pairs": dpo.get("num_examples"), "dpo/steps": dpo.get("steps"),
                  "dpo/loss": dpo.get("train_loss"),
                  "dpo/reward_accuracy": dpo.get("final_accuracy"), "dpo/reward_margin": dpo.get("final_margin")})
    return f


def health_figures(health: Optional[dict]) -> dict:
    """A scoring's judge health as figures: ``judge_health/<figure>`` numbers (the trackers plot them),
    ``judge_health/warnings`` their count, and ``judge_warnings`` the warning lines themselves."""
    if not health:
        return {}
    f = {f"judge_health/{name}": health.get(name)
         for name in ("choice_mass_mean", "top_score_share", "parse_failure_rate")}
    f["judge_health/warnings"] = len(health.get("warnings") or [])
    f["judge_warnings"] = list(health.get("warnings") or [])
    return f


def iteration_stats(stages: dict, k: int) -> dict:
    """``iter_K/stats.json``: the figures, plus the score histogram, the selection rule and the loss curve."""
    it = layout.iteration(k)
    stats = iteration_figures(stages, k)
    score = stages.get(it.stage("score"), {}).get("stats", {})
    select = stages.get(it.stage("select"), {}).get("stats", {})
    train = stages.get(it.stage("train"), {}).get("stats", {})
    stats.update(score_histogram=score.get("histogram"), rule=select.get("rule"), losses=train.get("losses"),
                 judge_health=score.get("health"), dev=select.get("dev"), judges=judge_records(stages, k))
    dpo = stages.get(it.stage("dpo"), {}).get("stats")
    if dpo:  # train.objective dpo: the DPO curve (loss, reward margin and accuracy per logging step)
        stats.update(dpo_curve=dpo.get("curve"),
                     pairing_rule=stages.get(it.stage("preferences"), {}).get("stats", {}).get("rule"))
    return stats


def judge_records(stages: dict, k: int) -> list[dict]:
    """Iteration K's judges side by side: the one that selects, then each of ``curate.compare_judges``,
    with its health, its AUC on the dev set (when there is one) and, for a compared judge, its rank
    agreement with the selecting judge and how many of the pairs that judge keeps it would keep too."""
    it = layout.iteration(k)
    stats = lambda name: stages.get(name, {}).get("stats") or {}  # noqa: E731
    score, dev = stats(it.stage("score")), stats(it.stage("dev"))
    if not score:
        return []
    out = [{"judge_kind": score.get("judge_kind", "rating"), "role": "selects", "health": score.get("health"),
            "value_mean": score.get("value_mean"), "expected_score_mean": score.get("expected_score_mean"),
            "dev_auc": dev.get("auc"), "versus": None}]
    compare, compare_dev = stats(it.stage("compare")), stats(it.stage("compare_dev"))
    for kind, c in compare.items():
        if not isinstance(c, dict) or "versus" not in c:
            continue
        out.append({"judge_kind": kind, "role": "compared", "health": c.get("health"),
                    "value_mean": c.get("value_mean"), "expected_score_mean": c.get("expected_score_mean"),
                    "dev_auc": (compare_dev.get(kind) or {}).get("auc"), "versus": c["versus"]})
    return out


# --------------------------------------------------------------------------- evaluation

# The keys of every model's eval stats.json (iter_K/eval/, eval/base/, eval/m0/): always all present,
# None where not measured. docs/evaluation.md documents them.
EVAL_KEYS = ("model", "step", "generator", "heldout_loss", "heldout_pairs", "heldout_tokens", "answers",
             "answer_chars_mean", "answer_chars_median", "answer_tokens_mean", "empty_answers", "length_ratio",
             "length_drift", "reference", "judge", "judge_mode", "win_rate", "win_rate_ci", "lc_win_rate",
             "position_consistency", "position_a_rate", "prompts_judged", "wins", "losses", "ties",
             "parse_failures", "exact_match", "exact_match_ci", "exact_match_n", "lm_eval")
# The numbers logged to metrics.jsonl and the tracker (stage "eval", x-axis: -1 base, 0 M0, K model K).
EVAL_METRICS = ("heldout_loss", "win_rate", "lc_win_rate", "position_consistency", "answer_chars_mean",
                "length_ratio", "exact_match")


def eval_stats(stages: dict, label: str, drift_ratio: float = 1.5, reference: Optional[str] = "outputs",
               lm_eval_tasks: Sequence[str] = ()) -> dict:
    """A model's eval ``stats.json`` from its eval stages' figures in ``stages`` (the manifest's); the
    length ratio is against M0's answers. ``reference`` and ``lm_eval_tasks`` are the settings in force:
    a judging against another reference, or a task no longer asked for, is not reported."""
    from ..evaluation.answers import length_drift

    ev = layout.evaluation(label)
    done = lambda name: stages.get(name, {}).get("stats") if stages.get(name, {}).get("status") == "done" else None  # noqa: E731
    loss = done(ev.stage("loss")) or {}
    answers = done(ev.stage("answers")) or {}
    judge = done(ev.stage("judge")) or {}
    judge = judge if reference is not None and judge.get("reference") == reference else {}
    lm = (done(ev.stage("lm_eval")) or {}).get("lm_eval") or {}
    lm = {k: v for k, v in lm.items() if k.split("/", 1)[0] in lm_eval_tasks}
    m0 = done(layout.evaluation("m0").stage("answers")) or {}
    ratio, drift = (None, None) if label in (layout.BASE, "m0") else length_drift(
        answers.get("answer_chars_mean"), m0.get("answer_chars_mean"), drift_ratio)
    out = {key: None for key in EVAL_KEYS}
    out.update({k: v for part in (loss, answers, judge) for k, v in part.items() if k in EVAL_KEYS})
    out.update(model=label, step=ev.step, length_ratio=ratio, length_drift=drift, lm_eval=lm or None)
    out["win_rate_ci"] = judge.get("win_rate_ci") or [None, None]
    out["exact_match_ci"] = answers.get("exact_match_ci") or [None, None]
    return out
