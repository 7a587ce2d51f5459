"""The decode loop of the ``hf`` backend, over any ``transformers`` causal LM with a KV cache.

What it does beyond ``model.generate`` for this workload:

- **Shared-prefix prefill.** When every prompt of a call starts with the same tokens (the judge
  prompt's rubric is most of each curation prompt; the backward prompt's preamble and chat header
  start every augmentation prompt), that prefix runs through the model once and its KV cache
  is copied into each batch. Each row is laid out as ``[prefix][padding][own tokens]``, the padding
  masked out and positions counted past it, so the result is what the full prompt gives.
- **Per-prompt random streams.** Row ``b`` draws its uniforms from its own seed, so a prompt's sample
  does not depend on which prompts share its batch, the batch size or the sort order.
- **Finished rows leave the batch**, cache and all, so a batch does not keep paying for rows that
  reached EOS while one long answer goes on.
- **A KV cache with room reserved** for the whole answer (:class:`ReservedLayer`): each step writes its
  keys and values in place, where transformers' ``DynamicCache`` concatenates, copying the whole cache
  at every step (a quarter of a 16-row decode step on the tiny CPU model).
- Sampling is :mod:`humpback.generation.sampling` (fast exact nucleus sampling).

The cache goes to the model under the name its ``forward`` takes (:func:`cache_argument`, found once
per model): ``cache`` from transformers 5.24, ``past_key_values`` before (deprecated there, gone in 5.40).
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Sequence

import torch
from transformers.cache_utils import DynamicCache, DynamicLayer

from .sampling import choose_tokens

# Below this many shared tokens a separate prefix forward is not worth it.
MIN_SHARED_PREFIX = 16


def shared_prefix_length(rows: Sequence[Sequence[int]], minimum: int = MIN_SHARED_PREFIX) -> int:
    """Tokens every row starts with, leaving each row at least one token of its own; 0 when fewer than
    ``minimum`` (or fewer than two rows)."""
    if len(rows) < 2:
        return 0
    first = rows[0]
    limit = min(len(r) for r in rows) - 1
    n = 0
    while n < limit and all(r[n] == first[n] for r in rows):
        n += 1
    return n if n >= minimum else 0


CACHE_NAMES = ("cache", "past_key_values")  # the current name first


def cache_argument(model) -> str:
    """The name under which ``model``'s forward takes the KV cache: the first of :data:`CACHE_NAMES`
    that its ``forward`` (or, for a wrapper that passes ``**kwargs`` on, such as a ``PeftModel``, the
    model inside it) names. A name the forward does not take would land in its ``**kwargs`` and be
    ignored, the cache with it."""
    seen: set[int] = set()
    while model is not None and id(model) not in seen:
        seen.add(id(model))
        try:
            params = inspect.signature(model.forward).parameters
        except (TypeError, ValueError, AttributeError):
            params = {}
        for name in CACHE_NAMES:
            if name in params:
                return name
        inner = model.get_base_model() if hasattr(model, "get_base_model") else None
        model = inner if inner is not None else getattr(model, "model", None)
    from transformers import __version__

    major, minor = (int(part) for part in __version__.split(".")[:2])
    return "cache" if (major, minor) >= (5, 24) else "past_key_values"


@dataclass
class Prefix:
    """The KV cache of ``ids`` for one row: per layer (keys, values), each ``[1, heads, len, dim]``."""

    ids: list[int]
    layers: list[tuple[torch.Tensor, torch.Tensor]]


@dataclass
class Prefilled:
    """A batch after its prompt forward: logits for the next token and the state to go on from."""

    logits: torch.Tensor  # [B, V]
    cache: object
    mask: torch.Tensor  # [B, prefix + width]
    next_positions: torch.Tensor  # [B]


class Decoder:
    """Prefill and decode for one model (a ``PreTrainedModel`` or a ``PeftModel`` around one)."""

    def __init__(self, model, pad_token_id: int, device: torch.device) -> None:
        self.model = model
        self.pad_token_id = pad_token_id
        self.device = device
        self.cache_name = cache_argument(model)

    # ----------------------------------------------------------------------- prefix

    def prefix(self, rows: Sequence[Sequence[int]], minimum: int = MIN_SHARED_PREFIX) -> Prefix | None:
        """The shared prefix of ``rows`` with its KV cache, or None when there is none worth sharing or
        the model's cache is not a plain growing one (sliding windows, recurrent layers)."""
        n = shared_prefix_length(rows, minimum)
        if not n:
            return None
        ids = list(rows[0][:n])
        cache = self._new_cache()
        with torch.inference_mode():
            self.model(input_ids=torch.tensor([ids], device=self.device), use_cache=True, logits_to_keep=1,
                       **{self.cache_name: cache})
        layers = _plain_layers(cache)
        return Prefix(ids, layers) if layers is not None else None

    # ----------------------------------------------------------------------- prefill and decode

    def prefill(self, rows: Sequence[Sequence[int]], prefix: Prefix | None = None, reserve: int = 0) -> Prefilled:
        """One forward over the batch's prompts (after ``prefix``, whose tokens every row starts with),
        with cache room for ``reserve`` more tokens."""
        p = len(prefix.ids) if prefix else 0
        own = [list(r[p:]) for r in rows]
        width = max(len(r) for r in own)
        ids = torch.tensor([[self.pad_token_id] * (width - len(r)) + r for r in own], dtype=torch.long)
        own_mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in own], dtype=torch.long)
        positions = (p + own_mask.cumsum(-1) - 1).clamp(min=0)
        mask = torch.cat([torch.ones(len(rows), p, dtype=torch.long), own_mask], dim=1)
        cache = self._new_cache(capacity=p + width + reserve)
        if prefix is not None:
            for i, (k, v) in enumerate(prefix.layers):
                cache.update(k.expand(len(rows), -1, -1, -1), v.expand(len(rows), -1, -1, -1), i)
        ids, mask, positions = ids.to(self.device), mask.to(self.device), positions.to(self.device)
        with torch.inference_mode():
            out = self.model(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True,
                             logits_to_keep=1, **{self.cache_name: cache})
        return Prefilled(out.logits[:, -1, :], cache, mask, positions[:, -1] + 1)

    def generate(
        self, rows: Sequence[Sequence[int]], max_new_tokens: int, eos_token_ids: Sequence[int],
        temperature: float = 0.0, top_p: float = 1.0, seeds: Sequence[int] | None = None,
        prefix: Prefix | None = None, presence_penalty: float = 0.0, masks=None,
    ) -> list[list[int]]:
        """New token ids per row, up to and including the first EOS (or ``max_new_tokens`` of them).
        ``presence_penalty`` is taken off the logit of each token the row has already generated.
        ``masks`` (a :class:`humpback.generation.grammar.RowMasks`, one matcher per row): at each step
        the tokens outside a row's format are masked out before choosing, and the chosen one advances it."""
        eos = torch.tensor(sorted(set(eos_token_ids)), dtype=torch.long, device=self.device)
        uniforms = None
        if temperature > 0:
            if seeds is None or len(seeds) != len(rows):
                raise ValueError("sampling needs one seed per row")
            uniforms = torch.stack([torch.rand(max_new_tokens, generator=torch.Generator().manual_seed(int(s)))
                                    for s in seeds]).to(self.device)
        state = self.prefill(rows, prefix, reserve=max_new_tokens)
        logits, cache, mask, positions = state.logits, state.cache, state.mask, state.next_positions
        out: list[list[int]] = [[] for _ in rows]
        active = list(range(len(rows)))  # row of `out` for each row still in the batch
        padded = bool((mask == 0).any())
        seen = torch.zeros(logits.shape, dtype=torch.bool, device=self.device) if presence_penalty else None
        with torch.inference_mode():
            for step in range(max_new_tokens):
                if seen is not None:
                    logits = logits.float() - presence_penalty * seen
                if masks is not None:
                    logits = masks.apply(logits, active)
                picked = choose_tokens(logits, temperature, top_p, None if uniforms is None else uniforms[:, step])
                if masks is not None:
                    masks.advance(active, picked.tolist())
                if seen is not None:
                    seen[torch.arange(len(active), device=self.device), picked] = True
                finished = torch.isin(picked, eos)
                for b, token in enumerate(picked.tolist()):
                    out[active[b]].append(token)
                if step + 1 == max_new_tokens or bool(finished.all()):
                    break
                if bool(finished.any()):
                    keep = (~finished).nonzero().squeeze(-1)
                    cache.batch_select_indices(keep)
                    active = [active[i] for i in keep.tolist()]
                    picked, mask, positions = picked[keep], mask[keep], positions[keep]
                    uniforms = None if uniforms is None else uniforms[keep]
                    seen = None if seen is None else seen[keep]
                    padded = bool((mask == 0).any())
                mask = torch.cat([mask, mask.new_ones(len(active), 1)], dim=1)
                logits = self.model(input_ids=picked.unsqueeze(-1), attention_mask=self._step_mask(mask, padded),
                                    position_ids=positions.unsqueeze(-1), use_cache=True,
                                    **{self.cache_name: cache}).logits[:, -1, :]
                positions = positions + 1
        return out

    # ----------------------------------------------------------------------- helpers

    def _step_mask(self, mask: torch.Tensor, padded: bool) -> torch.Tensor | None:
        """The attention mask for one new token per row: none without padding (one query sees every
        earlier key). With SDPA it is handed over ready-made (``[B, 1, 1, keys]``, True = attend), which
        spares the model building a causal mask at every step; other attention implementations get
        the 2D mask and build their own."""
        if not padded:
            return None
        if getattr(self.model.config, "_attn_implementation", None) == "sdpa":
            return mask.bool()[:, None, None, :]
        return mask

    def _new_cache(self, capacity: int = 0):
        """The model's own growing cache; with a ``capacity``, its plain layers are swapped for
        :class:`ReservedLayer` (sliding-window or recurrent layers stay as the model made them)."""
        cache = DynamicCache(config=self.model.config)
        if capacity > 0 and _plain_layers(cache) is not None:
            cache.layers = [ReservedLayer(capacity) for _ in cache.layers]
        return cache


class ReservedLayer(DynamicLayer):
    """A ``DynamicLayer`` that writes into buffers with room for ``capacity`` tokens (doubling if ever
    outgrown) and hands out views of the filled part, instead of concatenating at every step."""

    def __init__(self, capacity: int) -> None:
        super().__init__()
        self.capacity = capacity
        self.length = 0
        self._keys = self._values = None

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs):
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        end = self.length + key_states.shape[-2]
        if self._keys is None or end > self._keys.shape[-2]:
            self._grow(key_states, value_states, max(end, self.capacity, 2 * self.length))
        self._keys[..., self.length:end, :].copy_(key_states)
        self._values[..., self.length:end, :].copy_(value_states)
        self._bind(end)
        return self.keys, self.values

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        if self._keys is not None:
            self._keys, self._values = self._keys[indices], self._values[indices]
            self._bind(self.length)

    def batch_repeat_interleave(self, repeats: int) -> None:
        if self._keys is not None:
            self._keys = self._keys.repeat_interleave(repeats, dim=0)
            self._values = self._values.repeat_interleave(repeats, dim=0)
            self._bind(self.length)

    def crop(self, tokens_to_remove: int) -> None:
        if tokens_to_remove > 0:
            raise ValueError(f"crop takes a negative count of tokens to remove, got {tokens_to_remove}")
        self._bind(max(0, self.length + tokens_to_remove))

    def reset(self) -> None:
        self._keys = self._values = self.keys = self.values = None
        self.length = 0
        self.is_initialized = False

    def _grow(self, key_states: torch.Tensor, value_states: torch.Tensor, capacity: int) -> None:
        def buffer(like: torch.Tensor, old: torch.Tensor | None) -> torch.Tensor:
            new = like.new_empty(like.shape[0], like.shape[1], capacity, like.shape[-1])
            if old is not None and self.length:
                new[..., :self.length, :].copy_(old[..., :self.length, :])
            return new

        self._keys, self._values = buffer(key_states, self._keys), buffer(value_states, self._values)

    def _bind(self, length: int) -> None:
        self.length = length
        self.keys = self._keys[..., :length, :]
        self.values = self._values[..., :length, :]


def _plain_layers(cache) -> list[tuple[torch.Tensor, torch.Tensor]] | None:
    """Per-layer (keys, values) of a cache made only of plain growing layers, else None."""
    layers = getattr(cache, "layers", None)
    if not layers or any(type(layer) not in (DynamicLayer, ReservedLayer) for layer in layers):
        return None
    return [(layer.keys, layer.values) for layer in layers]
