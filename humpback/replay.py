"""Replay: train a fresh checkpoint from a finished run's saved corpora, without generating again.

- the saved training mixture of iteration K, verified against its recorded hash, on another base
  model or with other training settings;
- or a new selection from iteration K's saved scores (another ``curate.threshold``, e.g. A4), then
  training on seed + the new A(K);
- or the saved candidate pool re-scored by another judge model (``curate.judge``) or another kind of
  judge (any change of the scoring keys: ``curate.judge_kind``, ``mode``, ``likelihood``,
  ``verifier``, ...; the run's own model K-1 judges unless ``curate.judge`` is given), then selection
  and training. The new scores' agreement with the run's own is recorded.

With ``train.objective: dpo`` (the run's, or given as an override) the finetuned model K is then trained
further by DPO: on the run's saved preference pairs ``iter_K/preferences.parquet``, verified against their
recorded hash (re-paired from the saved judged answers when only ``preferences.min_margin`` or
``keep_truncated`` changed); on pairs sampled and judged afresh when the run has none, when A(K) is
re-selected, or when the sampling or judge settings changed.

The output folder is a run folder of its own: the imported files are registered in its manifest
with their hashes, so a replay resumes like a run. The held-out seed pairs come along, so that
``humpback eval`` measures the fresh checkpoint on the original run's yardstick.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Optional

from . import layout
from .config import load_config, to_dict
from .errors import HumpbackError, StoreError
from .loop import open_run
from .review.apply import copy_decisions, replay_note, review_overrides
from .scoring import judge_agreement, selection_rule
from .stages.curate import score_stage, select_stage
from .stages.finetune import dpo_stage, mixture_model_stage, next_model_stage
from .stages.preferences import named_bank, preferences_stage, responses_stage
from .store import RunStore, write_json
from .view.figures import iteration_stats


def replay(
    source: Path,
    output: Path,
    iteration: int,
    base_model: Optional[str] = None,
    threshold: Optional[float] = None,
    judge: Optional[str] = None,
    overrides: list[str] = (),
    log: Callable[[str], None] = print,
    overwrite: bool = False,
    review: bool = True,
    force_accepted: bool = False,
) -> dict:
    if not (source / layout.MANIFEST).exists():
        raise HumpbackError(f"{source}: not a humpback run folder (no {layout.MANIFEST})")
    if source.resolve() == output.resolve():
        raise HumpbackError("--output must differ from the run folder being replayed")
    src = RunStore(source, log=log)
    stages = src.manifest["stages"]
    if iteration < 1 or layout.iteration(iteration).stage("train") not in stages:
        done = sorted(k for n in stages if (k := layout.iteration_of(n)) and n == layout.iteration(k).stage("train"))
        raise HumpbackError(f"{source}: iteration {iteration} has not finished (finished: {done or 'none'})")
    it = layout.iteration(iteration)
    extra = list(overrides)
    if base_model:
        extra.append(f"base_model={base_model}")
    if threshold is not None:  # A(K) by this threshold, whatever rule the run used
        extra += ["curate.select=threshold", f"curate.threshold={threshold}"]
    if judge:
        extra.append(f"curate.judge={judge}")
    extra += review_overrides(source, review, force_accepted)
    cfg = load_config(source / layout.CONFIG, extra)
    before = load_config(source / layout.CONFIG).curate
    rescore = judge is not None or cfg.curate.scoring_settings() != before.scoring_settings() \
        or cfg.curate.dev_set != before.dev_set
    reselect = rescore or threshold is not None or selection_rule(cfg.curate) != selection_rule(before) \
        or cfg.curate.review or before.review
    rt = open_run(cfg, output, log=log, overwrite=overwrite, command=f"replay {source} --iteration {iteration}")
    try:
        if _recorded(src, layout.HELDOUT):
            rt.store.import_output(src, layout.HELDOUT)
        if not reselect:
            mixture_hash = rt.store.import_output(src, it.mixture)
            log(f"[replay] iteration {iteration} mixture verified: sha256 {mixture_hash[:16]}")
            result = mixture_model_stage(rt, iteration)
        else:
            # A new A(K): from the saved scores, or from the saved candidates re-scored by the new judge.
            kept = () if rescore else (it.scores,) + ((it.dev_scores,) if cfg.curate.dev_set else ())
            for rel in (layout.SEED, layout.CANDIDATES) + kept:
                rt.store.import_output(src, rel)
            if rescore:
                if not cfg.curate.judge and cfg.curate.judge_kind != "verifier":
                    rt.store.import_output(src, it.judge)  # the run's own model K-1 judges again
                score_stage(rt, iteration)
                agreement = judge_agreement(src.read_rows(it.scores), rt.store.read_rows(it.scores))
                log(f"[replay] the new judge's scores vs the run's own over {agreement['pairs']} pairs: "
                    f"Spearman {agreement['spearman']}")
            if cfg.curate.review:  # the decisions this replay honours, in its own folder (their hash joins A(K)'s key)
                copy_decisions(source, output)
            select_stage(rt, iteration)
            result = next_model_stage(rt, iteration)
            mixture_hash = rt.store.output_hash(it.mixture)
            if rescore:
                write_json(rt.store.path(layout.REPLAY_AGREEMENT), agreement)
        preferences_hash = None
        if cfg.train.objective == "dpo":
            preferences_hash = _preferences(rt, src, iteration, reselect, log)
            result = dpo_stage(rt, iteration)
        # iter_K/stats.json of the replayed iteration, as the loop writes it (from what ran here)
        write_json(rt.store.path(it.stats), iteration_stats(rt.store.manifest["stages"], iteration))
    finally:
        rt.close()
    used = (rt.store.manifest["stages"].get(it.stage("select"), {}).get("stats") or {}).get("review") \
        if cfg.curate.review else None
    return {"iteration": iteration, "model": str(rt.store.path(it.model)),
            "mixture_sha256": mixture_hash, "train": result.stats, "base_model": cfg.base_model,
            "preferences_sha256": preferences_hash,
            "review": used, "review_note": replay_note(source, review, used)}


# What the answers and their scores depend on (any change samples and judges afresh), and the pairing keys.
_PAIRING_KEYS = ("min_margin", "keep_truncated")


def _preferences(rt, src: RunStore, k: int, reselect: bool, log: Callable[[str], None]) -> str:
    """iter_K/preferences.parquet of the replay: the run's own (hash checked), re-paired from its judged
    answers, or sampled and judged afresh by the replay's model K (see the module's docstring). Returns
    the pairs' hash."""
    it = layout.iteration(k)
    before = load_config(src.path(layout.CONFIG))
    old = (before.preferences, before.curate)
    new = (rt.cfg.preferences, rt.cfg.curate)
    same_answers = _answer_keys(*old) == _answer_keys(*new) and not reselect
    if same_answers and _recorded(src, it.preferences) and \
            all(getattr(old[0], key) == getattr(new[0], key) for key in _PAIRING_KEYS):
        digest = rt.store.import_output(src, it.preferences)
        log(f"[replay] iteration {k} preference pairs verified: sha256 {digest[:16]}")
        return digest
    if same_answers and _recorded(src, it.responses):
        for rel in (it.responses, it.response_scores):
            rt.store.import_output(src, rel)
        log(f"[replay] iteration {k}: re-pairing the run's judged answers")
    else:
        bank = named_bank(rt.cfg.preferences.prompts, k)
        if bank is not None and not rt.store.exists(bank[0]):
            rt.store.import_output(src, bank[0])
        log(f"[replay] iteration {k}: sampling and judging the replayed model's answers")
        responses_stage(rt, k)
    preferences_stage(rt, k)
    return rt.store.output_hash(it.preferences)


def _answer_keys(prefs, curate) -> dict:
    """Everything the judged answers depend on besides the model: the preferences settings but the
    pairing keys, and the curate section's judge settings."""
    d = {k: v for k, v in to_dict(prefs).items() if k not in _PAIRING_KEYS}
    return {**d, "curate": {k: v for k, v in to_dict(curate).items()
                            if k in ("mode", "max_new_tokens", "temperature", "system_prompt", "likelihood",
                                     "verifier",
                                     "rubric", "rubric_field", "rubric_combine", "rubric_temperature")}}


def _recorded(store: RunStore, rel: str) -> bool:
    try:
        store.output_hash(rel)
        return True
    except StoreError:
        return False
