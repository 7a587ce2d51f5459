"""scripts/proof.py's summary over seeds (means with t intervals, paired differences pooled over seeds,
targets, proof.md and its chart), exactly, on hand-made rows of two worlds; the whole proof runs in
tests/test_proof.py (slow)."""

import importlib.util
import math
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
spec = importlib.util.spec_from_file_location("proof", ROOT / "scripts" / "proof.py")
proof = importlib.util.module_from_spec(spec)
spec.loader.exec_module(proof)

T_95_1DF = 12.706204736174698


def world(seed: int, em: dict, precision: dict, outcomes: dict) -> dict:
    rows = []
    for arm, k, _, label in proof.MODELS:
        rows.append({"seed": seed, "arm": arm, "iteration": k, "model": label, "exact_match": em[(arm, label)],
                     "exact_match_ci": [0.0, 1.0], "exact_match_n": 4, "precision": precision.get((arm, label)),
                     "recall": None, "dev_precision": None, "dev_recall": None, "curated": None})
    return {"rows": rows,
            "outcomes": {f"{arm}/{label}": outcomes[label if arm == "self-curated" or label == "m0" else arm]
                         for arm, _, _, label in proof.MODELS}}


DPO = "M1 + DPO"


def two_worlds(m2_second_seed=(1, 1, 0, 0)):
    out = {"m0": [0, 0, 0, 0], "iter_1": [1, 1, 0, 0], "iter_2": [1, 1, 1, 0], "uncurated": [0, 0, 0, 1],
           "verifier": [1, 1, 1, 1], DPO: [1, 0, 1, 0]}
    em0 = {("seed only", "m0"): 0.0, ("self-curated", "m0"): 0.0, ("uncurated", "iter_1"): 0.25,
           ("verifier", "iter_1"): 1.0, ("self-curated", "iter_1"): 0.5, ("self-curated", "iter_2"): 0.75,
           (DPO, "iter_1"): 0.5}
    prec = {("self-curated", "iter_1"): 0.6, ("self-curated", "iter_2"): 0.7, ("verifier", "iter_1"): 1.0,
            ("uncurated", "iter_1"): 0.3}
    em1 = {**em0, ("self-curated", "iter_2"): sum(m2_second_seed) / 4}
    return {0: world(0, em0, prec, out), 1: world(1, em1, prec, {**out, "iter_2": list(m2_second_seed)})}


def test_means_over_seeds_and_paired_differences():
    summary = proof.summarize(two_worlds())
    by = {(m["arm"], m["model"]): m for m in summary["models"]}
    m2 = by[("self-curated", "iter_2")]
    assert m2["mean"] == pytest.approx(0.625) and m2["per_seed"] == {0: 0.75, 1: 0.5}
    half = T_95_1DF * math.sqrt(2 * 0.125 ** 2) / math.sqrt(2)
    assert m2["ci"] == pytest.approx([0.625 - half, 0.625 + half])
    assert by[("verifier", "iter_1")]["ci"] == pytest.approx([1.0, 1.0])
    diffs = {d["name"]: d for d in summary["differences"]}
    m1_m0 = diffs["M1 - M0 (self-curated)"]  # +1 on half the prompts of each seed
    assert m1_m0["difference"] == 0.5 and m1_m0["n"] == 8 and m1_m0["per_stratum"] == {0: 0.5, 1: 0.5}
    assert 0 < m1_m0["ci"][0] <= 0.5 <= m1_m0["ci"][1]
    m2_m1 = diffs["M2 - M1 (self-curated)"]
    assert m2_m1["per_stratum"] == {0: 0.25, 1: 0.0} and m2_m1["difference"] == 0.125
    assert m2_m1["across_seeds"]["n"] == 2
    assert diffs["verifier - uncurated"]["difference"] == 0.75
    dpo = diffs["M1 + DPO - M1"]  # one prompt gained, one lost on each seed
    assert dpo["difference"] == 0.0 and dpo["per_stratum"] == {0: 0.0, 1: 0.0} and dpo["n"] == 8
    assert summary["targets"] == {"verifier_at_least_0.8_every_seed": True,
                                  "uncurated_0.3_below_verifier_every_seed": True,
                                  "precision_rises_every_seed": True, "m1_beats_m0_paired_interval_above_0": True}


def test_a_target_missed_on_one_seed_is_missed():
    seeds = two_worlds()
    row = next(r for r in seeds[1]["rows"] if r["arm"] == "verifier")
    row["exact_match"] = 0.75
    targets = proof.summarize(seeds)["targets"]
    assert targets["verifier_at_least_0.8_every_seed"] is False
    assert targets["uncurated_0.3_below_verifier_every_seed"] is True  # 0.25 <= 0.75 - 0.3


def test_proof_md_and_chart(tmp_path):
    seeds = two_worlds()
    summary = proof.summarize(seeds)
    meta = {"command": "python scripts/proof.py --seeds 2", "torch_threads": 2,
            "machine": {"cpu": "Test CPU", "cpu_count": 2, "torch": "2.13.0", "transformers": "5.25.0"}}
    text = proof.markdown(summary, seeds, {"total": {"wall_s": 1.0, "cpu_s": 2.0}}, meta)
    assert "| self-curated | iter_2 | 0.625 |" in text and "0.750, 0.500" in text
    assert "| M1 - M0 (self-curated) | 0.500 |" in text
    assert "Targets: verifier_at_least_0.8_every_seed: yes;" in text and "torch 2.13.0 with 2 threads" in text
    assert text.count("\n| 1 | ") == len(proof.MODELS)  # every seed's rows
    proof.chart(summary, tmp_path / "proof.svg")
    svg = (tmp_path / "proof.svg").read_text()
    assert svg.lstrip().startswith("<?xml") and "<svg" in svg and "exact match" in svg


def test_world_overrides_name_every_world_asset():
    got = proof.world_overrides(2)
    assert got == ["base_model=builtin:world-base@2", "seed.path=builtin:world-seed@2",
                   "corpus.path=builtin:world-pool@2",
                   "curate.dev_set=builtin:world-dev@2", "eval.prompts=builtin:world-eval@2"]
    from humpback.config import load_config

    cfg = load_config(proof.RECIPE, got)
    assert cfg.base_model == "builtin:world-base@2" and cfg.eval.prompts == "builtin:world-eval@2"


def test_world_changes_are_typed_and_checked():
    assert proof.world_changes(["bad_fraction=0.7", "pool_docs=6000"]) == {"bad_fraction": 0.7, "pool_docs": 6000}
    assert proof.world_changes([]) == {}
    for bad, said in (("colour=red", "FIELD one of seed_pairs"), ("bad_fraction", "expected FIELD=VALUE"),
                      ("pool_docs=many", "pool_docs takes a int, got 'many'"),
                      ("bad_fraction=1.5", "bad_fraction must be in [0, 1], got 1.5"),
                      ("random_seed=3", "FIELD one of")):  # the seed is --seeds' business
        with pytest.raises(ValueError, match=re.escape(said)):
            proof.world_changes([bad])


def test_a_changed_world_is_named_in_proof_md_and_its_files_used(tmp_path, monkeypatch):
    monkeypatch.setenv("HUMPBACK_CACHE", str(tmp_path))
    from humpback.worlds import materialize_world

    built = []
    monkeypatch.setattr(proof, "materialize_world", lambda spec: built.append(spec) or materialize_world(
        spec, with_model=False))
    got = dict(o.split("=", 1) for o in proof.world_overrides(1, {"bad_fraction": 0.7}))
    assert [(s.bad_fraction, s.random_seed) for s in built] == [(0.7, 1)]
    assert Path(got["corpus.path"]).name == "pool.jsonl" and Path(got["corpus.path"]).is_file()
    assert Path(got["eval.prompts"]).parent == Path(got["corpus.path"]).parent
    seeds = two_worlds()
    meta = {"command": "python scripts/proof.py --world bad_fraction=0.7", "torch_threads": 1,
            "world_changes": {"bad_fraction": 0.7},
            "machine": {"cpu": "Test CPU", "cpu_count": 2, "torch": "2.13.0", "transformers": "5.25.0"}}
    text = proof.markdown(proof.summarize(seeds), seeds, {"total": {"wall_s": 1.0, "cpu_s": 2.0}}, meta)
    assert "Worlds: seeds 0, 1 (`builtin:world-*@S`, bad_fraction=0.7)." in text
