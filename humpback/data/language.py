"""Language identification of segments, for ``corpus.language`` (the paper used English segments only).

``py3langid`` (the maintained fork of langid.py, Lui & Baldwin 2012: a naive Bayes model over byte
n-grams) ships its model inside the package, so nothing is downloaded at run time; the model is loaded
once per process, when a filter is first made. Codes are ISO 639-1 (``en``, ``de``).
"""

from __future__ import annotations

from functools import cache

from ..errors import ConfigError


@cache
def _identifier():
    from py3langid.langid import MODEL_FILE, LanguageIdentifier

    return LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=False)


def known_languages() -> list[str]:
    """The ISO 639-1 codes the model can tell apart."""
    return sorted(_identifier().labels)


def language_of(text: str) -> str:
    """The most likely language of ``text`` (an ISO 639-1 code)."""
    return _identifier().classify(text)[0]


class LanguageFilter:
    """Keeps texts identified as ``language``; the code is checked against the model's when made."""

    def __init__(self, language: str, key: str = "corpus.language") -> None:
        known = known_languages()
        if language not in known:
            raise ConfigError(f"'{key}': {language!r} is not a language the identifier knows "
                              f"(ISO 639-1 codes: {', '.join(known)})")
        self.language = language

    def keeps(self, text: str) -> bool:
        return language_of(text) == self.language
