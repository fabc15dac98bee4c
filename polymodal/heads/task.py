"""Task heads: a registry of small modules mapping the fused vector to task outputs."""

from __future__ import annotations

from torch import nn

from polymodal.registry import Registry

HEADS: Registry[nn.Module] = Registry("head")


@HEADS.register("classify")
def classify_head(dim: int, n_out: int, dropout: float = 0.1) -> nn.Module:
    """Dropout -> linear to class logits (linear, so late fusion stays an average of per-modality logits)."""
    return nn.Sequential(nn.Dropout(dropout), nn.Linear(dim, n_out))


@HEADS.register("regress")
def regress_head(dim: int, n_out: int = 1, dropout: float = 0.1) -> nn.Module:
    """Dropout -> linear to a (standardised) regression target."""
    return nn.Sequential(nn.Dropout(dropout), nn.Linear(dim, n_out))
