"""scripts/world_dpo.py --pool: M1's and M1+DPO's per-prompt exact match paired by prompt id within each
seed and pooled over seeds, exactly, on hand-made outcomes of two worlds (the arm itself runs in
scripts/proof.py's slow test)."""

import json
import math
import re
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent.parent / "scripts"))
import world_dpo  # noqa: E402  (scripts/ is not a package)

T_95_1DF = 12.706204736174698


def test_pooled_difference_is_the_mean_of_the_seeds_paired_by_prompt_id():
    # seed 0: p2 gained, nothing lost (+1/4); seed 1: q1 lost (-1/2). M1+DPO's dicts list the prompts in
    # another order: pairing is by id, not by position.
    result = world_dpo.pool({
        "s0": ({"p1": True, "p2": False, "p3": False, "p4": True}, {"p4": True, "p3": False, "p2": True, "p1": True}),
        "s1": ({"q1": True, "q2": True}, {"q2": True, "q1": False})})
    assert result["n"] == 6
    assert result["per_stratum"] == {"s0": 0.25, "s1": -0.5}
    assert result["difference"] == pytest.approx(-0.125)
    lo, hi = result["ci"]
    assert -0.5 <= lo < -0.125 < hi <= 0.5  # the seeded bootstrap: deterministic, around the estimate
    across = result["across_seeds"]
    sd = math.sqrt(2 * 0.375 ** 2)
    assert across["mean"] == pytest.approx(-0.125) and across["sd"] == pytest.approx(sd)
    half = T_95_1DF * sd / math.sqrt(2)
    assert across["ci"] == pytest.approx([-0.125 - half, -0.125 + half])


def test_one_seed_has_no_interval_over_seeds():
    result = world_dpo.pool({"s0": ({"p1": False, "p2": False}, {"p1": True, "p2": False})})
    assert result["difference"] == 0.5 and result["across_seeds"]["ci"] == [None, None]
    assert "| verifier | 2 | +0.500 | +0.500 [" in world_dpo.pooled_markdown(
        {"outputs": {"o": {"command": "c", "source": "s"}}, "judges": {"verifier": result}})


def test_models_evaluated_on_different_prompts_are_an_error():
    with pytest.raises(ValueError, match="seed s0: M1 and M1\\+DPO were evaluated on different prompts"):
        world_dpo.pool({"s0": ({"p1": True}, {"p2": True})})


def test_an_output_without_its_json_names_the_folder(tmp_path):
    with pytest.raises(SystemExit, match="world_dpo.json does not exist"):
        world_dpo.pooled([tmp_path])


def test_pooled_reads_each_outputs_arm_and_names_the_one_whose_prompts_differ(tmp_path, monkeypatch):
    outs = [tmp_path / "s0", tmp_path / "s1"]
    arms = [[{"judge": "verifier"}, {"judge": "additive"}], [{"judge": "verifier"}]]
    for i, out in enumerate(outs):
        out.mkdir()
        (out / "world_dpo.json").write_text(json.dumps({"command": f"c{i}", "source": f"M1-{i}", "arms": arms[i]}))
    outcomes = {"M1-0": {"p": False}, str(outs[0] / "verifier"): {"p": True},
                "M1-1": {"q": True}, str(outs[1] / "verifier"): {"q": True}}
    monkeypatch.setattr(world_dpo, "exact_matches", lambda run_dir, label: outcomes[str(run_dir)])
    result = world_dpo.pooled(outs)
    assert list(result["judges"]) == ["verifier"]  # additive: run by one output only
    assert result["judges"]["verifier"]["per_stratum"] == {str(outs[0]): 1.0, str(outs[1]): 0.0}
    assert result["outputs"] == {str(outs[0]): {"command": "c0", "source": "M1-0"},
                                 str(outs[1]): {"command": "c1", "source": "M1-1"}}
    outcomes[str(outs[1] / "verifier")] = {"r": True}
    with pytest.raises(SystemExit, match=re.escape(f"world_dpo.py --pool: seed {outs[1]}: M1 and M1+DPO were "
                                                   "evaluated on different prompts")):
        world_dpo.pooled(outs)
