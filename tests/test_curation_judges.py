"""Every judge in the real loop, on the tiny recipe: the likelihood judge's rows are the model's own
log-likelihoods, a dev set gets precision and recall, a verifier that raises fails rows and not the
stage, replay re-scores with another kind of judge and records the agreement, judge health reaches
stats, summary and report."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from humpback.config import load_config
from humpback.judges.health import selection_quality
from humpback.loop import open_run, run
from humpback.replay import replay
from humpback.scoring import select_by_cutoff, selection_cutoff
from humpback.store import read_table
from humpback.view.run_summary import format_summary
from tiny_runs import TINY_RUNS

ROOT = Path(__file__).parent.parent
TINY = ROOT / "recipes" / "tiny-cpu.yaml"
# Runs of their own, not conftest's tiny_run: each adds a judge and the dev set this module writes (a file of its
# own), and compares the judges on the same pool. One whole loop; the other judges rerun a copy of it.
FAST = TINY_RUNS["judges"]

VERIFIER = '''
def check(row):
    """Raises on a third of the pairs; else 1.0 for an instruction ending in '?'."""
    if int(row["candidate_id"], 16) % 3 == 0:
        raise RuntimeError("checker crashed on " + row["candidate_id"][:4])
    return row["instruction"].strip().endswith("?")
'''


@pytest.fixture(scope="module")
def dev_file(tmp_path_factory, docs_seed_path):
    seed = [json.loads(line) for line in Path(docs_seed_path).read_text().splitlines()][:12]
    rows = [{"instruction": s["instruction"], "output": s["output"], "label": "good"} for s in seed[:6]]
    rows += [{"instruction": s["instruction"], "output": seed[(i + 3) % 12]["output"], "label": "bad"}
             for i, s in enumerate(seed[6:])]
    path = tmp_path_factory.mktemp("dev") / "dev.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture(scope="module")
def likelihood_run(tmp_path_factory, dev_file):
    run_dir = tmp_path_factory.mktemp("run") / "lik"
    lines: list[str] = []
    cfg = load_config(TINY, FAST + ["curate.judge_kind=likelihood", "curate.select_on=auto",
                                    f"curate.dev_set={dev_file}"])
    summaries = run(open_run(cfg, run_dir, log=lines.append))
    return run_dir, summaries, lines


def test_likelihood_rows_are_the_models_own_loglik(likelihood_run):
    from humpback.chat import load_chat_tokenizer
    from humpback.generation.hf import HFGenerator
    from humpback.judges.likelihood import pair_texts
    from humpback.prompts import SEED_SYSTEM_PROMPT

    run_dir, summaries, _ = likelihood_run
    scores = read_table(run_dir / "iter_1" / "scores")
    candidates = {c["candidate_id"]: c for c in read_table(run_dir / "augment" / "candidates")}
    assert all(s["judge_kind"] == "likelihood" and s["mode"] == "mean_logprob" and s["parse_status"] == "ok"
               and s["score"] is None and s["value"] < 0 for s in scores)
    tok = load_chat_tokenizer(str(run_dir / "models" / "m0"))
    base = json.loads((run_dir / "models" / "m0" / "adapter_config.json").read_text())["base_model_name_or_path"]
    gen = HFGenerator(base, adapter=str(run_dir / "models" / "m0"), tokenizer=tok, device="cpu", batch_size=1)
    rows = [candidates[s["candidate_id"]] for s in scores[:3]]
    prompts, continuations = pair_texts(tok, rows, SEED_SYSTEM_PROMPT)
    assert all(c.endswith(tok.eos_token) for c in continuations)  # the end of turn is scored too
    for s, ll in zip(scores[:3], gen.loglik(prompts, continuations)):
        assert s["value"] == pytest.approx(ll.mean, abs=1e-5)
        assert json.loads(s["raw"])["tokens"] == ll.tokens
    gen.close()
    assert summaries[0]["judge_kind"] == "likelihood" and summaries[0]["selection"] == "top 50% by mean log-likelihood"


def test_dev_set_precision_and_recall_follow_the_selection_rule(likelihood_run):
    run_dir, summaries, lines = likelihood_run
    dev = read_table(run_dir / "iter_1" / "dev_scores.parquet")
    assert len(dev) == 12 and sum(d["positive"] for d in dev) == 6 and all(d["value"] < 0 for d in dev)
    curated = read_table(run_dir / "iter_1" / "curated.parquet")
    stats = json.loads((run_dir / "iter_1" / "stats.json").read_text())
    rule = stats["rule"]
    cutoff = selection_cutoff(rule, [c["value"] for c in curated])
    assert cutoff == min(c["value"] for c in curated)
    expected = selection_quality([d["positive"] for d in dev], select_by_cutoff(dev, "value", cutoff))
    assert stats["dev"] == {**expected, "cutoff": cutoff}
    assert stats["dev/precision"] == expected["precision"] and stats["dev/recall"] == expected["recall"]
    assert any(line.startswith("  dev set: precision") for line in lines)
    assert "dev P/R" in format_summary(summaries, run_dir)
    metrics = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert {"dev/recall", "health/warnings"} <= {m["name"] for m in metrics}
    report = (run_dir / "report.html").read_text()
    assert "dev precision" in report and "mean judge value" in report


def test_replay_rescores_with_a_verifier_that_raises(likelihood_run, tmp_path, monkeypatch):
    run_dir, _, _ = likelihood_run
    (tmp_path / "tiny_checks.py").write_text(VERIFIER)
    monkeypatch.syspath_prepend(str(tmp_path))
    lines: list[str] = []
    out = tmp_path / "verified"
    result = replay(run_dir, out, 1, overrides=["curate.judge_kind=verifier", "curate.verifier=tiny_checks:check",
                                                 "curate.select=threshold", "curate.threshold=1",
                                                 "tracking.progress=false"], log=lines.append)
    scores = read_table(out / "iter_1" / "scores")
    failed = [s for s in scores if s["parse_status"] == "error"]
    assert failed and all(s["raw"].startswith("RuntimeError: checker crashed on ") and s["value"] is None
                          for s in failed)
    assert {s["judge"] for s in scores} == {"tiny_checks:check"}
    stats = json.loads((out / "manifest.json").read_text())["stages"]["iter_1/score"]["stats"]
    assert stats["parse_failure_kinds"] == {"error": len(failed)}
    assert stats["health"]["parse_failure_rate"] == len(failed) / len(scores)
    curated = read_table(out / "iter_1" / "curated.parquet")
    assert {c["candidate_id"] for c in curated} == {s["candidate_id"] for s in scores if s["value"] == 1.0}
    agreement = json.loads((out / "replay_agreement.json").read_text())
    assert agreement["pairs"] == len(scores) - len(failed)
    assert result["train"]["num_examples"] == len(read_table(out / "iter_1" / "train.parquet"))
    # The dev set is re-scored by the verifier too (its errors are the dev rows' statuses).
    dev = read_table(out / "iter_1" / "dev_scores.parquet")
    assert {d["judge_kind"] for d in dev} == {"verifier"}


@pytest.fixture(scope="module")
def compare_run(tmp_path_factory, dev_file, likelihood_run):
    """The likelihood run again, with the rating judge beside it (curate.compare_judges): a copy of it, rerun.
    Its own judge scores and selects again (forced), beside the compared one, as in a run of its own."""
    run_dir = tmp_path_factory.mktemp("run") / "compare"
    shutil.copytree(likelihood_run[0], run_dir)
    lines: list[str] = []
    cfg = load_config(TINY, FAST + ["curate.judge_kind=likelihood", "curate.select_on=auto",
                                    f"curate.dev_set={dev_file}", "curate.compare_judges=[rating]"])
    run(open_run(cfg, run_dir, force=["iter_1/score", "iter_1/select"], log=lines.append))
    assert "[iter_1/select] running (forced)" in " ".join(lines), lines
    return run_dir, lines


@pytest.fixture(scope="module")
def rating_run(tmp_path_factory, dev_file, likelihood_run):
    """The rating judge in the likelihood run's place: a copy of it (same M0, same pool), rejudged."""
    run_dir = tmp_path_factory.mktemp("run") / "rating"
    shutil.copytree(likelihood_run[0], run_dir)
    run(open_run(load_config(TINY, FAST + [f"curate.dev_set={dev_file}"]), run_dir, log=lambda line: None))
    return run_dir


def test_a_compared_judge_scores_as_if_it_selected_and_selects_nothing(compare_run, rating_run, likelihood_run):
    from humpback.judges.health import auc, ranking_field
    from humpback.scoring import spearman

    run_dir, lines = compare_run
    it = run_dir / "iter_1"
    # The rating judge's rows are exactly those of a run where it is the judge (same M0, same pool, same dev set).
    assert read_table(it / "compare" / "rating" / "scores") == read_table(rating_run / "iter_1" / "scores")
    assert read_table(it / "compare" / "rating" / "dev_scores.parquet") == read_table(
        rating_run / "iter_1" / "dev_scores.parquet")
    # ... and selection is the likelihood judge's alone.
    assert read_table(it / "curated.parquet") == read_table(likelihood_run[0] / "iter_1" / "curated.parquet")

    stages = json.loads((run_dir / "manifest.json").read_text())["stages"]
    compared = stages["iter_1/compare"]["stats"]["rating"]
    ours, theirs = read_table(it / "scores"), read_table(it / "compare" / "rating" / "scores")
    assert compared["field"] == ranking_field("rating", "logits") == "expected_score"
    vs = compared["versus"]
    assert vs["spearman"] == spearman([o["value"] for o in ours], [t["expected_score"] for t in theirs])
    keep = len(read_table(it / "curated.parquet"))
    best = lambda rows, f: set(sorted(range(len(rows)), key=lambda i: (-rows[i][f], i))[:keep])  # noqa: E731
    assert vs["keep"] == keep and vs["kept_by_both"] == len(best(ours, "value") & best(theirs, "expected_score"))
    assert compared["scored"] == len(theirs)

    dev_ours = read_table(it / "dev_scores.parquet")
    dev_theirs = read_table(it / "compare" / "rating" / "dev_scores.parquet")
    main_auc = stages["iter_1/dev"]["stats"]["auc"]
    assert main_auc["auc"] == auc([d["value"] for d in dev_ours], [d["positive"] for d in dev_ours])
    their_auc = stages["iter_1/compare_dev"]["stats"]["rating"]["auc"]
    assert their_auc["auc"] == auc([d["expected_score"] for d in dev_theirs], [d["positive"] for d in dev_theirs])
    assert their_auc["low"] <= their_auc["auc"] <= their_auc["high"] and their_auc["pairs"] == 12
    assert any(line.startswith("  compare rating: ") and "Spearman with likelihood" in line for line in lines)
    assert any(line.startswith("  dev set, compared rating judge: AUC ") for line in lines)
    # What the models processed is in the stages' statistics (12 segments, 2 new tokens at most each).
    augment, score = stages["augment"]["stats"], stages["iter_1/score"]["stats"]
    assert augment["usage"]["prompts"] == augment["segments"] == 12
    assert 0 < augment["usage"]["generated_tokens"] <= 12 * 12
    assert score["usage"]["prompts"] == score["scored"] and score["usage"]["generated_tokens"] == 0


def test_the_summary_sets_the_judges_side_by_side(compare_run):
    from humpback.view.figures import iteration_stats

    run_dir, _ = compare_run
    stages = json.loads((run_dir / "manifest.json").read_text())["stages"]
    stats = iteration_stats(stages, 1)
    assert [(j["judge_kind"], j["role"]) for j in stats["judges"]] == [("likelihood", "selects"),
                                                                       ("rating", "compared")]
    text = format_summary([stats], run_dir)
    head = text.index("Judges (AUC")
    table = text[head:].splitlines()[1:4]
    auc = stages["iter_1/compare_dev"]["stats"]["rating"]["auc"]
    assert table[2].split()[:3] == ["1", "rating", "compared"]
    assert f"{auc['auc']:.2f} [{auc['low']:.2f}, {auc['high']:.2f}]" in table[2]
    warnings = stages["iter_1/compare"]["stats"]["rating"]["health"]["warnings"]
    assert all(f"WARNING: iteration 1 compared rating judge: {w}" in text for w in warnings)


def test_dev_quality_reads_the_cutoff_from_the_score_rows():
    """select_on argmax with a top fraction and a dev set: the curated rows carry no logits_score column,
    so the cutoff comes from the pool's score rows (a KeyError on 'logits_score' before)."""
    from types import SimpleNamespace

    from humpback.stages.curate import _dev_quality

    scores = [{"candidate_id": f"c{i}", "logits_score": i % 5 + 1} for i in range(10)]
    curated = [{"candidate_id": c, "score": None, "expected_score": None, "value": None} for c in ("c3", "c4", "c8")]
    dev = [{"positive": p, "logits_score": s} for p, s in ((True, 5), (True, 4), (False, 4), (False, 2))]
    lines = []
    rt = SimpleNamespace(store=SimpleNamespace(read_rows=lambda rel: dev), result=lines.append,
                         metric=lambda *a, **k: None)
    rule = {"select": "top_fraction", "score_field": "logits_score", "top_fraction": 0.3}
    quality = _dev_quality(rt, 1, rule, curated, scores)
    assert quality["cutoff"] == 4.0  # the lowest logits_score among c3 (4), c4 (5) and c8 (4)
    assert (quality["selected"], quality["precision"], quality["recall"]) == (3, 2 / 3, 1.0)
    assert lines == ["dev set: precision 0.667, recall 1.000 over 4 labelled pairs (2 positives, 3 selected)"]
