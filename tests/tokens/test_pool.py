"""Matryoshka / M3 grid pooling."""

from __future__ import annotations

import pytest
import torch

from polymodal.tokens import REDUCERS, pool_grid, pooled_grid
from polymodal.types import Tokens


def _tokens(x, mask=None):
    b, n, _ = x.shape
    mask = torch.ones(b, n, dtype=torch.bool) if mask is None else mask
    return Tokens(x, mask, torch.ones(b, dtype=torch.bool))


def test_registered():
    assert REDUCERS.get("pool").primitive is pool_grid


def test_divisible_grid_matches_avg_pool2d():
    x = torch.randn(2, 1 + 4 * 6, 3)
    out, size = pool_grid(_tokens(x), (4, 6), 2, protected=1)
    img = x[:, 1:].reshape(2, 4, 6, 3).permute(0, 3, 1, 2)
    ref = torch.nn.functional.avg_pool2d(img, 2).permute(0, 2, 3, 1).reshape(2, 6, 3)
    assert torch.allclose(out.x[:, 1:], ref, atol=1e-6) and torch.equal(out.x[:, :1], x[:, :1])
    assert torch.equal(size, torch.tensor([[1.0] + [4.0] * 6] * 2)) and out.mask.all()


def test_ceil_mode_on_odd_grid():
    # 3x3 grid of values 0..8, factor 2 -> 2x2 cells: {0,1,3,4}, {2,5}, {6,7}, {8}
    x = torch.arange(9.0).reshape(1, 9, 1)
    out, size = pool_grid(_tokens(x), (3, 3), 2)
    assert pooled_grid((3, 3), 2) == (2, 2)
    assert out.x[0, :, 0].tolist() == [2.0, 3.5, 6.5, 8.0]
    assert size[0].tolist() == [4.0, 2.0, 2.0, 1.0]
    img = x.reshape(1, 1, 3, 3)
    ref = torch.nn.functional.avg_pool2d(img, 2, ceil_mode=True).flatten()
    assert torch.allclose(out.x[0, :, 0], ref)  # same as torch's ceil mode (edge windows clipped)


def test_factor_one_is_exact_noop():
    tok = _tokens(torch.randn(2, 5, 3))
    out, size = pool_grid(tok, (1, 5), 1)
    assert out is tok and torch.equal(size, torch.ones(2, 5))


def test_masks_pooled_and_padding_ignored():
    x = torch.arange(16.0).reshape(1, 16, 1)
    mask = torch.ones(1, 16, dtype=torch.bool)
    mask[0, 8:] = False  # bottom half of the 4x4 grid is padding
    mask[0, 1] = False
    out, size = pool_grid(_tokens(x, mask), (4, 4), 2)
    assert out.mask[0].tolist() == [True, True, False, False]
    assert out.x[0, 0, 0] == (0 + 4 + 5) / 3 and size[0].tolist() == [3.0, 4.0, 0.0, 0.0]
    x2 = torch.where(mask[..., None], x, 1e6)
    out2, _ = pool_grid(_tokens(x2, mask), (4, 4), 2)
    assert torch.equal(out.x[out.mask], out2.x[out2.mask]) and torch.isfinite(out2.x).all()


def test_nested_pooling_weights_by_size():
    # pooling 6x6 by 2 then by 2 (with sizes) equals pooling by 4 (ceil): nested Matryoshka budgets
    x = torch.randn(2, 36, 4)
    a, sa = pool_grid(_tokens(x), (6, 6), 2)
    b, sb = pool_grid(a, pooled_grid((6, 6), 2), 2, size=sa)
    c, sc = pool_grid(_tokens(x), (6, 6), 4)
    assert torch.allclose(b.x, c.x, atol=1e-6) and torch.equal(sb, sc)


def test_bad_shape_raises():
    with pytest.raises(ValueError, match="grid"):
        pool_grid(_tokens(torch.randn(1, 10, 2)), (3, 3), 2)
