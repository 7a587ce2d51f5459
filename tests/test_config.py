from pathlib import Path

import pytest

from humpback.config import describe_keys, dump_yaml, load_config
from humpback.errors import ConfigError

RECIPES = sorted((Path(__file__).parent.parent / "recipes").glob("*.yaml"))
MINIMAL = "base_model: m\nseed: {path: s.jsonl}\ncorpus: {path: c.jsonl}\n"


def write(tmp_path, text):
    p = tmp_path / "r.yaml"
    p.write_text(text)
    return p


@pytest.mark.parametrize("recipe", RECIPES, ids=[p.name for p in RECIPES])
def test_every_recipe_parses(recipe):
    cfg = load_config(recipe)
    assert cfg.iterations >= 1
    assert recipe.read_text().startswith("#"), "a recipe opens with the command that runs it"


def test_there_are_recipes():
    assert {"tiny-cpu.yaml", "paper-llama2-7b.yaml", "small-gpu.yaml"} <= {p.name for p in RECIPES}


def test_defaults_follow_the_paper(tmp_path):
    cfg = load_config(write(tmp_path, MINIMAL))
    assert (cfg.augment.temperature, cfg.augment.top_p) == (0.7, 0.9)
    assert cfg.curate.threshold == 5 and cfg.iterations == 2
    assert (cfg.corpus.min_chars, cfg.corpus.max_chars) == (600, 3000)
    assert cfg.train.weight_decay == 0.1 and cfg.train.lora_dropout == 0.1


def test_overrides_are_typed(tmp_path):
    cfg = load_config(write(tmp_path, MINIMAL), ["curate.threshold=4", "train.lora_r=8", "curate.mode=logits",
                                                 "tracking.tags=[a, b]", "seed.max_examples=null"])
    assert cfg.curate.threshold == 4.0 and cfg.train.lora_r == 8 and cfg.curate.mode == "logits"
    assert cfg.tracking.tags == ["a", "b"] and cfg.seed.max_examples is None


def test_exponents_without_a_dot_are_numbers(tmp_path):
    # YAML 1.1 reads 5e-4 (no dot in the mantissa) as a string; a float key takes it as the number it is.
    cfg = load_config(write(tmp_path, MINIMAL + "train: {learning_rate: 2e-4}\n"), ["train.weight_decay=1E-2"])
    assert cfg.train.learning_rate == 2e-4 and cfg.train.weight_decay == 0.01
    with pytest.raises(ConfigError, match="'train.learning_rate' must be a number, got 'e-4'"):
        load_config(write(tmp_path, MINIMAL), ["train.learning_rate=e-4"])


@pytest.mark.parametrize(
    "text, overrides, message",
    [
        (MINIMAL + "curate: {treshold: 4}\n", [],
         "r.yaml: unknown key 'curate.treshold' (did you mean 'curate.threshold'?)"),
        (MINIMAL + "train: {lora_r: eight}\n", [], "r.yaml: 'train.lora_r' must be an integer, got 'eight'"),
        (MINIMAL + "curate: {threshold: 7}\n", [], "r.yaml: 'curate.threshold' must be between 1 and 5, got 7.0"),
        (MINIMAL + "curate: {mode: vibes}\n", [],
         "r.yaml: 'curate.mode' must be one of 'generate', 'logits', 'both', got 'vibes'"),
        (MINIMAL + "corpus: {path: c, min_chars: 900, max_chars: 800}\n", [], "'corpus.max_chars' (800) is below"),
        (MINIMAL, ["train.lora_r=x"], "command line: 'train.lora_r' must be an integer, got 'x'"),
        (MINIMAL, ["curate.nope=1"], "command line: unknown key 'curate.nope'"),
        (MINIMAL, ["threshold"], "command line: override 'threshold' is not of the form key=value"),
        ("seed: {path: s}\ncorpus: {path: c}\n", [], "r.yaml: missing required key 'base_model'"),
        ("base_model: m\ncorpus: {path: c}\n", [], "r.yaml: missing required section 'seed'"),
        ("base_model: m\nseed: {path: s, dataset: d}\ncorpus: {path: c}\n", [],
         "exactly one of 'seed.path' and 'seed.dataset'"),
        (MINIMAL + "train: {deepspeed: nowhere.json}\n", [], "'train.deepspeed': no such file 'nowhere.json'"),
        ("- a\n- b\n", [], "a recipe must be a mapping"),
        ("base_model: [\n", [], "not valid YAML"),
        # A value from the command line is blamed on the command line, one from the file on the file.
        (MINIMAL, ["iterations=0"], "command line: 'iterations' must be > 0, got 0"),
        (MINIMAL + "iterations: 0\n", [], "r.yaml: 'iterations' must be > 0, got 0"),
        (MINIMAL, ["curate.threshold=9"], "command line: 'curate.threshold' must be between 1 and 5"),
        # A conflict between keys names each key with who set it.
        (MINIMAL, ["seed.dataset=d"], "r.yaml, seed.dataset set on the command line: set exactly one of 'seed.path' "
                                      "and 'seed.dataset'"),
        (MINIMAL, ["generation.backend=openai"],
         "generation.backend set on the command line, generation.api_base left at the default: generation.backend "
         "'openai' needs"),
        (MINIMAL, ["train={lora_r: 0}"], "command line: 'train.lora_r' must be > 0"),
    ],
)
def test_errors_name_the_file_and_key(tmp_path, text, overrides, message):
    with pytest.raises(ConfigError) as e:
        load_config(write(tmp_path, text), overrides)
    assert message in str(e.value)


def test_who_set_a_key(tmp_path):
    from humpback.config import who_set

    cfg = load_config(write(tmp_path, MINIMAL + "seed: {path: s.jsonl, format: alpaca}\n"), ["curate.mode=logits"])
    assert who_set(cfg, "seed.format") == str(tmp_path / "r.yaml")
    assert who_set(cfg, "curate.mode") == "command line"
    assert who_set(cfg, "corpus.text_field") == "the default"


def test_missing_recipe_file(tmp_path):
    with pytest.raises(ConfigError, match="nope.yaml: no such recipe file"):
        load_config(tmp_path / "nope.yaml")


def test_round_trip_through_yaml(tmp_path):
    cfg = load_config(RECIPES[0])
    again = load_config(write(tmp_path, dump_yaml(cfg)))
    assert again == cfg


def test_every_key_is_documented():
    rows = describe_keys()
    assert all(help_text for _, help_text, _ in rows), [k for k, h, _ in rows if not h]
    assert {"base_model", "seed.format", "corpus.text_field", "curate.mode", "curate.threshold", "train.lora_r"} <= {
        k for k, _, _ in rows}


def test_secrets_are_never_written():
    from dataclasses import dataclass

    from humpback.config import to_dict

    @dataclass
    class WithSecrets:
        hub_token: str = "hf_abc"
        api_key: str = "sk-123"
        max_new_tokens: int = 7

    assert to_dict(WithSecrets()) == {"max_new_tokens": 7}


def test_paper_recipes_follow_the_paper():
    root = Path(__file__).parent.parent / "recipes"
    lora, full = load_config(root / "paper-llama2-7b.yaml"), load_config(root / "paper-llama2-7b-full.yaml")
    for cfg in (lora, full):
        assert ((cfg.seed.format, cfg.seed.language, cfg.seed.sample, cfg.seed.max_examples)
                == ("oasst", "en", 3200, None))
        assert cfg.corpus.path.endswith("/warc.paths.gz") and cfg.corpus.path.startswith("https://")
        assert (cfg.corpus.language, cfg.corpus.require_header) == ("en", True)
        assert (cfg.train.steps, cfg.train.lr_scheduler_type, cfg.train.min_lr_ratio) == ("paper", "linear", 0.9)
        assert cfg.train.weight_decay == 0.1 and (cfg.curate.select, cfg.curate.threshold) == ("threshold", 5)
    assert not lora.train.full_finetune and lora.train.lora_dropout == 0.1
    assert full.train.full_finetune and (full.train.learning_rate, full.train.dropout) == (1e-5, 0.1)
    assert full.train.learning_rate * full.train.min_lr_ratio == pytest.approx(9e-6)
    assert "paragraph packs" in (root / "small-gpu.yaml").read_text().split("\nname:")[0]


@pytest.mark.parametrize("text, overrides, message", [
    (MINIMAL + "seed: {path: s.jsonl, sample: 10, max_examples: 5}\n", [], "set at most one of 'seed.sample'"),
    (MINIMAL, ["train.min_lr_ratio=1.0"], "'train.min_lr_ratio' must be in [0, 1), got 1.0"),
    (MINIMAL, ["train.min_lr_ratio=0.9", "train.lr_scheduler_type=constant"],
     "'train.min_lr_ratio' needs train.lr_scheduler_type linear or cosine"),
    (MINIMAL, ["train.dropout=1.5"], "'train.dropout' must be between 0 and 1"),
])
def test_new_keys_are_checked(tmp_path, text, overrides, message):
    with pytest.raises(ConfigError, match=re_escape(message)):
        load_config(write(tmp_path, text), overrides)


def re_escape(s: str) -> str:
    import re

    return re.escape(s)


def test_warnings_for_selection_settings_that_do_nothing(tmp_path, caplog):
    p = write(tmp_path, MINIMAL + "curate: {mode: logits, select: top_fraction, threshold: 4}\n")
    with caplog.at_level("WARNING", logger="humpback.config"):
        load_config(p)
    assert caplog.messages == [f"{p}: 'curate.threshold' is ignored: curate.select is 'top_fraction'"]
    caplog.clear()
    with caplog.at_level("WARNING", logger="humpback.config"):
        load_config(write(tmp_path, MINIMAL + "curate: {mode: logits}\n"), ["curate.select_on=expected"])
    assert caplog.messages == [
        "curate.threshold left at the default, curate.select_on set on the command line: 'curate.threshold: 5' on "
        "the expected score keeps almost nothing: an expected score of 5 needs "
        "P('5') >= 100% (all of it, at 5). The paper's A5 is a threshold of 5 on the generated or argmax score "
        "(curate.select_on); on the expected score use at most 4.5, or curate.select top_fraction"]
    caplog.clear()
    with caplog.at_level("WARNING", logger="humpback.config"):
        load_config(write(tmp_path, MINIMAL + "curate: {mode: logits, select_on: expected}\n"),
                    ["curate.threshold=4.2"])
        load_config(write(tmp_path, MINIMAL))
    assert caplog.messages == []


def test_eval_errors_blame_who_set_the_value(tmp_path):
    # EvalConfig.validate blamed the recipe file even for a value given on the command line.
    recipe = write(tmp_path, MINIMAL + "eval: {top_p: 0}\n")
    with pytest.raises(ConfigError) as e:
        load_config(recipe)
    assert str(e.value) == f"{recipe}: 'eval.top_p' must be in (0, 1], got 0.0"
    missing = tmp_path / "nope.jsonl"
    for override, message in [
        ("eval.temperature=-1", "'eval.temperature' must be >= 0, got -1.0"),
        ("eval.top_p=0", "'eval.top_p' must be in (0, 1], got 0.0"),
        ("eval.lm_eval_num_fewshot=-1", "'eval.lm_eval_num_fewshot' must be >= 0, got -1"),
        ("eval.length_drift_ratio=1", "'eval.length_drift_ratio' must be > 1, got 1.0"),
        ("eval.judge_api_base=ftp://x", "'eval.judge_api_base' must start with http:// or https://, got 'ftp://x'"),
        (f"eval.prompts={missing}", f"'eval.prompts': no such file or folder '{missing}'"),
    ]:
        with pytest.raises(ConfigError) as e:
            load_config(write(tmp_path, MINIMAL), [override])
        assert str(e.value) == f"command line: {message}"


def test_a_conflict_names_each_key_with_who_set_it():
    # The recipe sets curate.select_on: expected; the command line only chooses the judge.
    tiny = Path(__file__).parent.parent / "recipes" / "tiny-cpu.yaml"
    assert load_config(tiny).curate.select_on == "expected"
    with pytest.raises(ConfigError) as e:
        load_config(tiny, ["curate.judge_kind=rubric"])
    assert str(e.value) == (
        f"curate.select_on set in {tiny}, curate.judge_kind set on the command line: 'curate.select_on: expected' "
        "is a rating-judge score; the rubric judge selects on its value (curate.select_on auto or value)")
    # Both keys from one source: that source, once.
    with pytest.raises(ConfigError) as e:
        load_config(tiny, ["curate.judge_kind=rubric", "curate.select_on=argmax"])
    assert str(e.value) == ("command line: 'curate.select_on: argmax' is a rating-judge score; the rubric judge "
                            "selects on its value (curate.select_on auto or value)")
    # A key nobody set is the default's.
    with pytest.raises(ConfigError) as e:
        load_config(tiny, ["curate.judge_kind=verifier", "curate.select_on=auto"])
    assert str(e.value) == ("curate.judge_kind set on the command line, curate.verifier left at the default: "
                            "curate.judge_kind 'verifier' needs 'curate.verifier' (package.module:function)")
