"""Time series: non-overlapping patches -> linear patch embedding + learned positions + a transformer block.

Reads ``series`` float32 ``[B, T, C]`` and ``length`` int64 ``[B]``. ``spec.options`` must hold ``length`` (the
padded length T seen at fit time) and ``channels``. Steps beyond a sample's ``length`` are zeroed first, so padding
values never reach real tokens.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from polymodal.blocks import LearnedPositions, TransformerBlock, check_heads, required_option
from polymodal.data.schema import ModalitySpec
from polymodal.types import Tokens
from polymodal.encoders.base import ENCODERS, Encoder


@ENCODERS.register("timeseries_patch")
class TimeseriesPatch(Encoder):
    """Patches of ``patch`` steps (default max(4, ceil(length / 16)), so at most ~16 tokens) x all channels ->
    Linear(patch * C -> dim) + learned positions + transformer block(s); a patch is real if it starts before
    the sample's length."""

    kind = ("timeseries",)

    def __init__(
        self,
        spec: ModalitySpec,
        dim: int,
        *,
        patch: int | None = None,
        layers: int = 1,
        heads: int = 4,
        dropout: float = 0.0,
    ) -> None:
        super().__init__(spec, dim)
        self.length = int(required_option(spec, "length", "timeseries_patch"))
        self.channels = int(required_option(spec, "channels", "timeseries_patch"))
        self.patch = int(patch) if patch is not None else max(4, math.ceil(self.length / 16))
        if self.patch < 1:
            raise ValueError(f"timeseries_patch: patch must be >= 1, got {self.patch}")
        self.n_patches = math.ceil(self.length / self.patch)
        self.embed = nn.Linear(self.patch * self.channels, dim)
        self.pos = LearnedPositions(self.n_patches, dim)
        check_heads(dim, heads)
        self.blocks = nn.ModuleList(TransformerBlock(dim, heads, dropout=dropout) for _ in range(layers))
        self.norm = nn.LayerNorm(dim)
        self.drop = nn.Dropout(dropout)

    def forward(self, inputs: dict[str, Tensor], present: Tensor) -> Tokens:
        series = inputs["series"].float()
        if series.dim() == 2 and self.channels == 1:
            series = series[..., None]
        if series.dim() != 3 or series.shape[2] != self.channels:
            raise ValueError(
                f"timeseries_patch for modality {self.spec.name!r} expects series [B, T, {self.channels}], "
                f"got {tuple(series.shape)}"
            )
        b, t, c = series.shape
        length = inputs.get("length")
        length = torch.full((b,), t, device=series.device) if length is None else length.to(series.device).long()
        steps = torch.arange(t, device=series.device)
        series = series * (steps[None, :, None] < length[:, None, None])
        n = math.ceil(t / self.patch)
        series = F.pad(series, (0, 0, 0, n * self.patch - t))  # zero-pad T to a whole number of patches
        patches = series.reshape(b, n, self.patch * c)  # patch k = steps [k*P, (k+1)*P), channels interleaved
        mask = (torch.arange(n, device=series.device)[None] * self.patch) < length[:, None]
        mask[:, 0] = True  # at least one real token per sample
        x = self.drop(self.pos(self.embed(patches)))
        for block in self.blocks:
            x = block(x, mask)
        return Tokens(self.norm(x), mask, present)
