"""Late fusion: one vector per modality, averaged over the modalities each sample has."""

from __future__ import annotations

import torch
from torch import nn

from polymodal.types import FusionOutput, Tokens
from polymodal.fusion.base import FUSIONS, Fusion


@FUSIONS.register("late")
class LateFusion(Fusion):
    """Per modality: masked-mean pool -> MLP -> v_m; pooled = mean of v_m over the sample's present modalities
    (a learned vector when none is present). Under a linear head this is the average of per-modality logits."""

    def __init__(self, names: list[str], dim: int, *, dropout: float = 0.1, hidden: int | None = None) -> None:
        super().__init__(names, dim)
        hidden = hidden or dim
        self.mlps = nn.ModuleDict(
            {
                m: nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, dim))
                for m in self.names
            }
        )
        self.nothing = nn.Parameter(torch.zeros(dim))  # output for a sample with no modality at all

    def forward(self, tokens: dict[str, Tokens]) -> FusionOutput:
        per_modality = {m: self.mlps[m](tokens[m].pooled()) for m in self.names}
        v = torch.stack([per_modality[m] for m in self.names], dim=1)  # [B, M, D]
        w = torch.stack([tokens[m].present for m in self.names], dim=1).to(v.dtype)  # [B, M]
        count = w.sum(dim=1, keepdim=True)
        # torch.where rather than multiplying by w, so an absent modality's vector cannot leak even if it were inf.
        summed = torch.where(w[..., None] > 0, v, torch.zeros_like(v)).sum(dim=1)
        mean = summed / count.clamp_min(1.0)
        pooled = torch.where(count > 0, mean, self.nothing.expand_as(mean))
        return FusionOutput(pooled=pooled, per_modality=per_modality)
