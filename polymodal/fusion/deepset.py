"""DeepSet fusion: TorchMultimodal's ``DeepsetFusionModule`` over masked-mean pooled modality vectors.

Reference (facebookresearch/multimodal ``modules/fusions/deepset_fusion.py``), channels in SORTED name order::

    s = stack(proj_c(v_c) for c in sorted)                   # [B, M, P]; proj = Linear if auto-mapping else Identity
    s = s * softmax_over_M(Linear(a->1)(tanh(Linear(P->a)(s))))                     # only if apply_attention
    s = F.normalize(s, p=2, dim=1 if modality_normalize else -1)
    fused = mlp(pool(s, dim=1))                              # pool: sum | mean | max | median (lower median) | min

State-dict keys match the reference (``projections.<name>.*``, ``attention.0/2.*``, ``mlp.model.<i>.*`` with
the reference MLP's layout ``[Linear, ReLU, Dropout] * hidden + Linear``). Missingness (our addition): absent
modalities are excluded from the attention softmax, from the across-modality norm and from the pooling (a
permutation-invariant pool over the present set only); a sample with no modality pools to the learned ``nothing``
vector. ``per_modality[m]`` is the same pipeline run on modality ``m`` alone.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from polymodal.types import FusionOutput, Tokens
from polymodal.fusion.base import FUSIONS, Fusion

POOLINGS = ("sum", "mean", "max", "min", "median")


class MLP(nn.Module):
    """TorchMultimodal's ``MLP`` layout: ``model = [Linear, ReLU, Dropout] * len(hidden) + [Linear]``."""

    def __init__(self, in_dim: int, out_dim: int, hidden: tuple[int, ...] = (), dropout: float = 0.5) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for h in hidden:
            layers += [nn.Linear(in_dim, h), nn.ReLU(), nn.Dropout(dropout)]
            in_dim = h
        self.model = nn.Sequential(*layers, nn.Linear(in_dim, out_dim))

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x)


def masked_pool(s: Tensor, present: Tensor, how: str) -> Tensor:
    """Pool ``s[B, M, P]`` over the present channels (``present[B, M]``); rows with none present are garbage."""
    keep = present[..., None]
    if how in ("sum", "mean"):
        total = torch.where(keep, s, torch.zeros_like(s)).sum(1)
        return total if how == "sum" else total / present.sum(1, keepdim=True).clamp_min(1)
    if how in ("max", "min"):
        fill = float("-inf") if how == "max" else float("inf")
        out = torch.where(keep, s, torch.full_like(s, fill))
        return (out.amax(1) if how == "max" else out.amin(1)).nan_to_num(0.0, 0.0, 0.0)
    # median: torch.median's lower median over the present values (absent ones sorted to the end as +inf)
    ordered = torch.where(keep, s, torch.full_like(s, float("inf"))).sort(dim=1).values
    k = ((present.sum(1) - 1) // 2).clamp_min(0)  # [B]
    return ordered.gather(1, k[:, None, None].expand(-1, 1, s.shape[2])).squeeze(1).nan_to_num(0.0, 0.0, 0.0)


@FUSIONS.register("deepset")
class DeepsetFusion(Fusion):
    """Permutation-invariant pooling (sum/mean/max/median) over present modality vectors, then an MLP
    (TorchMultimodal DeepsetFusion). ``dim`` is the output size; the pooled space has ``projection_dim``
    (default: the smallest input dim) channels."""

    def __init__(
        self,
        names: list[str],
        dim: int,
        *,
        pooling: str = "mean",
        apply_attention: bool = False,
        attention_dim: int | None = None,
        modality_normalize: bool = False,
        use_auto_mapping: bool = True,
        input_dims: dict[str, int] | None = None,
        mlp_hidden: tuple[int, ...] | list[int] | None = None,
        dropout: float = 0.1,
    ) -> None:
        super().__init__(names, dim)
        if pooling not in POOLINGS:
            raise ValueError(f"deepset pooling must be one of {POOLINGS}, got {pooling!r}")
        self.order = sorted(self.names)  # the reference's channel order
        dims = {m: (input_dims or {}).get(m, dim) for m in self.order}
        p = min(dims.values())
        if not use_auto_mapping and len(set(dims.values())) > 1:
            raise ValueError(f"deepset without use_auto_mapping needs equal input dims, got {dims}")
        self.pooling, self.modality_normalize, self.apply_attention = pooling, modality_normalize, apply_attention
        make = (lambda d: nn.Linear(d, p)) if use_auto_mapping else (lambda d: nn.Identity())
        self.projections = nn.ModuleDict({m: make(dims[m]) for m in self.order})
        if apply_attention:
            a = attention_dim or p // 2
            self.attention = nn.Sequential(nn.Linear(p, a), nn.Tanh(), nn.Linear(a, 1))
        self.mlp = MLP(p, dim, tuple((dim,) if mlp_hidden is None else mlp_hidden), dropout)
        self.nothing = nn.Parameter(torch.randn(p) * 0.02)  # pooled features of a sample with no modality

    def forward(self, tokens: dict[str, Tokens]) -> FusionOutput:
        present = torch.stack([tokens[m].present for m in self.order], dim=1)  # [B, M]
        s = torch.stack([self.projections[m](tokens[m].pooled()) for m in self.order], dim=1)  # [B, M, P]
        norm_dim = 1 if self.modality_normalize else -1
        # Each modality on its own: attention weight 1, every pool the identity, a norm over one channel = |s|.
        alone = self.mlp(s / s.abs().clamp_min(1e-12) if self.modality_normalize else F.normalize(s, p=2, dim=-1))
        if self.apply_attention:
            score = self.attention(s).squeeze(-1).masked_fill(~present, float("-inf"))  # [B, M]
            w = torch.softmax(score.masked_fill(~present.any(1, keepdim=True), 0.0), dim=1)
            s = s * w[..., None]
        s = torch.where(present[..., None], s, torch.zeros_like(s))  # exact exclusion from the norm over M
        pooled = masked_pool(F.normalize(s, p=2, dim=norm_dim), present, self.pooling)
        pooled = torch.where(present.any(1, keepdim=True), pooled, self.nothing.expand_as(pooled))
        per_modality = {m: alone[:, self.order.index(m)] for m in self.names}
        return FusionOutput(pooled=self.mlp(pooled), per_modality=per_modality)
