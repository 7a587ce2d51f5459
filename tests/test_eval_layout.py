"""Where each model's evaluation lives, what it is judged against, and which --force values name eval stages."""

import pytest

from humpback import layout
from humpback.errors import ConfigError
from humpback.run import check_force
from humpback.evaluation.pairwise import reference_of


def test_each_models_eval_paths():
    base, m0, it2 = (layout.evaluation(x) for x in ("base", "m0", "iter_2"))
    assert (base.dir, m0.dir, it2.dir) == ("eval/base", "eval/m0", "iter_2/eval")
    assert (base.adapter, m0.adapter, it2.adapter) == (None, "models/m0", "iter_2/model")
    assert (base.step, m0.step, it2.step) == (-1, 0, 2)
    assert it2.stats == "iter_2/eval/stats.json" and it2.answers == "iter_2/eval/answers"
    assert it2.stage("judge") == "iter_2/eval/judge" and m0.stage("loss") == "eval/m0/loss"
    assert ([layout.evaluation(x).previous() for x in ("base", "m0", "iter_1", "iter_2")]
            == [None, "base", "m0", "iter_1"])
    assert layout.eval_labels(2) == ["base", "m0", "iter_1", "iter_2"]
    with pytest.raises(ValueError):
        layout.evaluation("backward")
    assert layout.artifact("iter_2/eval/judgements") == ("eval-judgements-iter-2", "dataset")
    assert layout.artifact("eval/m0/answers") == ("eval-answers-m0", "dataset")
    assert layout.artifact(layout.HELDOUT) == ("heldout", "dataset")


def test_what_each_model_is_judged_against():
    assert [reference_of("previous", x) for x in ("base", "m0", "iter_1", "iter_2")] == [None, "base", "m0", "iter_1"]
    assert [reference_of("m0", x) for x in ("base", "m0", "iter_1")] == ["m0", None, "m0"]
    assert [reference_of("outputs", x) for x in ("base", "iter_1")] == ["outputs", "outputs"]
    assert reference_of("none", "iter_1") is None


def test_force_names_eval_stages():
    assert layout.is_eval_stage("iter_2/eval/judge") and layout.is_eval_stage("eval/base/answers")
    assert layout.is_eval_stage("eval_prompts") and not layout.is_eval_stage("iter_2/score")
    check_force(["eval", "judge", "answers", "iter_2/eval/judge", "eval/m0/loss"], iterations=2)
    with pytest.raises(ConfigError, match="--force 'iter_3/eval/judge' is not a stage of this run"):
        check_force(["iter_3/eval/judge"], iterations=2)
