"""``AlignConfig``: what an alignment run builds (encoders, projection heads, contrastive objective)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from polymodal.config.model import ConfigError

PROJECTIONS = ("linear", "mlp")


@dataclass
class AlignConfig:
    dim: int = 64  # encoder token width
    embed_dim: int = 64  # width of the shared embedding space
    objective: str = "clip"  # any name in OBJECTIVES; clip / siglip over >= 3 modalities become "pairwise"
    objective_options: dict[str, Any] = field(default_factory=dict)
    encoders: dict[str, str] = field(default_factory=dict)  # modality -> encoder name; default per kind
    encoder_options: dict[str, dict[str, Any]] = field(default_factory=dict)
    projection: str = "mlp"  # per-modality head from the pooled encoder tokens to the shared space
    uniformity_weight: float = 0.0  # + weight x (alignment + uniformity) regulariser per pair (shrinks the gap)

    def validate(self) -> None:
        if self.dim <= 0 or self.dim % 4:
            raise ConfigError(f"dim must be a positive multiple of 4, got {self.dim}")
        if self.embed_dim <= 0:
            raise ConfigError(f"embed_dim must be > 0, got {self.embed_dim}")
        if self.projection not in PROJECTIONS:
            raise ConfigError(f"projection must be one of {PROJECTIONS}, got {self.projection!r}")
        if self.uniformity_weight < 0:
            raise ConfigError(f"uniformity_weight must be >= 0, got {self.uniformity_weight}")
        from polymodal.objectives import OBJECTIVES

        if self.objective not in OBJECTIVES or self.objective == "uniformity_alignment":
            names = [n for n in OBJECTIVES.names() if n != "uniformity_alignment"]
            raise ConfigError(f"unknown alignment objective {self.objective!r}; choose one of {names}")
