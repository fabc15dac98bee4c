"""The few core types every layer speaks: ``Tokens``, ``Batch`` and ``FusionOutput``.

Missing modalities are expressed with masks, never by dropping samples or silently zero-filling:

* ``Tokens.mask[b, n]`` is True where token ``n`` of sample ``b`` is real (not padding);
* ``Tokens.present[b]`` is True where sample ``b`` has the modality at all.

A sample with ``present=False`` may hold arbitrary (finite) values in ``x``; every consumer must ignore them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor


@dataclass
class Tokens:
    """Encoder output for one modality: ``x[B, N, D]``, ``mask[B, N]`` (True = real), ``present[B]``."""

    x: Tensor
    mask: Tensor
    present: Tensor

    def __post_init__(self) -> None:
        if self.x.dim() != 3:
            raise ValueError(f"Tokens.x must be [B, N, D], got shape {tuple(self.x.shape)}")
        b, n, _ = self.x.shape
        if tuple(self.mask.shape) != (b, n):
            raise ValueError(f"Tokens.mask must be [B, N] = {(b, n)}, got {tuple(self.mask.shape)}")
        if tuple(self.present.shape) != (b,):
            raise ValueError(f"Tokens.present must be [B] = {(b,)}, got {tuple(self.present.shape)}")
        if self.mask.dtype != torch.bool or self.present.dtype != torch.bool:
            raise ValueError("Tokens.mask and Tokens.present must be bool tensors")

    @property
    def valid(self) -> Tensor:
        """``mask`` restricted to present samples: True only for real tokens of samples that have the modality."""
        return self.mask & self.present[:, None]

    def pooled(self) -> Tensor:
        """Masked mean over real tokens, ``[B, D]``; zeros for absent samples (callers must respect ``present``)."""
        w = self.valid.to(self.x.dtype)[..., None]
        return (self.x * w).sum(1) / w.sum(1).clamp_min(1.0)

    def with_present(self, present: Tensor) -> "Tokens":
        """The same tokens with a new ``present`` vector (used for modality dropout and missing-modality tests)."""
        return Tokens(self.x, self.mask, present)


@dataclass
class Batch:
    """A collated batch: per-modality input tensors plus their ``present`` masks, and optional targets.

    ``inputs[name]`` is a dict of tensors produced by the modality's collate step (e.g. ``{"pixels": ...}`` or
    ``{"wave": ..., "length": ...}``); each encoder documents which keys it reads.
    """

    inputs: dict[str, dict[str, Tensor]]
    present: dict[str, Tensor]
    target: Tensor | None = None
    index: Tensor | None = None  # row positions in the source table, for error messages and predictions

    def __len__(self) -> int:
        for p in self.present.values():
            return int(p.shape[0])
        return 0 if self.target is None else int(self.target.shape[0])

    def to(self, device: torch.device | str) -> "Batch":
        return Batch(
            inputs={m: {k: v.to(device) for k, v in d.items()} for m, d in self.inputs.items()},
            present={m: p.to(device) for m, p in self.present.items()},
            target=None if self.target is None else self.target.to(device),
            index=self.index,
        )


@dataclass
class FusionOutput:
    """What every fusion operator returns.

    * ``pooled[B, D]`` — the fused vector the task head reads;
    * ``per_modality[name][B, D]`` — each modality's own vector in the same space, so the model can attach
      unimodal auxiliary losses (a remedy for modality competition) and late-fusion style analyses;
    * ``tokens`` — fused token sequence, when the operator produces one (``None`` otherwise);
    * ``aux_loss`` — an operator's own regulariser (e.g. load balancing), added to the training loss.
    """

    pooled: Tensor
    per_modality: dict[str, Tensor] = field(default_factory=dict)
    tokens: Tokens | None = None
    aux_loss: Tensor | None = None
