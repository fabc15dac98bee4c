"""The fusion contract: ``Fusion(names, dim, **options)(tokens: dict[str, Tokens]) -> FusionOutput``.

Every operator honours per-sample missingness: a sample's absent modality (``Tokens.present == False``) must not
influence that sample's output, and the output is finite for every non-empty subset of present modalities (a
sample with no modality at all also gets a finite output). ``FusionOutput.per_modality[name]`` is the modality's
own vector in the fused space (used for unimodal auxiliary losses), defined for every modality.
"""

from __future__ import annotations

from torch import nn

from polymodal.registry import Registry
from polymodal.types import FusionOutput, Tokens


class Fusion(nn.Module):
    def __init__(self, names: list[str], dim: int) -> None:
        super().__init__()
        if not names:
            raise ValueError("a fusion needs at least one modality")
        self.names = list(names)
        self.dim = dim

    def forward(self, tokens: dict[str, Tokens]) -> FusionOutput:  # pragma: no cover - abstract
        raise NotImplementedError


FUSIONS: Registry[Fusion] = Registry("fusion")
