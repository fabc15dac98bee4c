"""Matryoshka / M3 nested token budgets: 2-D average pooling of a patch grid to about 1/factor^2 tokens.

A grid ``(H, W)`` becomes ``(ceil(H / f), ceil(W / f))`` (ceil mode: edge cells average the patches they
cover). The average is over *real* patches only, weighted by ``size``; a cell with no real patch is padding.
``Pool`` is the ``pool`` token reducer (``REDUCERS``): ``pool_to`` the grid shape closest to a budget's count.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from polymodal.tokens.registry import REDUCERS, TokenReducer
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


def pool_shape(grid: tuple[int, int], target: int) -> tuple[int, int]:
    """The pooled grid ``(h', w')`` with ``h' * w'`` closest to ``target`` keeping the aspect ratio (h' <= h, w' <= w).

    A 1-D sequence is the grid ``(1, n)``: it pools to ``(1, target)``.
    """
    h, w = grid
    target = max(1, min(int(target), h * w))
    if h == 1 or w == 1:
        return (1, target) if h == 1 else (target, 1)
    scale = (target / (h * w)) ** 0.5
    best = None
    for hp in {max(1, min(h, math.floor(h * scale))), max(1, min(h, math.ceil(h * scale)))}:
        wp = max(1, min(w, round(target / hp)))
        key = (abs(hp * wp - target), abs(hp / wp - h / w))
        if best is None or key < best[0]:
            best = (key, (hp, wp))
    return best[1]


def _bins(n: int, out: int, device) -> Tensor:
    """``[out, n]`` 0/1 matrix: input ``j`` belongs to output bin ``floor(j * out / n)`` (contiguous, disjoint)."""
    j = torch.arange(n, device=device)
    return (torch.div(j * out, n, rounding_mode="floor")[None] == torch.arange(out, device=device)[:, None]).float()


def pool_to(
    tokens: Tokens,
    grid: tuple[int, int],
    out_grid: tuple[int, int],
    protected: int = 0,
    size: Tensor | None = None,
) -> tuple[Tokens, Tensor]:
    """Average-pool patch tokens on ``grid`` (row-major) to any smaller ``out_grid`` (M3-style nested budgets).

    Each output cell averages a contiguous block of input rows x columns (blocks are disjoint, so ``size`` is
    conserved exactly); the average is over real tokens weighted by ``size`` and a cell with no real token is
    padding. ``out_grid == grid`` returns the input unchanged (exact no-op).
    """
    x, mask = tokens.x, tokens.mask
    b, n, _ = x.shape
    (h, w), (hp, wp) = grid, out_grid
    if n != protected + h * w:
        raise ValueError(f"pool_to: {n} tokens != protected {protected} + grid {h}x{w}")
    if not (1 <= hp <= h and 1 <= wp <= w):
        raise ValueError(f"pool_to: output grid {out_grid} must fit inside {grid}")
    size = x.new_ones(b, n) if size is None else size.reshape(b, n)
    if (hp, wp) == (h, w):
        return tokens, size
    p = torch.kron(_bins(h, hp, x.device), _bins(w, wp, x.device)).to(x.dtype)  # [h'w', hw]
    real = mask[:, protected:]
    weight = (size[:, protected:] * real)[..., None].to(x.dtype)
    patches = torch.where(real[..., None], x[:, protected:], 0.0)
    csize = p @ weight  # [B, h'w', 1]
    cx = (p @ (patches * weight)) / csize.clamp_min(torch.finfo(x.dtype).tiny)
    cmask = (p @ real[..., None].to(x.dtype))[..., 0] > 0
    out = Tokens(torch.cat([x[:, :protected], cx], 1), torch.cat([mask[:, :protected], cmask], 1), tokens.present)
    return out, torch.cat([size[:, :protected], csize[..., 0].to(size.dtype)], 1)


@REDUCERS.register("pool")
class Pool(TokenReducer):
    """Matryoshka / M3: average pooling of the patch grid (or of the time axis) to the budget's grid shape."""

    name = "pool"
    primitive = staticmethod(pool_grid)

    def reduce(self, tokens, size, target, grid, metric, importance):
        g = grid or (1, tokens.x.shape[1])
        out_grid = pool_shape(g, target)
        out, size = pool_to(tokens, g, out_grid, size=size)
        return out, size, out_grid

    def plan(self, counts, n, grid):
        """The exact pooled-grid sizes (``pool_shape``), which can differ from the target by a few tokens."""
        g = grid or (1, n)
        out = []
        for c in counts:
            if c < g[0] * g[1]:
                g = pool_shape(g, c)
            out.append(g[0] * g[1])
        return out
