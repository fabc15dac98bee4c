"""Connectors: one modality's ``Tokens`` (any encoder, width ``in_dim``) -> tokens in the LM's width, with a mask.

``CONNECTORS`` maps a name to a ``Connector`` class, registered below (one small class each, as nanoVLM's
``modality_projector.py``):

* ``linear``: one Linear per token (LLaVA-1.0);
* ``mlp``: Linear -> GELU -> Linear (LLaVA-1.5 ``mlp2x_gelu``; same layout as transformers'
  ``LlavaMultiModalProjector``: ``linear_1``, ``act``, ``linear_2``);
* ``pixel_shuffle``: ``factor**2`` neighbouring tokens concatenated into one, then Linear (nanoVLM, Idefics3): a
  square token grid is shuffled spatially, a sequence in runs of ``factor**2``;
* ``resampler``: ``queries`` learned queries cross-attend to the real tokens (a perceiver / Q-Former-lite, BLIP-2):
  a fixed number of output tokens whatever the input length;
* ``pool_linear``: masked mean over runs of ``factor`` consecutive tokens, then an MLP (audio frames, time steps).

Every connector keeps ``present`` as it is and gives a mask that is False for padding and for absent samples'
tokens; ``out_tokens(n)`` is the number of tokens it makes from ``n`` (the sequence builder places exactly the
real ones, so feature and placeholder counts cannot disagree).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from polymodal.registry import Registry
from polymodal.types import Tokens

CONNECTORS: Registry["Connector"] = Registry("connector")


class Connector(nn.Module):
    """Base: ``forward(Tokens[B, N, in_dim]) -> Tokens[B, M, lm_dim]``; ``out_tokens(N) -> M``."""

    def __init__(self, in_dim: int, lm_dim: int) -> None:
        super().__init__()
        self.in_dim, self.lm_dim = in_dim, lm_dim

    def out_tokens(self, n: int) -> int:
        return n

    def project(self, x: Tensor) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def forward(self, tokens: Tokens) -> Tokens:
        return Tokens(self.project(tokens.x), tokens.mask & tokens.present[:, None], tokens.present)


@CONNECTORS.register("linear")
class LinearConnector(Connector):
    """One Linear from the encoder width to the LM width, token by token (LLaVA-1.0)."""

    def __init__(self, in_dim: int, lm_dim: int) -> None:
        super().__init__(in_dim, lm_dim)
        self.proj = nn.Linear(in_dim, lm_dim)

    def project(self, x: Tensor) -> Tensor:
        return self.proj(x)


@CONNECTORS.register("mlp")
class MLPConnector(Connector):
    """Linear -> GELU -> Linear, token by token (LLaVA-1.5 ``mlp2x_gelu``)."""

    def __init__(self, in_dim: int, lm_dim: int, *, hidden: int | None = None) -> None:
        super().__init__(in_dim, lm_dim)
        self.linear_1 = nn.Linear(in_dim, hidden or lm_dim)
        self.act = nn.GELU()
        self.linear_2 = nn.Linear(hidden or lm_dim, lm_dim)

    def project(self, x: Tensor) -> Tensor:
        return self.linear_2(self.act(self.linear_1(x)))


def _groups(tokens: Tokens, g: int) -> tuple[Tensor, Tensor]:
    """``x[B, N, D]`` -> ``[B, ceil(N/g), g, D]`` (zero-padded) and the matching mask ``[B, ceil(N/g), g]``; a square
    grid whose side ``factor`` divides is regrouped spatially (``factor x factor`` patches), anything else in runs."""
    x, mask = tokens.x, tokens.valid
    b, n, d = x.shape
    side, f = math.isqrt(n), math.isqrt(g)
    if f * f == g and side * side == n and side % f == 0:
        x = x.reshape(b, side // f, f, side // f, f, d).transpose(2, 3).reshape(b, -1, g, d)
        mask = mask.reshape(b, side // f, f, side // f, f).transpose(2, 3).reshape(b, -1, g)
        return x, mask
    pad = (-n) % g
    x = F.pad(x, (0, 0, 0, pad)).reshape(b, -1, g, d)
    mask = F.pad(mask, (0, pad)).reshape(b, -1, g)
    return x, mask


@CONNECTORS.register("pixel_shuffle")
class PixelShuffleConnector(Connector):
    """``factor**2`` neighbouring tokens concatenated, then Linear (nanoVLM / Idefics3): ``factor**2`` x fewer."""

    def __init__(self, in_dim: int, lm_dim: int, *, factor: int = 2) -> None:
        super().__init__(in_dim, lm_dim)
        if factor < 1:
            raise ValueError(f"pixel_shuffle factor must be >= 1, got {factor}")
        self.g = factor * factor
        self.proj = nn.Linear(in_dim * self.g, lm_dim)

    def out_tokens(self, n: int) -> int:
        return -(-n // self.g)

    def forward(self, tokens: Tokens) -> Tokens:
        x, mask = _groups(tokens, self.g)
        x = x * mask[..., None]  # padding inside a group contributes zeros, never its (arbitrary) values
        out = self.proj(x.flatten(2))
        return Tokens(out, mask.any(-1) & tokens.present[:, None], tokens.present)


@CONNECTORS.register("pool_linear")
class PoolLinearConnector(Connector):
    """Masked mean over runs of ``factor`` consecutive tokens, then Linear -> GELU -> Linear (audio, time series)."""

    def __init__(self, in_dim: int, lm_dim: int, *, factor: int = 4) -> None:
        super().__init__(in_dim, lm_dim)
        if factor < 1:
            raise ValueError(f"pool_linear factor must be >= 1, got {factor}")
        self.factor = factor
        self.mlp = MLPConnector(in_dim, lm_dim)

    def out_tokens(self, n: int) -> int:
        return -(-n // self.factor)

    def forward(self, tokens: Tokens) -> Tokens:
        x, mask = tokens.x, tokens.valid
        b, n, d = x.shape
        pad = (-n) % self.factor
        x = F.pad(x * mask[..., None], (0, 0, 0, pad)).reshape(b, -1, self.factor, d)
        w = F.pad(mask, (0, pad)).reshape(b, -1, self.factor).to(x.dtype)
        pooled = x.sum(2) / w.sum(2, keepdim=True).clamp_min(1.0)
        return Tokens(self.mlp.project(pooled), (w.sum(2) > 0) & tokens.present[:, None], tokens.present)


@CONNECTORS.register("resampler")
class ResamplerConnector(Connector):
    """``queries`` learned queries cross-attend to the real tokens (perceiver / Q-Former-lite), then an MLP.

    Always ``queries`` output tokens; a sample with no real token (absent modality) gets an all-False mask."""

    def __init__(self, in_dim: int, lm_dim: int, *, queries: int = 8, heads: int = 4,
                 hidden: int | None = None) -> None:
        super().__init__(in_dim, lm_dim)
        width = hidden or in_dim
        if width % heads:
            raise ValueError(f"resampler width {width} must be divisible by heads={heads}")
        self.n_queries = queries
        self.query = nn.Parameter(torch.randn(queries, width) * 0.02)
        self.inp = nn.Linear(in_dim, width)
        self.attn = nn.MultiheadAttention(width, heads, batch_first=True)
        self.norm = nn.LayerNorm(width)
        self.ff = nn.Sequential(nn.Linear(width, 4 * width), nn.GELU(), nn.Linear(4 * width, width))
        self.out = MLPConnector(width, lm_dim)

    def out_tokens(self, n: int) -> int:
        return self.n_queries

    def forward(self, tokens: Tokens) -> Tokens:
        b = tokens.x.shape[0]
        valid = tokens.valid
        empty = ~valid.any(1)
        keys = self.inp(tokens.x)
        pad = ~valid
        pad[empty, 0] = False  # a sample with nothing attends to a dummy key: finite output, masked out below
        q = self.query.expand(b, -1, -1)
        h, _ = self.attn(q, keys, keys, key_padding_mask=pad, need_weights=False)
        h = q + h
        h = h + self.ff(self.norm(h))
        mask = (~empty & tokens.present)[:, None].expand(b, self.n_queries)
        return Tokens(self.out.project(h), mask.contiguous(), tokens.present)


def build_connector(name: str, in_dim: int, lm_dim: int, **options) -> Connector:
    return CONNECTORS.build(name, in_dim, lm_dim, **options)


__all__ = ["CONNECTORS", "Connector", "build_connector"]
