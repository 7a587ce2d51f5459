"""The pieces of the hf backend's decode loop: next-token choice (humpback.generation.sampling), checked
exactly against transformers' own nucleus filter and by hand; the shared-prefix arithmetic; the KV cache
layer with reserved room against transformers' concatenating one. The loop itself runs on the tiny model
in test_generation_hf.py."""

from __future__ import annotations

import math

import pytest
import torch

from humpback.generation.decoding import ReservedLayer, shared_prefix_length
from humpback.generation.sampling import choose_tokens, nucleus_threshold, sorted_descending


def test_sorted_descending_matches_torch_sort():
    x = torch.randn(7, 301, generator=torch.Generator().manual_seed(0))
    assert torch.equal(sorted_descending(x), torch.sort(x, dim=-1, descending=True).values)


@pytest.mark.parametrize("top_p", [0.1, 0.5, 0.9, 0.95, 0.999])
@pytest.mark.parametrize("scale", [0.3, 1.0, 4.0])
def test_nucleus_keeps_what_transformers_keeps(top_p, scale):
    from transformers.generation.logits_process import TopPLogitsWarper

    logits = torch.randn(64, 500, generator=torch.Generator().manual_seed(int(top_p * 1000 + scale * 10))) * scale
    theirs = TopPLogitsWarper(top_p)(torch.zeros(64, 1, dtype=torch.long), logits.clone()) > float("-inf")
    ours = logits >= nucleus_threshold(logits, top_p)
    assert torch.equal(ours, theirs)
    # And it is the smallest head of the ranking whose mass reaches top_p.
    probs = torch.softmax(logits, -1)
    kept_mass = (probs * ours).sum(-1)
    assert bool((kept_mass >= top_p - 1e-6).all())
    smallest_kept = probs.masked_fill(~ours, 2.0).min(-1).values
    assert bool((kept_mass - smallest_kept < top_p + 1e-6).all())


def test_nucleus_always_keeps_the_most_probable_token():
    logits = torch.tensor([[10.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    thr = nucleus_threshold(logits, 0.01)
    assert thr.tolist() == [[10.0], [0.0]]  # a tie at the threshold keeps every tied token


def test_greedy_is_argmax():
    logits = torch.tensor([[0.1, 3.0, 2.0], [5.0, -1.0, 4.9]])
    assert choose_tokens(logits, temperature=0.0).tolist() == [1, 0]


def test_draw_inverts_the_cumulative_distribution():
    probs = torch.tensor([0.1, 0.2, 0.3, 0.4])
    logits = probs.log().repeat(6, 1)
    uniforms = torch.tensor([0.0, 0.05, 0.0999, 0.1001, 0.55, 0.9999])
    assert choose_tokens(logits, 1.0, 1.0, uniforms).tolist() == [0, 0, 0, 1, 2, 3]
    # Temperature 0.5 squares and renormalises: p ~ (.01, .04, .09, .16) / .30.
    sharpened = choose_tokens(logits[:3], 0.5, 1.0, torch.tensor([0.03, 0.04, 0.5]))
    assert sharpened.tolist() == [0, 1, 3]


def test_tokens_outside_the_nucleus_or_without_mass_are_never_drawn():
    logits = torch.tensor([[2.0, 1.0, float("-inf"), 0.0, -30.0]]).repeat(2000, 1)
    uniforms = torch.rand(2000, generator=torch.Generator().manual_seed(1))
    drawn = choose_tokens(logits, 1.0, 0.8, uniforms)
    p = torch.softmax(logits[0], -1)
    assert p[0] < 0.8 <= p[0] + p[1]  # so the nucleus is {0, 1}
    assert set(drawn.tolist()) == {0, 1}
    share0 = (drawn == 0).float().mean().item()
    expected = (p[0] / (p[0] + p[1])).item()
    assert abs(share0 - expected) < 4 * math.sqrt(expected * (1 - expected) / 2000)


def test_sampling_needs_one_uniform_per_row():
    with pytest.raises(ValueError, match="one uniform per row"):
        choose_tokens(torch.zeros(3, 5), 0.7, 0.9, torch.zeros(2))
    with pytest.raises(ValueError, match="one uniform per row"):
        choose_tokens(torch.zeros(3, 5), 0.7, 0.9, None)


def test_shared_prefix_length():
    a = list(range(40))
    assert shared_prefix_length([a, a[:30] + [99] * 5]) == 30
    assert shared_prefix_length([a, a]) == 39  # each row keeps one token of its own
    assert shared_prefix_length([a, a[:20] + [7]], minimum=16) == 20
    assert shared_prefix_length([a, a[:10] + [7]]) == 0  # too short to be worth a forward
    assert shared_prefix_length([a]) == 0  # nothing to share with
    assert shared_prefix_length([a, [5] + a[1:]]) == 0


def test_reserved_layer_holds_what_the_concatenating_layer_holds():
    from transformers.cache_utils import DynamicLayer

    g = torch.Generator().manual_seed(0)
    reserved, plain = ReservedLayer(capacity=6), DynamicLayer()
    for n in (4, 1, 1, 3):  # a prefill, two steps, then past the reserved room (it grows)
        k, v = torch.randn(3, 2, n, 5, generator=g), torch.randn(3, 2, n, 5, generator=g)
        got, want = reserved.update(k, v, 0), plain.update(k, v, 0)
        assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])
    assert reserved.get_seq_length() == plain.get_seq_length() == 9
    keep = torch.tensor([2, 0])
    reserved.batch_select_indices(keep)
    plain.batch_select_indices(keep)
    k, v = torch.randn(2, 2, 1, 5, generator=g), torch.randn(2, 2, 1, 5, generator=g)
    got, want = reserved.update(k, v, 0), plain.update(k, v, 0)
    assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1]) and got[0].shape == (2, 2, 10, 5)
    reserved.crop(-4)
    assert reserved.get_seq_length() == 6 and torch.equal(reserved.keys, want[0][..., :6, :])
    reserved.batch_repeat_interleave(2)
    assert torch.equal(reserved.keys, want[0][..., :6, :].repeat_interleave(2, dim=0))
    reserved.reset()
    assert reserved.get_seq_length() == 0
    k, v = torch.randn(1, 2, 2, 5, generator=g), torch.randn(1, 2, 2, 5, generator=g)
    got = reserved.update(k, v, 0)
    assert torch.equal(got[0], k) and torch.equal(got[1], v)
