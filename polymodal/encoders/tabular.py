"""Tabular features: the FT-Transformer feature tokenizer (one token per feature) + a transformer block.

Reads ``num`` float32 ``[B, Fn]`` with ``num_mask`` bool ``[B, Fn]`` and ``cat`` int64 ``[B, Fc]`` (0 = missing or
unseen) with ``cat_mask`` bool ``[B, Fc]``. ``spec.options`` holds ``numeric`` ``{column: {...}}`` and
``categorical`` ``{column: [categories]}``; features follow ``spec.columns`` order (as the processor decodes them).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from polymodal.blocks import TransformerBlock, check_heads
from polymodal.data.schema import ModalitySpec
from polymodal.types import Tokens
from polymodal.encoders.base import ENCODERS, Encoder


@ENCODERS.register("tabular_ft")
class TabularFT(Encoder):
    """FT-Transformer tokenizer: numeric feature i -> x_i * W_i + b_i, categorical feature j -> its own embedding
    table; a learned [CLS] token (always real) keeps rows whose features are all missing well defined; missing
    features are masked out; then transformer block(s)."""

    kind = ("tabular",)

    def __init__(
        self, spec: ModalitySpec, dim: int, *, layers: int = 1, heads: int = 4, dropout: float = 0.0
    ) -> None:
        super().__init__(spec, dim)
        numeric = spec.options.get("numeric") or {}
        categorical = spec.options.get("categorical") or {}
        # Feature order = the processor's: spec.columns order, numeric first; a column in both lists is numeric.
        num_cols = [c for c in spec.columns if c in numeric]
        cat_cols = [c for c in spec.columns if c in categorical and c not in numeric]
        if not num_cols and not cat_cols:
            raise ValueError(
                f"tabular_ft for modality {spec.name!r}: none of its columns {spec.columns} has fitted statistics in "
                "spec.options['numeric'] or ['categorical'] (filled when the processor is fit on the training table)"
            )
        self.n_num, self.n_cat = len(num_cols), len(cat_cols)
        # Parameters exist only for the feature types the table has (no unused parameters without gradients).
        self.num_weight = self.num_bias = self.cat_embed = None
        if self.n_num:
            self.num_weight = nn.Parameter(torch.randn(self.n_num, dim) * dim**-0.5)
            self.num_bias = nn.Parameter(torch.zeros(self.n_num, dim))
        sizes = [len(categorical[c]) + 1 for c in cat_cols]  # per feature; index 0 = missing / unseen
        offsets = [sum(sizes[:j]) for j in range(len(sizes))]
        self.register_buffer("cat_offset", torch.tensor(offsets, dtype=torch.long), persistent=False)
        self.register_buffer("cat_size", torch.tensor(sizes, dtype=torch.long), persistent=False)
        if self.n_cat:
            self.cat_embed = nn.Embedding(sum(sizes), dim)  # all features' tables, stacked at cat_offset
            nn.init.normal_(self.cat_embed.weight, std=dim**-0.5)
        self.cls = nn.Parameter(torch.zeros(1, 1, dim))
        nn.init.trunc_normal_(self.cls, std=0.02)
        check_heads(dim, heads)
        self.blocks = nn.ModuleList(TransformerBlock(dim, heads, dropout=dropout) for _ in range(layers))
        self.norm = nn.LayerNorm(dim)

    def forward(self, inputs: dict[str, Tensor], present: Tensor) -> Tokens:
        b = present.shape[0]
        device = self.cls.device
        parts = [self.cls.expand(b, 1, -1)]
        masks = [torch.ones(b, 1, dtype=torch.bool, device=device)]
        if self.n_num:
            num = inputs["num"].float()
            num_mask = inputs["num_mask"].bool()
            self._check("num", num, self.n_num)
            num = torch.where(num_mask, num, torch.zeros_like(num))  # masked values never reach the tokens
            parts.append(num[..., None] * self.num_weight + self.num_bias)
            masks.append(num_mask)
        if self.n_cat:
            cat = inputs["cat"].long()
            cat_mask = inputs["cat_mask"].bool()
            self._check("cat", cat, self.n_cat)
            cat = torch.where(cat_mask & (cat >= 0) & (cat < self.cat_size), cat, torch.zeros_like(cat))
            parts.append(self.cat_embed(cat + self.cat_offset))
            masks.append(cat_mask)
        x = torch.cat(parts, dim=1)
        mask = torch.cat(masks, dim=1)
        for block in self.blocks:
            x = block(x, mask)
        return Tokens(self.norm(x), mask, present)

    def _check(self, key: str, t: Tensor, n: int) -> None:
        if t.dim() != 2 or t.shape[1] != n:
            raise ValueError(
                f"tabular_ft for modality {self.spec.name!r} expects {key} [B, {n}] (one column per fitted feature), "
                f"got {tuple(t.shape)}"
            )
