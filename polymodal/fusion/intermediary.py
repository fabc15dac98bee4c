"""Token-level intermediary fusion (the TIMF idea of the GAMUS benchmark): modalities resampled to one shared token
grid, mixed cell by cell with adaptive weights. Meant for spatially aligned modalities (RGB + height map, two
sensors of one recording), where cell ``g`` of every modality covers the same region or time span.

1. Resample: each sample's REAL tokens of modality ``m`` are average-pooled to ``grid`` cells exactly like
   ``F.adaptive_avg_pool1d`` over that sample's real-token sequence (cell ``g`` averages real tokens with rank in
   ``[floor(g n / G), ceil((g + 1) n / G))``, ``n`` = number of real tokens), so padding never enters a cell and
   sequences of different lengths land on the same grid. Then ``u_m = LN(Linear(cell))``.
2. Gate: per cell, ``softmax_m(gate(cat_m u_m) + cell_bias[g])`` over the modalities present there; an absent
   modality's slot in the gate's input is its learned ``missing`` vector, and it gets no weight.
3. ``fused[g] = sum_m w_m u_m``; ``pooled`` = LayerNorm(mean over cells); a sample with no modality gets the
   learned ``nothing`` vector.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from polymodal.types import FusionOutput, Tokens
from polymodal.fusion.base import FUSIONS, Fusion


def grid_pool(t: Tokens, grid: int) -> tuple[Tensor, Tensor]:
    """Adaptive average pooling of each sample's real tokens to ``grid`` cells: ``x[B, G, D]``, ``cell_mask[B, G]``
    (False where the sample has no real token of this modality)."""
    valid = t.valid
    n = valid.sum(1, keepdim=True)  # [B, 1]
    rank = (valid.cumsum(1) - 1)[:, None, :]  # [B, 1, N]: position among the sample's real tokens
    cells = torch.arange(grid, device=valid.device)[None]  # [1, G]
    start = (cells * n) // grid
    end = -((-(cells + 1) * n) // grid)  # ceil
    member = valid[:, None, :] & (rank >= start[..., None]) & (rank < end[..., None])  # [B, G, N]
    w = member.to(t.x.dtype)
    count = w.sum(-1)
    x = torch.where(valid[..., None], t.x, torch.zeros_like(t.x))
    return (w @ x) / count.clamp_min(1)[..., None], count > 0


@FUSIONS.register("intermediary")
class IntermediaryFusion(Fusion):
    """Token-level adaptive fusion on a shared grid (GAMUS TIMF): per-cell softmax weights over present modalities
    from a learned gate, mixing modality tokens resampled to ``grid`` cells (default 16)."""

    def __init__(
        self, names: list[str], dim: int, *, grid: int = 16, hidden: int | None = None, dropout: float = 0.1
    ) -> None:
        super().__init__(names, dim)
        if grid < 1:
            raise ValueError(f"intermediary needs grid >= 1, got {grid}")
        m, hidden = len(self.names), hidden or dim
        self.grid = grid
        self.proj = nn.ModuleDict({k: nn.Sequential(nn.Linear(dim, dim), nn.LayerNorm(dim)) for k in self.names})
        self.missing = nn.ParameterDict({k: nn.Parameter(torch.randn(dim) * 0.02) for k in self.names})
        self.gate = nn.Sequential(nn.Linear(m * dim, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, m))
        self.cell_bias = nn.Parameter(torch.zeros(grid, m))
        self.norm = nn.LayerNorm(dim)
        self.nothing = nn.Parameter(torch.zeros(dim))
        self.last_weights: Tensor | None = None  # [B, G, M] gate weights of the last forward (for inspection)

    def forward(self, tokens: dict[str, Tokens]) -> FusionOutput:
        cells, avail = [], []
        for k in self.names:
            x, ok = grid_pool(tokens[k], self.grid)
            cells.append(self.proj[k](x))
            avail.append(ok & tokens[k].present[:, None])
        u = torch.stack(cells, dim=2)  # [B, G, M, D]
        a = torch.stack(avail, dim=2)  # [B, G, M]
        missing = torch.stack([self.missing[k] for k in self.names])  # [M, D]
        gate_in = torch.where(a[..., None], u, missing.expand_as(u)).flatten(2)  # [B, G, M*D]
        logits = (self.gate(gate_in) + self.cell_bias).masked_fill(~a, float("-inf"))
        cell = a.any(-1)  # [B, G]
        w = torch.softmax(logits.masked_fill(~cell[..., None], 0.0), dim=-1)
        w = torch.where(a, w, torch.zeros_like(w))
        self.last_weights = w.detach()
        fused = torch.where(a[..., None], w[..., None] * u, torch.zeros_like(u)).sum(2)  # [B, G, D]
        any_cell = cell.any(1, keepdim=True)
        pooled = torch.where(any_cell, self.norm(Tokens(fused, cell, any_cell[:, 0]).pooled()), self.nothing)
        per_modality = {
            k: self.norm(Tokens(u[:, :, i], a[..., i], a[:, :, i].any(1)).pooled()) for i, k in enumerate(self.names)
        }
        return FusionOutput(pooled=pooled, per_modality=per_modality, tokens=Tokens(fused, cell, any_cell[:, 0]))
