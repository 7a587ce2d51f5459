"""``builtin:<name>`` references: every asset the project builds or ships, resolved to a local path.

- the embedded tiny default (:mod:`humpback.tiny`): ``tiny-llama``, ``python-docs``, ``python-docs-seed``;
- the controlled world (:mod:`humpback.worlds`): ``world-base``, ``world-seed``, ``world-pool``,
  ``world-eval``, ``world-dev`` (each also as ``world-<name>@SEED``, the world built with that seed);
- real text and pairs (:mod:`humpback.assets`): ``python-reference``, ``python3-doc-html``,
  ``assistant-seed``, ``assistant-dev``;
- real models shipped as GGUF files in Python packages (:mod:`humpback.models.shipped`):
  ``smollm2-135m-instruct``, converted once into a transformers folder.

Anything that is not a ``builtin:`` reference is returned unchanged.
"""

from __future__ import annotations

from .errors import ConfigError


def known() -> tuple[str, ...]:
    from . import assets, tiny, worlds
    from .models.shipped import SHIPPED

    return tiny.BUILTINS + worlds.BUILTINS + assets.BUILTINS + tuple(SHIPPED)


def resolve(ref: str) -> str:
    """The local path a ``builtin:`` reference names (built on first use); any other ``ref`` as it is."""
    if not (isinstance(ref, str) and ref.startswith("builtin:")):
        return ref
    name = ref[len("builtin:"):]
    from . import assets, tiny, worlds
    from .models.shipped import SHIPPED

    if name in tiny.BUILTINS:
        return str(tiny.materialize(name))
    if worlds.is_world(name):
        return str(worlds.materialize(name))
    if name in assets.BUILTINS:
        return str(assets.materialize(name))
    if name in SHIPPED:
        from .models.gguf import convert

        return str(convert(SHIPPED[name].path(ref), label=ref))
    raise ConfigError(f"unknown builtin {name!r}; known: {', '.join(known())} (the world-* names may end in @SEED)")
