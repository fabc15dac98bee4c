"""Attention-bottleneck fusion (Nagrani et al. 2021, "Attention Bottlenecks for Multimodal Fusion"; Perceiver-style
shared latents): modalities exchange information only through a few shared latent tokens.

Per layer, every modality ``m`` runs its own transformer block over ``[x_m, z]`` (its real tokens plus the ``L``
shared latents): its tokens read from the latents and the latents read from its tokens. The latents' updates are
then averaged over the modalities the sample has (absent modalities contribute nothing; a sample with none keeps
its latents). Attention cost per layer is ``sum_m (N_m + L)^2`` -- linear in the number of modalities, with no
pairwise ``N_i * N_j`` cross-modal terms. ``pooled`` = LayerNorm(mean of the final latents).
"""

from __future__ import annotations

import torch
from torch import nn

from polymodal.blocks import TransformerBlock, check_heads
from polymodal.types import FusionOutput, Tokens
from polymodal.fusion.base import FUSIONS, Fusion


@FUSIONS.register("bottleneck")
class BottleneckFusion(Fusion):
    """A few shared latent tokens (default 4) that every modality reads from and writes to; cost linear in the
    number of modalities; pooled from the latents."""

    def __init__(
        self,
        names: list[str],
        dim: int,
        *,
        latents: int = 4,
        layers: int = 2,
        heads: int = 4,
        dropout: float = 0.1,
        mlp_ratio: float = 2.0,
    ) -> None:
        super().__init__(names, dim)
        check_heads(dim, heads)
        if latents < 1 or layers < 1:
            raise ValueError(f"bottleneck needs latents >= 1 and layers >= 1, got {latents} and {layers}")
        self.latents = nn.Parameter(torch.randn(1, latents, dim) * 0.02)
        self.blocks = nn.ModuleList(
            nn.ModuleDict({m: TransformerBlock(dim, heads, mlp_ratio, dropout) for m in self.names})
            for _ in range(layers)
        )
        self.norm = nn.LayerNorm(dim)
        self.unimodal_norm = nn.LayerNorm(dim)

    def forward(self, tokens: dict[str, Tokens]) -> FusionOutput:
        t0 = tokens[self.names[0]]
        b, n_lat = t0.x.shape[0], self.latents.shape[1]
        present = torch.stack([tokens[m].present for m in self.names], dim=1)  # [B, M]
        count = present.sum(1)[:, None, None]
        valid = {m: tokens[m].valid for m in self.names}
        # Zero what is masked so no placeholder value (even a non-finite one) enters the arithmetic.
        xs = {m: torch.where(valid[m][..., None], tokens[m].x, 0.0) for m in self.names}
        z = self.latents.expand(b, -1, -1)
        real = torch.ones(b, n_lat, dtype=torch.bool, device=t0.x.device)
        for blocks in self.blocks:
            written = []
            for i, m in enumerate(self.names):
                n = xs[m].shape[1]
                out = blocks[m](torch.cat([xs[m], z], dim=1), torch.cat([valid[m], real], dim=1))
                xs[m] = out[:, :n]
                written.append(torch.where(present[:, i, None, None], out[:, n:], torch.zeros_like(z)))
            mean = torch.stack(written, dim=1).sum(1) / count.clamp_min(1)
            z = torch.where(count > 0, mean, z)
        pooled = self.norm(z.mean(1))
        per_modality = {m: self.unimodal_norm(Tokens(xs[m], valid[m], tokens[m].present).pooled()) for m in self.names}
        fused = Tokens(z, real, torch.ones(b, dtype=torch.bool, device=z.device))
        return FusionOutput(pooled=pooled, per_modality=per_modality, tokens=fused)
