"""Typed, JSON-serialisable configuration with validation that says what to do."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from polymodal.errors import PolymodalError


class ConfigError(PolymodalError, ValueError):
    pass


@dataclass
class ModelConfig:
    dim: int = 64
    fusion: str = "transformer"
    fusion_options: dict[str, Any] = field(default_factory=dict)
    encoders: dict[str, str] = field(default_factory=dict)  # modality -> encoder name; default per kind
    encoder_options: dict[str, dict[str, Any]] = field(default_factory=dict)  # modality -> options
    modality_dropout: float = 0.5  # per-sample probability of hiding each modality in training (>= 1 kept)
    aux_weight: float = 1.0  # weight of the unimodal auxiliary losses (one per modality, on its own vector)
    head_dropout: float = 0.1
    # Alignment objective beside the task loss (polymodal/align/): "clip" | "siglip" | "symile" | ... or None.
    # The loss is task + aux + align_weight x objective(per-modality projections into an embed_dim space).
    align: str | None = None
    align_weight: float = 1.0
    align_options: dict[str, Any] = field(default_factory=dict)
    embed_dim: int = 64
    # Token budgets (polymodal/tokens/spec.py): keep this fraction of each stream's tokens (a float, or
    # {modality: fraction}); 1.0 = off. ``reducer``: merge | prune | pool | zip. ``train_budgets``: sample one of
    # these per training step (Matryoshka / M3). ``token_options``: schedule, where, prop_attn, context.
    token_budget: float | dict[str, float] = 1.0
    reducer: str = "merge"
    train_budgets: list[float] = field(default_factory=list)
    token_options: dict[str, Any] = field(default_factory=dict)

    def validate(self) -> None:
        if self.dim <= 0 or self.dim % 4:
            raise ConfigError(f"dim must be a positive multiple of 4, got {self.dim}")
        from polymodal.tokens.spec import TokenBudget

        try:
            TokenBudget.from_config(self)
        except ValueError as e:
            raise ConfigError(str(e)) from None
        if not 0.0 <= self.modality_dropout < 1.0:
            raise ConfigError(f"modality_dropout must be in [0, 1), got {self.modality_dropout}")
        if self.aux_weight < 0:
            raise ConfigError(f"aux_weight must be >= 0, got {self.aux_weight}")


@dataclass
class TrainConfig:
    epochs: int = 40
    batch_size: int = 64
    lr: float = 2e-3
    weight_decay: float = 0.05
    val_fraction: float = 0.1
    patience: int = 8  # epochs without validation improvement before stopping
    seed: int = 0
    max_minutes: float | None = None  # wall-clock cap on training
    on_error: str = "raise"  # decode policy: "raise" | "missing"
    progress: bool = True

    def validate(self) -> None:
        if self.epochs < 1:
            raise ConfigError(f"epochs must be >= 1, got {self.epochs}")
        if self.batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {self.batch_size}")
        if not 0.0 <= self.val_fraction < 0.9:
            raise ConfigError(f"val_fraction must be in [0, 0.9), got {self.val_fraction}")
        if self.lr <= 0:
            raise ConfigError(f"lr must be > 0, got {self.lr}")
        if self.on_error not in ("raise", "missing"):
            raise ConfigError(f"on_error must be 'raise' or 'missing', got {self.on_error!r}")


def from_dict(cls, d: dict[str, Any]):
    """Build a config dataclass from a dict, rejecting unknown keys with the list of valid ones."""
    names = {f.name for f in fields(cls)}
    unknown = set(d) - names
    if unknown:
        raise ConfigError(f"unknown {cls.__name__} option(s) {sorted(unknown)}; valid: {sorted(names)}")
    cfg = cls(**d)
    cfg.validate()
    return cfg


def split_options(options: dict[str, Any]) -> tuple[ModelConfig, TrainConfig]:
    """Route flat keyword options (``dim=..., epochs=...``) to the model or the training config."""
    m_names = {f.name for f in fields(ModelConfig)}
    t_names = {f.name for f in fields(TrainConfig)}
    unknown = set(options) - m_names - t_names
    if unknown:
        raise ConfigError(
            f"unknown option(s) {sorted(unknown)}; model options: {sorted(m_names)}; training options: {sorted(t_names)}"
        )
    m = from_dict(ModelConfig, {k: v for k, v in options.items() if k in m_names})
    t = from_dict(TrainConfig, {k: v for k, v in options.items() if k in t_names})
    return m, t


def dump(model: ModelConfig, train: TrainConfig, **extra: Any) -> str:
    return json.dumps({"model": asdict(model), "train": asdict(train), **extra}, indent=2)
