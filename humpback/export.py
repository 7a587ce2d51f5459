"""Export an iteration's corpus with a dataset card that records where it came from.

``humpback export RUN_DIR --iteration K --format jsonl --output DIR`` writes ``DIR/train.<ext>`` and
``DIR/README.md`` (a Hugging Face dataset card); ``--push-to-hub OWNER/NAME`` uploads the folder.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import yaml

from . import layout
from .chat import messages_for
from .errors import HumpbackError
from .prompts import WEB_SYSTEM_PROMPT, template
from .review.apply import reviewed
from .review.summary import card_section
from .scoring import SCORE_NAMES, describe_rule, short_rule
from .store import RunStore, write_json, write_table, write_text

FORMATS = {"parquet": "train.parquet", "jsonl": "train.jsonl", "alpaca": "train.json", "messages": "train.jsonl"}


def export_rows(curated: list[dict], fmt: str) -> list[dict]:
    """A(K) rows in the chosen format (pure)."""
    if fmt in ("parquet", "jsonl"):
        return [{"instruction": r["instruction"], "output": r["output"], "score": r["score"],
                 "expected_score": r["expected_score"], "id": r["candidate_id"]} for r in curated]
    if fmt == "alpaca":
        return [{"instruction": r["instruction"], "input": "", "output": r["output"]} for r in curated]
    if fmt == "messages":
        return [{"messages": messages_for(r["instruction"], r["output"], system=WEB_SYSTEM_PROMPT)} for r in curated]
    raise HumpbackError(f"unknown export format {fmt!r}; choose one of {', '.join(FORMATS)}")


def export(run_dir: Path, iteration: int, fmt: str, output: Path, push_to_hub: Optional[str] = None,
           private: bool = True, review: bool = True, force_accepted: bool = False) -> Path:
    if not (run_dir / layout.MANIFEST).exists():
        raise HumpbackError(f"{run_dir}: not a humpback run folder (no {layout.MANIFEST})")
    store = RunStore(run_dir, log=lambda _: None)
    it = layout.iteration(iteration) if iteration >= 1 else None
    if it is None or it.stage("select") not in store.manifest["stages"] or not store.exists(it.curated):
        raise HumpbackError(f"{run_dir}: iteration {iteration} has no curated set yet")
    curated, applied = _reviewed(store, it, review, force_accepted)
    rows = export_rows(curated, fmt)
    output.mkdir(parents=True, exist_ok=True)
    data = output / FORMATS[fmt]
    if fmt == "parquet":
        write_table(data, rows)
    elif fmt == "alpaca":
        write_json(data, rows)
    else:
        write_text(data, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    write_text(output / "README.md", dataset_card(store, iteration, fmt, len(rows), data.name)
               + card_section(run_dir, iteration, applied, review))
    if push_to_hub:
        _push(output, push_to_hub, private)
    return data


def _reviewed(store: RunStore, it: layout.Iteration, review: bool,
              force_accepted: bool) -> tuple[list[dict], Optional[dict]]:
    """A(K) with the run's review decisions applied (see humpback.review.apply), and what they changed."""
    curated = store.read_rows(it.curated)
    if not review or not store.exists(layout.REVIEW_DECISIONS):
        if force_accepted:
            raise HumpbackError("--force-accepted contradicts --no-review" if not review else
                                f"--force-accepted: {store.root} has no review decisions ({layout.REVIEW_DECISIONS})")
        return curated, None
    return reviewed(store.root, curated, store.read_rows(layout.CANDIDATES), store.read_rows(it.scores),
                    force_accepted)


def provenance(store: RunStore, iteration: int) -> dict:
    """Everything a reader needs to know where iteration K's corpus came from."""
    cfg = yaml.safe_load(store.path(layout.CONFIG).read_text())
    stages = store.manifest["stages"]
    it = layout.iteration(iteration)
    stats = stages.get(it.stage("score"), {}).get("stats", {})
    select = stages.get(it.stage("select"), {}).get("stats", {})
    corpus = cfg.get("corpus") or {}
    self_instruct = (cfg.get("augment") or {}).get("source") == "self_instruct"
    if self_instruct:  # no corpus: the filters and funnel of task generation instead
        filters = {k: cfg["augment"][k] for k in ("rouge_threshold", "min_task_words", "max_task_words",
                                                  "task_keywords", "max_instances", "max_instance_chars")}
        funnel = {k: v for k, v in stages.get("tasks", {}).get("stats", {}).items() if k != "served_by"}
    else:
        filters = ({k: corpus[k] for k in ("min_chars", "max_chars", "repetition_ngram", "repetition_threshold",
                                           "boilerplate_threshold", "near_dedup", "near_dedup_threshold",
                                           "drop_seed_overlap")}
                   | {k: corpus.get(k) for k in ("language", "require_header")})
        funnel = stages.get("segments", {}).get("stats", {}).get("funnel")
    return {
        "base_model": cfg["base_model"],
        "seed_source": cfg["seed"].get("dataset") or cfg["seed"].get("path"),
        "seed_format": stages.get("seed", {}).get("stats", {}).get("format", cfg["seed"].get("format")),
        "seed_pairs": stages.get("seed", {}).get("stats", {}).get("pairs"),
        "source": "self_instruct" if self_instruct else "backtranslation",
        "corpus_source": corpus.get("dataset") or corpus.get("path"),
        "filters": filters,
        "funnel": funnel,
        "augmentation": {**cfg["augment"], **{k: v for k, v in stages.get("augment", {}).get("stats", {}).items()
                                               if k != "instruction_chars"}},
        "iteration": iteration,
        "judge": stats.get("judge") or _judge_of_rows(store, it.scores),
        "curation": {"mode": cfg["curate"]["mode"], "rule": select.get("rule"),
                     "judge_kind": cfg["curate"].get("judge_kind", "rating"),
                     "select_on": cfg["curate"]["select_on"], "score_histogram": stats.get("histogram"),
                     "parse_failure_rate": stats.get("parse_failure_rate"),
                     "acceptance_rate": select.get("acceptance_rate"), "curated": select.get("curated")},
        "prompts": {"backward": template("self_instruct_tasks" if self_instruct else "backward"),
                    "curation": template("curate")},
        "packages": store.manifest.get("packages", {}),
    }


def _judge_of_rows(store: RunStore, scores_rel: str) -> str:
    """The judge named in the score rows themselves (a replay imports its scores without their stage)."""
    judges = sorted({r["judge"] for r in store.read_rows(scores_rel)})
    return ", ".join(judges)


# What the card says the iteration's judge did, by curate.judge_kind.
JUDGED = {"rating": "rated every pair on the paper's 5-point scale",
          "rubric": "asked the rubric's yes/no questions of every pair",
          "likelihood": "scored every pair by its likelihood of the output given the instruction",
          "verifier": "checked every pair with its verifier"}


def dataset_card(store: RunStore, iteration: int, fmt: str, n_rows: int, data_file: str) -> str:
    p = provenance(store, iteration)
    rule = p["curation"]["rule"]
    header = yaml.safe_dump({"configs": [{"config_name": "default", "data_files": [{"split": "train",
                                                                                  "path": data_file}]}],
                             "tags": ["humpback", "instruction-backtranslation", "synthetic"]}, sort_keys=False)
    hist = p["curation"]["score_histogram"] or {}
    lines = [
        "---", header.rstrip(), "---", "",
        f"# Humpback corpus: iteration {iteration}", "",
        f"{n_rows} (instruction, output) pairs made by "
        + ("Self-Instruct (Wang et al., 2022)" if p["source"] == "self_instruct" else
           "instruction backtranslation (Li et al., 2023)") +
        f" with [humpback](https://pypi.org/project/humpback/) {p['packages'].get('humpback', '')}: "
        + ("the base model wrote new tasks from the seed tasks and then their instances"
           if p["source"] == "self_instruct" else
           "a backward model wrote an instruction for each segment of unlabelled text") +
        f", and the iteration-{iteration} judge "
        f"(`{p['judge']}`) {JUDGED[p['curation']['judge_kind']]}; {describe_rule(p['curation']['rule'])}. "
        f"Format: `{fmt}` (`{data_file}`).", "",
        "## Provenance", "",
        f"- Base model: `{p['base_model']}`",
        f"- Seed data: `{p['seed_source']}` ({p['seed_format']} format, {p['seed_pairs']} pairs)",
        f"- Unlabelled text: `{p['corpus_source']}`" if p["source"] != "self_instruct" else
        "- Unlabelled text: none (Self-Instruct)",
        f"- Filters: `{json.dumps(p['filters'])}`",
        f"- Filter funnel: `{json.dumps(p['funnel'])}`",
        f"- Augmentation: `{json.dumps(p['augmentation'])}`",
        f"- Curation: mode `{p['curation']['mode']}`, {short_rule(rule)} on the "
        f"{rule.get('score_name') or SCORE_NAMES[rule['score_field']]}, "  # a judge's value column: named by the rule
        f"acceptance rate {p['curation']['acceptance_rate']}, "
        f"parse-failure rate {p['curation']['parse_failure_rate']}",
        "- Score histogram: " + ", ".join(f"{k}: {v}" for k, v in hist.items()),
        f"- Packages: `{json.dumps(p['packages'])}`", "",
        "## Prompts", "", "Task generation (Self-Instruct):" if p["source"] == "self_instruct" else "Backward model:",
        "", "```", p["prompts"]["backward"], "```", "",
        "Curation (the paper's Table 1):", "", "```", p["prompts"]["curation"], "```", "",
    ]
    return "\n".join(lines)


def _push(folder: Path, repo_id: str, private: bool) -> None:
    """Upload the export folder as a dataset repository (token from HF_TOKEN or the local login)."""
    from huggingface_hub import HfApi

    api = HfApi()
    api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True)
    api.upload_folder(folder_path=str(folder), repo_id=repo_id, repo_type="dataset",
                      commit_message="Upload humpback corpus")


# --------------------------------------------------------------------------- preference pairs

PREFERENCE_FORMATS = {"parquet": "preferences.parquet", "jsonl": "preferences.jsonl"}
PREFERENCE_COLUMNS = ("prompt", "chosen", "rejected", "chosen_score", "rejected_score", "margin", "prompt_id",
                      "judge", "judge_kind", "generator")


def export_preferences(run_dir: Path, iteration: int, fmt: str, output: Path, push_to_hub: Optional[str] = None,
                       private: bool = True) -> Path:
    """Iteration K's preference pairs (train.objective dpo) in TRL's conversational preference format, with
    a dataset card: prompt source, sampler, judge, pairing rule, counts."""
    if not (run_dir / layout.MANIFEST).exists():
        raise HumpbackError(f"{run_dir}: not a humpback run folder (no {layout.MANIFEST})")
    if fmt not in PREFERENCE_FORMATS:
        raise HumpbackError(f"preference pairs export as {' or '.join(PREFERENCE_FORMATS)}, not {fmt!r}")
    store = RunStore(run_dir, log=lambda _: None)
    it = layout.iteration(iteration) if iteration >= 1 else None
    entry = store.manifest["stages"].get(it.stage("preferences")) if it else None
    if it is None or not entry or entry.get("status") != "done" or not store.exists(it.preferences):
        raise HumpbackError(f"{run_dir}: iteration {iteration} has no preference pairs (a run with train.objective "
                            f"dpo writes them)")
    rows = [{k: r[k] for k in PREFERENCE_COLUMNS} for r in store.read_rows(it.preferences)]
    output.mkdir(parents=True, exist_ok=True)
    data = output / PREFERENCE_FORMATS[fmt]
    if fmt == "parquet":
        import pyarrow as pa

        from .preference_pairs import preferences_schema

        schema = preferences_schema()
        write_table(data, rows, schema=pa.schema([schema.field(c) for c in PREFERENCE_COLUMNS]))
    else:
        write_text(data, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    write_text(output / "README.md", preference_card(store, iteration, len(rows), data.name))
    if push_to_hub:
        _push(output, push_to_hub, private)
    return data


def preference_provenance(store: RunStore, iteration: int) -> dict:
    """Where iteration K's preference pairs came from, from the run's config and stage statistics."""
    cfg = yaml.safe_load(store.path(layout.CONFIG).read_text())
    stages = store.manifest["stages"]
    it = layout.iteration(iteration)
    responses = stages.get(it.stage("responses"), {}).get("stats", {})
    pairs = stages.get(it.stage("preferences"), {}).get("stats", {})
    prefs, curate = cfg.get("preferences") or {}, cfg.get("curate") or {}
    kind = pairs.get("judge_kind") or prefs.get("judge_kind")
    return {
        "base_model": cfg["base_model"], "iteration": iteration, "bank": responses.get("bank"),
        "sampler": {"model": responses.get("generator") or pairs.get("generator"),
                    **{k: prefs.get(k) for k in ("n", "temperature", "top_p", "max_new_tokens", "system_prompt")}},
        "judge": {"name": pairs.get("judge"), "kind": kind,
                  "mode": curate.get("mode") if kind in ("additive", "rating")
                  else None, "value_mean": responses.get("value_mean"), "failures": responses.get("failures")},
        "rule": pairs.get("rule"),
        "counts": {k: pairs.get(k) for k in ("prompts", "pairs", "tie", "below_margin", "none_scored", "one_scored",
                                             "truncated_unpaired", "invalid_unpaired")},
        "checks": responses.get("checks"),
        "responses": responses.get("responses"), "truncated": responses.get("truncated"),
        "dpo": cfg.get("dpo"), "prompt": template("additive") if kind == "additive" else
        template("curate") if kind == "rating" else None,
        "packages": store.manifest.get("packages", {}),
    }


def _checks_line(checks: Optional[dict]) -> list[str]:
    """The card's line on the sampler's constraint and validator (preferences.constraint / validator), if any."""
    if not checks or not (checks.get("constraint") or checks.get("validator")):
        return []
    what = [f"constraint `{checks['constraint']['spec']}`" if checks.get("constraint") else None,
            f"validator `{checks['validator']['verifier']}`" if checks.get("validator") else None]
    return [f"- Checks on the answers: {', '.join(w for w in what if w)}, up to {checks['max_tries']} tries each; "
            f"{checks['passed_attempts']} of {checks['tries']} attempts passed, {checks['never_passed']} answers "
            f"never passed (judged, not paired)"]


def preference_card(store: RunStore, iteration: int, n_rows: int, data_file: str) -> str:
    from .preference_pairs import describe_pairing

    p = preference_provenance(store, iteration)
    header = yaml.safe_dump({"configs": [{"config_name": "default", "data_files": [{"split": "train",
                                                                                  "path": data_file}]}],
                             "tags": ["humpback", "preference", "dpo", "rlaif", "synthetic"]}, sort_keys=False)
    c, s, j = p["counts"], p["sampler"], p["judge"]
    lines = [
        "---", header.rstrip(), "---", "",
        f"# Humpback preference pairs: iteration {iteration}", "",
        f"{n_rows} preference pairs in TRL's conversational format (`prompt`, `chosen`, `rejected` message lists) "
        f"made by [humpback](https://pypi.org/project/humpback/) {p['packages'].get('humpback', '')}: the "
        f"iteration-{iteration} model answered each prompt {s['n']} times, the judge (`{j['name']}`, {j['kind']}) "
        f"scored every answer, and {describe_pairing(p['rule'])} (Self-Rewarding Language Models, Yuan et al. "
        f"2024). Load it with `datasets.load_dataset(\"parquet\" or \"json\", data_files=...)` and hand it to "
        f"`trl.DPOTrainer`.", "",
        "## Provenance", "",
        f"- Base model: `{p['base_model']}`",
        f"- Prompt source: `{json.dumps(p['bank'])}`",
        f"- Sampler: `{s['model']}`, {s['n']} answers per prompt, temperature {s['temperature']}, top_p {s['top_p']}, "
        f"max_new_tokens {s['max_new_tokens']}, system prompt {json.dumps(s['system_prompt'])}",
        *_checks_line(p["checks"]),
        f"- Judge: `{j['name']}` ({j['kind']}" + (f", mode {j['mode']}" if j["mode"] else "") +
        f"); mean score {j['value_mean']}; failures {json.dumps(j['failures'])}",
        f"- Pairing rule: `{json.dumps(p['rule'])}`",
        f"- Counts: {c['prompts']} prompts, {p['responses']} answers ({p['truncated']} cut at the token limit), "
        f"{c['pairs']} pairs; not paired: {c['tie']} ties, {c['below_margin']} below the margin, "
        f"{c['none_scored']} with no scored answer, {c['one_scored']} with one; {c['truncated_unpaired']} scored "
        f"answers left out as cut off"
        + (f", {c['invalid_unpaired']} that never passed the sampler's checks" if c.get("invalid_unpaired") else ""),
        f"- DPO settings of the run: `{json.dumps(p['dpo'])}`",
        f"- Packages: `{json.dumps(p['packages'])}`", "",
    ]
    if p["prompt"]:
        lines += ["## Judge prompt", "", "```", p["prompt"], "```", ""]
    return "\n".join(lines)
