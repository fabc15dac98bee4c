"""Importance pruning and VisionZip-style contextual tokens."""

from __future__ import annotations

import torch

from polymodal.tokens import REDUCERS, prune_by_importance, zip_tokens
from polymodal.types import Tokens


def _tokens(x, mask=None, present=None):
    b, n, _ = x.shape
    mask = torch.ones(b, n, dtype=torch.bool) if mask is None else mask
    present = torch.ones(b, dtype=torch.bool) if present is None else present
    return Tokens(x, mask, present)


def test_registered():
    assert REDUCERS.get("prune").primitive is prune_by_importance
    assert REDUCERS.get("zip").primitive is zip_tokens


def test_keeps_top_scores_in_original_order_and_protected():
    x = torch.arange(6.0).reshape(1, 6, 1)
    scores = torch.tensor([[-9.0, 0.1, 0.9, 0.2, 0.8, 0.3]])  # token 0 is protected despite its score
    out, size = prune_by_importance(_tokens(x), scores, keep=2, protected=1)
    assert out.x[0, :, 0].tolist() == [0.0, 2.0, 4.0]
    assert out.mask.all() and torch.equal(size, torch.ones(1, 3))


def test_keep_all_is_exact_noop():
    tok = _tokens(torch.randn(2, 5, 3))
    out, size = prune_by_importance(tok, torch.randn(2, 5), keep=4, protected=1, context=2)
    assert out is tok and torch.equal(size, torch.ones(2, 5))


def test_masked_never_ahead_of_real_and_variable_counts_padded():
    x = torch.arange(12.0).reshape(2, 6, 1)
    mask = torch.tensor([[True] * 6, [True, True, True, False, False, False]])
    scores = torch.tensor([[0.0, 1, 2, 3, 4, 5], [0.0, -5, -4, 9, 9, 9]])  # padded tokens score highest
    out, size = prune_by_importance(_tokens(x, mask), scores, keep=3, protected=1)
    assert out.x.shape == (2, 4, 1)
    assert out.x[0, :, 0].tolist() == [0.0, 3.0, 4.0, 5.0] and out.mask[0].all()
    # sample 1 has only 2 unprotected real tokens: both kept, then one padded slot
    assert out.x[1, :3, 0].tolist() == [6.0, 7.0, 8.0] and out.mask[1].tolist() == [True, True, True, False]


def test_masked_values_do_not_matter():
    g = torch.Generator().manual_seed(0)
    x, scores = torch.randn(3, 10, 4, generator=g), torch.randn(3, 10, generator=g)
    mask = torch.rand(3, 10, generator=g) > 0.3
    mask[:, 0] = True
    a, sa = prune_by_importance(_tokens(x, mask), scores, keep=4, protected=1, context=2)
    x2 = torch.where(mask[..., None], x, 1e6)
    s2 = torch.where(mask, scores, 1e6)
    b, sb = prune_by_importance(_tokens(x2, mask), s2, keep=4, protected=1, context=2)
    assert torch.equal(a.mask, b.mask) and torch.equal(sa, sb)
    assert torch.allclose(a.x[a.mask], b.x[b.mask])


def test_context_tokens_group_dropped_tokens():
    # token 3 is kept; dropped tokens 1, 2, 4, 5 form two clusters: {1, 2} near e0 and {4, 5} near e1
    x = torch.tensor([[[9.0, 9], [1, 0], [1, 0.2], [5, 5], [0, 1], [0.2, 1]]])
    scores = torch.tensor([[0.0, 0, 0, 1, 0, 0]])
    out, size = prune_by_importance(_tokens(x), scores, keep=1, protected=1, context=2)
    assert out.x.shape == (1, 4, 2)  # protected + keep + context
    assert out.x[0, :2].tolist() == [[9.0, 9.0], [5.0, 5.0]]
    # targets evenly spaced over the 4 dropped tokens: ranks 0 and 4 // 2 = 2, i.e. tokens 1 and 4;
    # token 2 is most similar to target 1 and token 5 to target 4
    assert torch.allclose(out.x[0, 2], (x[0, 1] + x[0, 2]) / 2)
    assert torch.allclose(out.x[0, 3], (x[0, 4] + x[0, 5]) / 2)
    assert size[0].tolist() == [1.0, 1.0, 2.0, 2.0] and out.mask.all()


def test_context_conserves_size_and_mean():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(4, 16, 8, generator=g)
    mask = torch.ones(4, 16, dtype=torch.bool)
    mask[1, 10:] = False
    mask[2, 3:] = False  # only 2 unprotected real tokens: fewer dropped than context slots
    tok = _tokens(x, mask, torch.tensor([True, True, True, False]))
    size = torch.randint(1, 4, (4, 16)).float()
    out, new = prune_by_importance(tok, torch.randn(4, 16, generator=g), keep=5, protected=1, context=3, size=size)
    assert out.x.shape == (4, 9, 8) and torch.isfinite(out.x).all()
    assert torch.allclose((new * out.mask).sum(1), (size * mask).sum(1))
    w_in, w_out = (size * mask)[..., None], (new * out.mask)[..., None]
    assert torch.allclose((out.x * w_out).sum(1), (x * w_in).sum(1), atol=1e-4)
    assert out.mask[2].tolist() == [True, True, True] + [False] * 6


def test_batch_independence_and_gradients():
    g = torch.Generator().manual_seed(2)
    x = torch.randn(3, 10, 4, generator=g, requires_grad=True)
    scores = torch.randn(3, 10, generator=g)
    out, size = prune_by_importance(_tokens(x), scores, keep=3, protected=1, context=2)
    for b in range(3):
        o, s = prune_by_importance(_tokens(x[b : b + 1]), scores[b : b + 1], keep=3, protected=1, context=2)
        assert torch.allclose(o.x, out.x[b : b + 1]) and torch.equal(s, size[b : b + 1])
    out.x.sum().backward()
    assert torch.isfinite(x.grad).all()
