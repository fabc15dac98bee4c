"""Cross-attention fusion (ALBEF / BridgeTower style), generalised from two modalities to N.

Each layer updates every modality at once, from the previous layer's tokens::

    x_m <- x_m + SelfAttn(LN(x_m))                            (keys: m's real tokens)
    x_m <- x_m + CrossAttn(LN(x_m), LN(cat_{k != m} x_k))     (keys: the other modalities' real tokens)
    x_m <- x_m + MLP(LN(x_m))

Every modality's tokens carry a learned modality-type embedding, so a key says which modality it came from.
Absent modalities and padding are never keys (``key_mask``); a sample with no other modality present skips
the cross-attention update (its residual adds nothing). Softmax attention is invariant to the order of its keys and
every parameter is keyed by modality name, so the operator does not depend on the order of ``names``.
Cost: each modality attends to all others' tokens, i.e. quadratic in the number of modalities' tokens
(see ``bottleneck`` for the linear alternative).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from polymodal.blocks import TransformerBlock, check_heads, key_mask
from polymodal.types import FusionOutput, Tokens
from polymodal.fusion.base import FUSIONS, Fusion


class CrossAttention(nn.Module):
    """``x[B, N, D]`` queries attend to ``ctx[B, K, D]`` keys (``ctx_mask[B, K]`` True = real); returns the update
    (no residual), zero for samples with no real key."""

    def __init__(self, dim: int, heads: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.heads, self.dropout = check_heads(dim, heads), float(dropout)
        self.norm_q, self.norm_kv = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.q, self.kv, self.proj = nn.Linear(dim, dim), nn.Linear(dim, 2 * dim), nn.Linear(dim, dim)

    def forward(self, x: Tensor, ctx: Tensor, ctx_mask: Tensor) -> Tensor:
        b, n, d = x.shape
        h = self.heads
        q = self.q(self.norm_q(x)).reshape(b, n, h, d // h).transpose(1, 2)
        k, v = self.kv(self.norm_kv(ctx)).reshape(b, ctx.shape[1], 2, h, d // h).permute(2, 0, 3, 1, 4)
        p = self.dropout if self.training else 0.0
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=key_mask(ctx_mask), dropout_p=p)
        out = self.proj(out.transpose(1, 2).reshape(b, n, d))
        return torch.where(ctx_mask.any(1)[:, None, None], out, torch.zeros_like(out))


@FUSIONS.register("cross_attention")
class CrossAttentionFusion(Fusion):
    """Bidirectional cross-modal attention: each modality's tokens attend to the other modalities' real tokens;
    pooled = mean over present modalities of their LayerNorm'd masked-mean tokens."""

    def __init__(
        self,
        names: list[str],
        dim: int,
        *,
        layers: int = 1,
        heads: int = 4,
        dropout: float = 0.1,
        mlp_ratio: float = 2.0,
    ) -> None:
        super().__init__(names, dim)
        check_heads(dim, heads)
        self.type_embed = nn.ParameterDict({m: nn.Parameter(torch.randn(dim) * 0.02) for m in self.names})
        self.blocks = nn.ModuleList(
            nn.ModuleDict({m: TransformerBlock(dim, heads, mlp_ratio, dropout) for m in self.names})
            for _ in range(layers)
        )
        crossing = self.names if len(self.names) > 1 else []  # a lone modality has nothing to attend to
        self.cross = nn.ModuleList(
            nn.ModuleDict({m: CrossAttention(dim, heads, dropout) for m in crossing}) for _ in range(layers)
        )
        self.norm = nn.LayerNorm(dim)
        self.nothing = nn.Parameter(torch.zeros(dim))

    def forward(self, tokens: dict[str, Tokens]) -> FusionOutput:
        valid = {m: tokens[m].valid for m in self.names}
        # Zero what is masked so no placeholder value (even a non-finite one) enters the arithmetic.
        xs = {m: torch.where(valid[m][..., None], t.x, 0.0) + self.type_embed[m] for m, t in tokens.items()}
        for blocks, cross in zip(self.blocks, self.cross):
            new = {}
            for m in self.names:
                blk, x, others = blocks[m], xs[m], [k for k in self.names if k != m]
                x = x + blk.drop(blk.attention(x, valid[m]))
                if others:
                    ctx = torch.cat([xs[k] for k in others], dim=1)
                    x = x + blk.drop(cross[m](x, ctx, torch.cat([valid[k] for k in others], dim=1)))
                new[m] = x + blk.drop(blk.mlp(blk.norm2(x)))
            xs = new
        per_modality = {m: self.norm(Tokens(xs[m], valid[m], tokens[m].present).pooled()) for m in self.names}
        present = torch.stack([tokens[m].present for m in self.names], dim=1)  # [B, M]
        v = torch.stack([per_modality[m] for m in self.names], dim=1)
        count = present.sum(1, keepdim=True)
        mean = torch.where(present[..., None], v, torch.zeros_like(v)).sum(1) / count.clamp_min(1)
        pooled = torch.where(count > 0, mean, self.nothing.expand_as(mean))
        fused = Tokens(
            torch.cat([xs[m] for m in self.names], 1), torch.cat([valid[m] for m in self.names], 1), present.any(1)
        )
        return FusionOutput(pooled=pooled, per_modality=per_modality, tokens=fused)
