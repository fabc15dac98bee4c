"""A small decoder per modality, as MultiMAE's: queries read the encoded visible tokens of every modality.

Queries = a learned mask token + the modality's embedding + learned positions (one query per token of the
modality); a cross-attention block (queries attend to the fused tokens, padding and hidden tokens masked out),
then ``layers`` self-attention blocks (``blocks.TransformerBlock``) among the queries, LayerNorm, a linear read-out
to the target width.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from polymodal.blocks import LearnedPositions, TransformerBlock, check_heads, key_mask


class CrossAttention(nn.Module):
    """Pre-norm cross-attention block: ``q + Attn(LN(q), LN(ctx))`` then ``q + MLP(LN(q))``."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float = 2.0) -> None:
        super().__init__()
        self.heads = check_heads(dim, heads)
        self.norm_q, self.norm_kv = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.q, self.kv, self.proj = nn.Linear(dim, dim), nn.Linear(dim, 2 * dim), nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim)
        hidden = int(round(dim * mlp_ratio))
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))

    def forward(self, q: Tensor, ctx: Tensor, ctx_mask: Tensor) -> Tensor:
        b, n, d = q.shape
        h, hd = self.heads, d // self.heads
        qh = self.q(self.norm_q(q)).reshape(b, n, h, hd).transpose(1, 2)
        kv = self.kv(self.norm_kv(ctx)).reshape(b, ctx.shape[1], 2, h, hd).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(qh, kv[0], kv[1], attn_mask=key_mask(ctx_mask))
        q = q + self.proj(out.transpose(1, 2).reshape(b, n, d))
        return q + self.mlp(self.norm2(q))


class ModalityDecoder(nn.Module):
    """``forward(ctx[B, K, D], ctx_mask[B, K], n) -> [B, n, out_dim]``: a prediction for each of ``n`` tokens."""

    def __init__(self, dim: int, n_tokens: int, out_dim: int, *, heads: int = 4, layers: int = 1) -> None:
        super().__init__()
        self.mask_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.modality_embed = nn.Parameter(torch.zeros(1, 1, dim))
        nn.init.trunc_normal_(self.mask_token, std=0.02)
        nn.init.trunc_normal_(self.modality_embed, std=0.02)
        self.pos = LearnedPositions(n_tokens, dim)
        self.cross = CrossAttention(dim, heads)
        self.blocks = nn.ModuleList(TransformerBlock(dim, heads) for _ in range(layers))
        self.norm = nn.LayerNorm(dim)
        self.out = nn.Linear(dim, out_dim)

    def forward(self, ctx: Tensor, ctx_mask: Tensor, n: int) -> Tensor:
        b = ctx.shape[0]
        q = self.pos((self.mask_token + self.modality_embed).expand(b, n, -1))
        q = self.cross(q, ctx, ctx_mask)
        for block in self.blocks:
            q = block(q)
        return self.out(self.norm(q))
