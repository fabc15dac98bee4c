"""Named presets: small config files (``presets/<name>.yaml``), the way open_clip names its model configs.

``polymodal list presets`` prints them; ``fit(..., preset="fast")`` / ``--preset fast`` applies one under the
user's own options; ``add_preset(path)`` registers a file of your own. Encoders in a preset are keyed by kind
(``image``, ``text``, ...), which every modality of that kind takes unless it is named itself.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from polymodal.config.io import ConfigError, build, dump, flatten_sections, merge, read_file
from polymodal.errors import unknown_message
from polymodal.config.model import ModelConfig, TrainConfig

_DIR = Path(__file__).with_name("presets")
_EXTRA: dict[str, Path] = {}


def preset_files() -> dict[str, Path]:
    found = {p.stem: p for p in sorted(_DIR.glob("*.yaml"))}
    return {**found, **_EXTRA}


def list_presets() -> dict[str, str]:
    """name -> the first comment line of its file."""
    out = {}
    for name, path in preset_files().items():
        first = next((ln for ln in path.read_text().splitlines() if ln.startswith("#")), "#")
        out[name] = first.lstrip("# ").strip()
    return out


def add_preset(path: str | Path, name: str | None = None) -> str:
    """Register a YAML preset file under ``name`` (default: the file's stem); returns the name."""
    p = Path(path)
    read_file(p)  # fails now, with the file named, rather than at fit time
    key = name or p.stem
    _EXTRA[key] = p
    return key


def load_preset(name: str) -> dict[str, Any]:
    files = preset_files()
    if name not in files:
        raise ConfigError(unknown_message("preset", name, files))
    return read_file(files[name])


def resolve(
    options: Mapping[str, Any] | None = None,
    *,
    preset: str | None = None,
    config: str | Path | Mapping[str, Any] | None = None,
    defaults: Mapping[str, Any] | None = None,
) -> tuple[ModelConfig, TrainConfig]:
    """The run's configs from layers, later wins: recipe ``defaults`` < ``preset`` < ``config`` (a YAML / JSON
    file or a dict) < keyword ``options``."""
    layered = flatten_sections(dump(ModelConfig(), TrainConfig()))  # the library defaults, as data
    layered = merge(layered, dict(defaults or {}))
    if preset is not None:
        layered = merge(layered, load_preset(preset))
    if config is not None:
        layered = merge(layered, flatten_sections(config) if isinstance(config, Mapping) else read_file(config))
    layered = merge(layered, dict(options or {}))
    return build(layered)
