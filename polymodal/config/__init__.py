"""Configuration: typed dataclasses of components, validated once, JSON/YAML round-trip, presets, CLI overrides."""

from polymodal.config.align import AlignConfig
from polymodal.config.model import ConfigError, ModelConfig, TrainConfig, from_dict, split_options

__all__ = ["AlignConfig", "ConfigError", "ModelConfig", "TrainConfig", "from_dict", "split_options"]
