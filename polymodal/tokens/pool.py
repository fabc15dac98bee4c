"""Matryoshka / M3 nested token budgets: 2-D average pooling of a patch grid to about 1/factor^2 tokens.

A grid ``(H, W)`` becomes ``(ceil(H / f), ceil(W / f))`` (ceil mode: edge cells average the patches they
cover). The average is over *real* patches only, weighted by ``size``; a cell with no real patch is padding.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from polymodal.types import Tokens


def pooled_grid(grid: tuple[int, int], factor: int) -> tuple[int, int]:
    """The grid shape after ``pool_grid`` with this ``factor`` (ceil mode)."""
    return math.ceil(grid[0] / factor), math.ceil(grid[1] / factor)


def _cell_sums(t: Tensor, grid: tuple[int, int], f: int) -> Tensor:
    """``t[B, H*W, C]`` -> per-cell sums ``[B, H'*W', C]`` (zero-padding the grid up to a multiple of f)."""
    (h, w), (hp, wp) = grid, pooled_grid(grid, f)
    b, _, c = t.shape
    t = t.reshape(b, h, w, c)
    t = torch.nn.functional.pad(t, (0, 0, 0, wp * f - w, 0, hp * f - h))
    return t.reshape(b, hp, f, wp, f, c).sum(dim=(2, 4)).reshape(b, hp * wp, c)


def pool_grid(
    tokens: Tokens,
    grid: tuple[int, int],
    factor: int,
    protected: int = 0,
    size: Tensor | None = None,
) -> tuple[Tokens, Tensor]:
    """Average-pool the patch tokens laid out row-major on ``grid = (H, W)`` by ``factor`` in both directions.

    ``tokens.x`` is ``[B, protected + H*W, D]``; the ``protected`` leading tokens pass through. Returns
    ``(Tokens[B, protected + H'*W', D], size)`` where ``size`` sums the sizes (default ones) of the real
    patches in each cell. ``factor == 1`` returns the input unchanged (exact no-op).
    """
    x, mask = tokens.x, tokens.mask
    b, n, _ = x.shape
    h, w = grid
    if n != protected + h * w:
        raise ValueError(f"pool_grid: {n} tokens != protected {protected} + grid {h}x{w}")
    if factor < 1:
        raise ValueError(f"pool_grid: factor must be >= 1, got {factor}")
    size = x.new_ones(b, n) if size is None else size.reshape(b, n)
    if factor == 1:
        return tokens, size
    weight = (size * mask)[:, protected:, None].to(x.dtype)  # padding weighs nothing
    patches = torch.where(mask[:, protected:, None], x[:, protected:], 0.0)  # nor leaks its values
    csize = _cell_sums(weight, grid, factor)
    cx = _cell_sums(patches * weight, grid, factor) / csize.clamp_min(torch.finfo(x.dtype).tiny)
    cmask = _cell_sums(mask[:, protected:, None].to(x.dtype), grid, factor)[..., 0] > 0
    out = Tokens(torch.cat([x[:, :protected], cx], 1), torch.cat([mask[:, :protected], cmask], 1), tokens.present)
    return out, torch.cat([size[:, :protected], csize[..., 0].to(size.dtype)], 1)
