"""Concatenation fusion: one normalised vector per modality (a learned stand-in when absent), concatenated."""

from __future__ import annotations

import torch
from torch import nn

from polymodal.types import FusionOutput, Tokens
from polymodal.fusion.base import FUSIONS, Fusion


@FUSIONS.register("concat")
class ConcatFusion(Fusion):
    """Per modality: masked-mean pool -> Linear -> LayerNorm = u_m, replaced by a learned per-modality "missing"
    embedding where the sample lacks the modality; concat(u_m) -> MLP -> pooled.

    ``missing="zero"`` replaces an absent modality's vector by zeros instead (zero imputation, MultiModN's
    "P-Fusion" baseline): kept for robustness studies, since a zero vector is a value the model can confuse
    with real content, unlike a learned embedding that only ever means "absent"."""

    def __init__(
        self, names: list[str], dim: int, *, dropout: float = 0.1, hidden: int | None = None, missing: str = "learned"
    ) -> None:
        super().__init__(names, dim)
        if missing not in ("learned", "zero"):
            raise ValueError(f"concat missing= must be 'learned' or 'zero', got {missing!r}")
        self.missing_mode = missing
        hidden = hidden or 2 * dim
        self.proj = nn.ModuleDict({m: nn.Sequential(nn.Linear(dim, dim), nn.LayerNorm(dim)) for m in self.names})
        self.missing = nn.ParameterDict({m: nn.Parameter(torch.randn(dim) * 0.02) for m in self.names})
        self.mlp = nn.Sequential(
            nn.Linear(len(self.names) * dim, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, dim)
        )

    def forward(self, tokens: dict[str, Tokens]) -> FusionOutput:
        per_modality = {}
        for m in self.names:
            t = tokens[m]
            u = self.proj[m](t.pooled())
            fill = self.missing[m].expand_as(u) if self.missing_mode == "learned" else torch.zeros_like(u)
            per_modality[m] = torch.where(t.present[:, None], u, fill)
        pooled = self.mlp(torch.cat([per_modality[m] for m in self.names], dim=1))
        return FusionOutput(pooled=pooled, per_modality=per_modality)
