"""Text: token embeddings + learned positions + a small transformer.

Reads ``ids`` int64 ``[B, L]`` (0 = padding, 1 = unknown) and ``length`` int64 ``[B]``. ``spec.options`` must hold
``vocab`` (list of tokens, index = id) and ``max_len``.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from polymodal.blocks import LearnedPositions, TransformerBlock, check_heads, required_option
from polymodal.data.schema import ModalitySpec
from polymodal.types import Tokens
from polymodal.encoders.base import ENCODERS, Encoder


@ENCODERS.register("text_transformer")
class TextTransformer(Encoder):
    """Embedding(len(vocab), dim, padding_idx=0) + learned positions + transformer blocks (default 2), one token
    per word piece; padding (id 0 or position >= length) is masked out."""

    kind = ("text",)

    def __init__(
        self, spec: ModalitySpec, dim: int, *, layers: int = 2, heads: int = 4, dropout: float = 0.0
    ) -> None:
        super().__init__(spec, dim)
        vocab = required_option(spec, "vocab", "text_transformer")
        self.max_len = int(required_option(spec, "max_len", "text_transformer"))
        self.vocab_size = max(len(vocab), 2)
        self.embed = nn.Embedding(self.vocab_size, dim, padding_idx=0)
        nn.init.normal_(self.embed.weight, std=0.02)
        with torch.no_grad():
            self.embed.weight[0].zero_()
        self.pos = LearnedPositions(self.max_len, dim)
        check_heads(dim, heads)
        self.blocks = nn.ModuleList(TransformerBlock(dim, heads, dropout=dropout) for _ in range(layers))
        self.norm = nn.LayerNorm(dim)
        self.drop = nn.Dropout(dropout)

    def forward(self, inputs: dict[str, Tensor], present: Tensor) -> Tokens:
        ids = inputs["ids"].long()
        if ids.dim() != 2:
            raise ValueError(
                f"text_transformer for modality {self.spec.name!r} expects ids [B, L], got {tuple(ids.shape)}"
            )
        b, n = ids.shape
        if n > self.max_len:
            raise ValueError(
                f"text_transformer for modality {self.spec.name!r}: ids have {n} positions but the encoder was built "
                f"for max_len={self.max_len}; truncate the text or rebuild with a larger max_len"
            )
        pos = torch.arange(n, device=ids.device)
        mask = ids != 0
        if "length" in inputs:
            mask &= pos[None] < inputs["length"].to(ids.device)[:, None]
        # Out-of-vocabulary ids (should not happen) become "unknown" rather than an index error.
        ids = torch.where(ids >= self.vocab_size, torch.ones_like(ids), ids)
        ids = torch.where(mask, ids, torch.zeros_like(ids))  # masked positions read the (zero) padding row
        mask[:, 0] |= ~mask.any(dim=1)  # every sample keeps at least one real token
        x = self.drop(self.pos(self.embed(ids)))  # position p reads row p whatever the padded width
        for block in self.blocks:
            x = block(x, mask)
        return Tokens(self.norm(x), mask, present)
