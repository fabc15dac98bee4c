"""Small building blocks shared by encoders and fusions: a pre-norm transformer block and position helpers.

``TransformerBlock`` keeps its attention explicit (one ``Linear`` producing q, k and v; PyTorch's
``scaled_dot_product_attention`` doing the rest) so that token-reduction methods can reuse the keys
(``qkv_heads``) without re-implementing attention.

Masks follow ``Tokens``: ``mask[B, N]`` is True for real tokens. Padded tokens never serve as keys for real
tokens, so their values cannot leak into real outputs. A sample whose tokens are *all* padding attends to all of
its tokens instead (no row of the attention matrix is fully masked, so every output stays finite); such a
sample's outputs are meaningless and consumers ignore them through the same mask.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def check_heads(dim: int, heads: int) -> int:
    if heads < 1 or dim % heads:
        raise ValueError(f"dim={dim} must be a positive multiple of heads={heads}; choose heads that divide dim")
    return heads


def key_mask(mask: Tensor) -> Tensor:
    """``[B, N]`` real-token mask -> boolean SDPA mask ``[B, 1, 1, N]`` (True = may be attended to).

    Samples with no real token attend to every token, so softmax never sees an all ``-inf`` row.
    """
    empty = ~mask.any(dim=1, keepdim=True)
    return (mask | empty)[:, None, None, :]


class TransformerBlock(nn.Module):
    """Pre-norm transformer block: ``x + Attn(LN(x))`` then ``x + MLP(LN(x))``.

    ``forward(x[B, N, D], mask[B, N] | None) -> [B, N, D]``; ``mask`` True = real token.
    """

    def __init__(self, dim: int, heads: int, mlp_ratio: float = 2.0, dropout: float = 0.0) -> None:
        super().__init__()
        self.dim, self.heads = dim, check_heads(dim, heads)
        self.head_dim = dim // heads
        self.dropout = float(dropout)
        self.norm1 = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim)
        hidden = int(round(dim * mlp_ratio))
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, dim))
        self.drop = nn.Dropout(dropout)

    def qkv_heads(self, h: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Normalised input ``h[B, N, D]`` -> q, k, v, each ``[B, heads, N, head_dim]``."""
        b, n, _ = h.shape
        qkv = self.qkv(h).reshape(b, n, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)
        return qkv[0], qkv[1], qkv[2]

    def attention(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        """The attention branch alone (without the residual): ``proj(SDPA(LN(x)))``."""
        b, n, d = x.shape
        q, k, v = self.qkv_heads(self.norm1(x))
        attn_mask = None if mask is None else key_mask(mask)
        p = self.dropout if self.training else 0.0
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, dropout_p=p)
        return self.proj(out.transpose(1, 2).reshape(b, n, d))

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        x = x + self.drop(self.attention(x, mask))
        return x + self.drop(self.mlp(self.norm2(x)))

    def forward_reduce(
        self,
        x: Tensor,
        mask: Tensor,
        size: Tensor | None = None,
        reduce=None,
        importance: str | None = None,
    ) -> tuple[Tensor, Tensor, Tensor | None]:
        """The block with token reduction between attention and MLP (where ToMe merges).

        * ``size[B, N]`` (tokens each token stands for) adds ToMe's proportional attention: ``log(size)`` on the
          attention logits of each key. ``None``: plain attention (same as ``forward``).
        * ``reduce(x, mask, size, metric, scores) -> (x, mask, size)`` runs after the attention residual;
          ``metric[B, N, head_dim]`` are the keys averaged over heads (ToMe's similarity metric); ``scores[B, N]``
          is the head-averaged attention of one query row when ``importance`` is ``"cls"`` (token 0's row, as in
          [CLS]-guided pruning) or ``"mean"`` (the mean real query's row), else ``None``. Attention itself stays on
          SDPA either way: only that one row is computed explicitly.
        Returns ``(x, mask, size)`` after the MLP, at the reduced token count.
        """
        b, n, d = x.shape
        q, k, v = self.qkv_heads(self.norm1(x))
        attn_mask = self.attention_bias(mask, size, q.dtype)
        p = self.dropout if self.training else 0.0
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, dropout_p=p)
        scores = self.query_scores(q, k, mask, attn_mask, importance) if importance else None
        x = x + self.drop(self.proj(out.transpose(1, 2).reshape(b, n, d)))
        if reduce is not None:
            x, mask, size = reduce(x, mask, size, k.mean(1), scores)
        x = x + self.drop(self.mlp(self.norm2(x)))
        return x, mask, size

    @staticmethod
    def attention_bias(mask: Tensor, size: Tensor | None, dtype=torch.float32) -> Tensor:
        """SDPA mask: boolean key mask, or with ``size`` a float bias ``log(size)`` (padded keys: dtype's min)."""
        keys = key_mask(mask)
        if size is None:
            return keys
        bias = size.to(dtype).clamp_min(torch.finfo(dtype).tiny).log()[:, None, None, :]
        return bias.masked_fill(~keys, torch.finfo(dtype).min)

    def query_scores(self, q: Tensor, k: Tensor, mask: Tensor, attn_mask: Tensor, which: str) -> Tensor:
        """Head-averaged attention ``[B, N]`` of token 0 (``"cls"``) or of the mean real query (``"mean"``)."""
        if which == "cls":
            qi = q[:, :, :1]
        else:
            w = mask.to(q.dtype)[:, None, :, None]
            qi = (q * w).sum(2, keepdim=True) / w.sum(2, keepdim=True).clamp_min(1.0)
        logits = (qi @ k.transpose(-1, -2)) * self.head_dim**-0.5  # [B, H, 1, N]
        if attn_mask.dtype == torch.bool:
            logits = logits.masked_fill(~attn_mask, -math.inf)
        else:
            logits = logits + attn_mask
        return logits.softmax(-1).mean(1)[:, 0]

    def input_scores(
        self, x: Tensor, mask: Tensor, size: Tensor | None, importance: str | None
    ) -> tuple[Tensor, Tensor | None]:
        """Before the block runs: its keys (head mean, the merge metric) and optionally query scores, from
        ``LN(x)`` through the block's own projections (no attention is computed)."""
        b, n, d = x.shape
        h = self.norm1(x)
        w, bias = self.qkv.weight, self.qkv.bias
        if importance is None:
            k = F.linear(h, w[d : 2 * d], bias[d : 2 * d]).reshape(b, n, self.heads, self.head_dim)
            return k.mean(2), None
        qk = F.linear(h, w[: 2 * d], bias[: 2 * d]).reshape(b, n, 2, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k = qk[0], qk[1]
        scores = self.query_scores(q, k, mask, self.attention_bias(mask, size, q.dtype), importance)
        return k.mean(1), scores


def sinusoidal_positions(n: int, dim: int, device=None, dtype=torch.float32) -> Tensor:
    """The fixed sin/cos position table of "Attention is all you need", ``[n, dim]``."""
    pos = torch.arange(n, device=device, dtype=torch.float32)[:, None]
    half = (dim + 1) // 2
    freq = torch.exp(-math.log(10000.0) * torch.arange(half, device=device, dtype=torch.float32) / max(half, 1))
    ang = pos * freq[None]
    table = torch.cat([ang.sin(), ang.cos()], dim=1)[:, :dim]
    return table.to(dtype)


class SinusoidalPositions(nn.Module):
    """Adds fixed sinusoidal positions to ``x[B, N, D]`` for any ``N`` (no parameters)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dim = dim

    def forward(self, x: Tensor) -> Tensor:
        return x + sinusoidal_positions(x.shape[1], self.dim, device=x.device, dtype=x.dtype)[None]


class LearnedPositions(nn.Module):
    """Adds a learned position embedding sized for ``n`` tokens to ``x[B, N, D]``.

    Position ``p < n`` always reads row ``p`` (a shorter sequence uses the first ``N`` rows); a sequence longer
    than ``n`` gets the table linearly interpolated to ``N`` rows.
    """

    def __init__(self, n: int, dim: int) -> None:
        super().__init__()
        self.table = nn.Parameter(torch.zeros(1, max(int(n), 1), dim))
        nn.init.trunc_normal_(self.table, std=0.02)

    def forward(self, x: Tensor) -> Tensor:
        n = x.shape[1]
        table = self.table
        if n <= table.shape[1]:
            table = table[:, :n]
        else:
            table = F.interpolate(table.transpose(1, 2), size=n, mode="linear", align_corners=False).transpose(1, 2)
        return x + table.to(x.dtype)


def run_on_present(module: nn.Module, fn, present: Tensor, *inputs: Tensor) -> Tensor:
    """Apply ``fn`` only to the rows of ``inputs`` whose sample is present; absent rows of the result are zeros.

    Used by encoders with batch statistics (BatchNorm) so absent samples, whose inputs are placeholder zeros,
    neither cost compute nor shift the statistics. ``fn`` maps ``[b, ...]`` tensors to one ``[b, ...]`` tensor;
    ``module`` is the encoder that owns ``fn``'s parameters.
    """
    if bool(present.all()):
        return fn(*inputs)
    idx = present.nonzero().squeeze(1)
    if idx.numel() > 0:
        out = fn(*(t.index_select(0, idx) for t in inputs))
        return out.new_zeros((present.shape[0],) + tuple(out.shape[1:])).index_copy(0, idx, out)
    # Nothing present: run one placeholder row in eval mode (BatchNorm statistics untouched) only to learn the
    # output shape, and return zeros of that shape.
    was_training = module.training
    module.eval()
    try:
        with torch.no_grad():
            probe = fn(*(t[:1] for t in inputs))
    finally:
        module.train(was_training)
    return probe.new_zeros((present.shape[0],) + tuple(probe.shape[1:]))


def required_option(spec, key: str, who: str):
    """``spec.options[key]``, or an error saying the data layer (or the user) must fill it first."""
    try:
        return spec.options[key]
    except KeyError:
        raise ValueError(
            f"{who} for modality {spec.name!r} needs spec.options[{key!r}], which is not set; the options are "
            f"filled when the processor is fit on the training table (or set them by hand: {sorted(spec.options)})"
        ) from None
