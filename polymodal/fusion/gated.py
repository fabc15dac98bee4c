"""Gated fusion: TorchMultimodal's ``AttentionFusionModule`` over masked-mean pooled modality vectors.

Reference (facebookresearch/multimodal ``modules/fusions/attention_fusion.py``), channels in SORTED name order::

    w     = softmax(Linear(sum dims -> M)(cat(v_c for c in sorted)))          # [B, M]
    fused = sum_i w[:, i] * Linear_c(dim_c -> P)(v_c)                          # [B, P]

State-dict keys match the reference (``attention.0.*``, ``encoding_projection.<name>.*``), so its weights load
by name. Missingness (our addition): an absent modality's input to the attention Linear is a learned
per-modality "missing" vector (``missing.<name>``), and its weight is excluded from the softmax, which is
renormalised over the present modalities; a sample with no modality gets the learned ``nothing`` vector.
With every modality present the output is exactly the reference's.
"""

from __future__ import annotations

import torch
from torch import nn

from polymodal.types import FusionOutput, Tokens
from polymodal.fusion.base import FUSIONS, Fusion


@FUSIONS.register("gated")
class GatedFusion(Fusion):
    """Attention-gated weighted sum of projected modality vectors (TorchMultimodal AttentionFusion); absent
    modalities are left out of the softmax. ``dim`` is the projection size P; ``input_dims`` (default ``dim`` for
    every modality) are the pooled vectors' sizes."""

    def __init__(self, names: list[str], dim: int, *, input_dims: dict[str, int] | None = None) -> None:
        super().__init__(names, dim)
        self.order = sorted(self.names)  # the reference's channel order
        dims = {m: (input_dims or {}).get(m, dim) for m in self.order}
        self.attention = nn.Sequential(nn.Linear(sum(dims.values()), len(self.order)))
        self.encoding_projection = nn.ModuleDict({m: nn.Linear(dims[m], dim) for m in self.order})
        self.missing = nn.ParameterDict({m: nn.Parameter(torch.randn(dims[m]) * 0.02) for m in self.order})
        self.nothing = nn.Parameter(torch.zeros(dim))

    def gate(self, vectors: dict[str, torch.Tensor], present: torch.Tensor) -> torch.Tensor:
        """Attention weights ``[B, M]`` (sorted order) over present modalities; all zeros where none is present."""
        inputs = [torch.where(present[:, i, None], vectors[m], self.missing[m]) for i, m in enumerate(self.order)]
        logits = self.attention(torch.cat(inputs, dim=1)).masked_fill(~present, float("-inf"))
        w = torch.softmax(logits.masked_fill(~present.any(1, keepdim=True), 0.0), dim=1)
        return torch.where(present, w, torch.zeros_like(w))

    def forward(self, tokens: dict[str, Tokens]) -> FusionOutput:
        vectors = {m: tokens[m].pooled() for m in self.order}
        present = torch.stack([tokens[m].present for m in self.order], dim=1)  # [B, M]
        per_modality = {m: self.encoding_projection[m](vectors[m]) for m in self.order}
        w = self.gate(vectors, present)
        projected = torch.stack([per_modality[m] for m in self.order], dim=1)  # [B, M, P]
        # where(), not a product with w alone, so an absent modality's (finite or not) vector cannot leak.
        fused = torch.where(present[..., None], w[..., None] * projected, torch.zeros_like(projected)).sum(1)
        pooled = torch.where(present.any(1, keepdim=True), fused, self.nothing.expand_as(fused))
        return FusionOutput(pooled=pooled, per_modality={m: per_modality[m] for m in self.names})
