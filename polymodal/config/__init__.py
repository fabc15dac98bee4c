"""Configuration: dataclasses of components, validated once, JSON/YAML round-trip, presets, CLI overrides."""

from polymodal.config.io import build, dump, from_dict, merge, parse_sets, read_file, to_dict
from polymodal.config.model import AlignSpec, ConfigError, ModelConfig, TrainConfig, check_on_error
from polymodal.config.presets import add_preset, list_presets, load_preset, resolve
from polymodal.registry import Component

__all__ = [
    "AlignSpec", "Component", "ConfigError", "ModelConfig", "TrainConfig", "add_preset", "build", "check_on_error",
    "dump", "from_dict", "list_presets", "load_preset", "merge", "parse_sets", "read_file", "resolve", "to_dict",
]
