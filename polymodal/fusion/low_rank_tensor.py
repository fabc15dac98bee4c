"""Low-rank multimodal tensor fusion (LMF; Liu et al. 2018, "Efficient Low-rank Multimodal Fusion with
Modality-Specific Factors").

Tensor fusion builds the outer product of ``[h_m, 1]`` over modalities (every multiplicative interaction, unimodal
terms included thanks to the appended 1) and maps it linearly to ``dim``; LMF factorises that weight tensor with
rank ``r``, so the whole thing costs ``O(r * sum_m d_m * dim)``::

    z_m   = [h_m, 1] @ W_m                     W_m: [r, d_m + 1, dim]  ->  z_m: [B, r, dim]
    fused = sum_r w_r * prod_m z_m[:, r] + b

``h_m`` is the LayerNorm'd masked-mean of modality ``m``'s tokens (LayerNorm keeps the product's scale stable
whatever the encoders emit). Missing modality: ``h_m`` is replaced by a learned vector ``missing[m]``, initialised
to zero, so an absent modality contributes (at initialisation exactly) its "1"-only term ``W_m[:, d_m]``, i.e.
the part of the tensor that does not interact with ``m`` -- the other modalities' interactions survive intact --
and training can move it. ``per_modality[m]`` is the fusion with ``m`` present and every other modality missing.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from polymodal.types import FusionOutput, Tokens
from polymodal.fusion.base import FUSIONS, Fusion


@FUSIONS.register("low_rank_tensor")
class LowRankTensorFusion(Fusion):
    """LMF: per-modality factors ``[rank, d+1, dim]`` applied to ``[h_m, 1]``, multiplied over modalities, weighted
    sum over rank; an absent modality uses a learned missing vector (its "1"-only term at initialisation)."""

    def __init__(self, names: list[str], dim: int, *, rank: int = 4, input_dims: dict[str, int] | None = None) -> None:
        super().__init__(names, dim)
        if rank < 1:
            raise ValueError(f"low_rank_tensor needs rank >= 1, got {rank}")
        dims = {m: (input_dims or {}).get(m, dim) for m in self.names}
        self.norms = nn.ModuleDict({m: nn.LayerNorm(dims[m]) for m in self.names})
        # std 1/sqrt(d+1) keeps each z_m at unit scale, so the product over modalities neither explodes nor vanishes.
        self.factors = nn.ParameterDict(
            {m: nn.Parameter(torch.randn(rank, dims[m] + 1, dim) * (dims[m] + 1) ** -0.5) for m in self.names}
        )
        self.missing = nn.ParameterDict({m: nn.Parameter(torch.zeros(dims[m])) for m in self.names})
        self.fusion_weights = nn.Parameter(torch.full((rank,), 1.0 / rank))
        self.fusion_bias = nn.Parameter(torch.zeros(dim))

    def factor(self, m: str, h: Tensor) -> Tensor:
        """``[B, d_m]`` -> ``z_m = [h, 1] @ W_m``: ``[B, rank, dim]``."""
        h1 = torch.cat([h, torch.ones_like(h[:, :1])], dim=1)
        return torch.einsum("bd,rdo->bro", h1, self.factors[m])

    def combine(self, zs: list[Tensor]) -> Tensor:
        prod = zs[0]
        for z in zs[1:]:
            prod = prod * z
        return torch.einsum("r,bro->bo", self.fusion_weights, prod) + self.fusion_bias

    def forward(self, tokens: dict[str, Tokens]) -> FusionOutput:
        present = {m: tokens[m].present[:, None] for m in self.names}
        h = {m: torch.where(present[m], self.norms[m](tokens[m].pooled()), self.missing[m]) for m in self.names}
        z = {m: self.factor(m, h[m]) for m in self.names}
        z_missing = {m: self.factor(m, self.missing[m][None]) for m in self.names}  # [1, rank, dim]
        pooled = self.combine([z[m] for m in self.names])
        per_modality = {m: self.combine([z[k] if k == m else z_missing[k] for k in self.names]) for m in self.names}
        return FusionOutput(pooled=pooled, per_modality=per_modality)
