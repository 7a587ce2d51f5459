"""Typed configuration: one dataclass per concern, a YAML recipe whose keys are the field names, and
dotted ``key=value`` overrides from the command line. One parsing path, strict keys; every error names
the key and who set it (the recipe file, the command line, or the default).

- :mod:`.parse`: the recipe parser, which knows no humpback key (YAML, overrides, strict typed keys,
  :class:`Source` and its error helper);
- :mod:`.sections`, :mod:`.augmentation`, :mod:`.judging`: the sections and their checks;
- :mod:`.load`: :class:`RunConfig`, the checks across sections, and :func:`load_config`;
- :mod:`.dump`: the config as plain data (the run's config.yaml) and the documented keys.
"""

from .augmentation import SELF_INSTRUCT_KEYWORDS, AugmentConfig
from .dump import describe_keys, dump_yaml, to_dict
from .judging import EXPECTED_THRESHOLD_WARN, CurateConfig, EvalConfig, PreferencesConfig, config_warnings
from .load import RunConfig, load_config, who_set
from .parse import Source
from .sections import (DPO_LOSS_TYPES, CorpusConfig, DPOSettings, GenerationConfig, SeedConfig, TrackingConfig,
                       TrainConfig, WorkersConfig)

__all__ = [
    "DPO_LOSS_TYPES", "EXPECTED_THRESHOLD_WARN", "SELF_INSTRUCT_KEYWORDS", "AugmentConfig", "CorpusConfig",
    "CurateConfig", "DPOSettings", "EvalConfig", "GenerationConfig", "PreferencesConfig", "RunConfig", "SeedConfig",
    "Source", "TrackingConfig", "TrainConfig", "WorkersConfig", "config_warnings", "describe_keys", "dump_yaml",
    "load_config", "to_dict", "who_set",
]
