"""The recipe parser on its own (humpback.config.parse): it knows no humpback key, and its Source tells who
set each key (the recipe file, the command line or the default) for the errors."""

from dataclasses import dataclass, field

import pytest

from humpback.config.parse import Source, build, parse_recipe
from humpback.errors import ConfigError


@dataclass
class Inner:
    n: int = 1
    tags: list[str] = field(default_factory=list)


@dataclass
class Outer:
    name: str
    inner: Inner = field(default_factory=Inner)


def test_the_parser_builds_any_dataclass_with_strict_keys(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("name: x\ninner: {tags: [a]}\n")
    data, src = parse_recipe(recipe, ["inner.n=3"])
    assert build(Outer, data, src) == Outer("x", Inner(3, ["a"]))
    data, src = parse_recipe(recipe, ["inner.tag=[a]"])
    with pytest.raises(ConfigError) as e:
        build(Outer, data, src)
    assert str(e.value) == "command line: unknown key 'inner.tag' (did you mean 'inner.tags'?)"
    data, src = parse_recipe(recipe, ["inner.tags=[a, [b]]"])
    with pytest.raises(ConfigError) as e:
        build(Outer, data, src)
    assert str(e.value) == "command line: 'inner.tags[1]' must be a string, got ['b']"


def test_source_knows_who_set_each_key():
    data = {"seed": {"path": "s"}, "tracking": {"tags": ["a", "b"]}, "train": {"lora_r": 4, "lora_alpha": 8}}
    _, src = parse_recipe(None, ["train={lora_r: 2}", "curate.mode=logits"], data=data)
    assert src.who("seed.path") == "config" and src.who("tracking.tags[1]") == "config"
    assert src.who("seed.format") == "the default" and src.who("curate.threshold") == "the default"
    assert src.who("curate.mode") == "command line" and src.who("curate") == "command line"
    # An override of a whole section replaces what the file had there.
    assert src.who("train.lora_r") == "command line" and src.who("train.lora_alpha") == "the default"
    assert isinstance(src, Source) and src.file == "config"


def test_errors_name_each_key_with_its_source():
    _, src = parse_recipe(None, ["train.lora_r=0"], data={"seed": {"path": "s", "dataset": "d"}})
    assert str(src.invalid("train.lora_r", "must be > 0, got 0")) == "command line: 'train.lora_r' must be > 0, got 0"
    assert str(src.invalid("seed.path", ": no such file 's'")) == "config: 'seed.path': no such file 's'"
    assert src.blame(("seed.path", "seed.dataset"), "set one") == "config: set one"
    assert src.blame(("seed.path", "train.lora_r", "seed.format", "seed.split"), "m") == (
        "seed.path set in config, train.lora_r set on the command line, seed.format and seed.split left at their "
        "defaults: m")
