"""Config dataclasses <-> plain dicts (JSON / YAML), shorthands, layered overrides, validation with a fix.

One reader for every source: a saved run's ``config.json``, a preset, a ``--config run.yaml`` file, keyword
options of ``pm.fit`` / ``pm.align`` and ``--set key.path=value`` flags. Each is a plain dict; ``merge`` layers
them (later wins) and ``build`` turns the result into validated ``ModelConfig`` + ``TrainConfig``.

Shorthands: a string where a ``Component`` is expected is its name (``fusion="late"``); a string where an
``AlignSpec`` is expected is its objective (``align="siglip"``); a number where a ``TokenBudget`` is expected
is its budget (``tokens=0.5``). When a layer renames a component, the options of the old one are dropped
(``fusion.options.layers`` of a transformer does not leak into ``late``).

(The merge and ``--set`` parsing are ~60 lines of our own instead of OmegaConf / Hydra: the only behaviour we
need beyond a dict merge is the component-rename rule above, which neither has.)
"""

from __future__ import annotations

import dataclasses
import json
import re
import types
import typing
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

from polymodal.config.model import AlignSpec, ConfigError, ModelConfig, TrainConfig
from polymodal.errors import unknown_message
from polymodal.registry import Component
from polymodal.tokens.spec import TokenBudget

SECTIONS = {"model": ModelConfig, "train": TrainConfig}
_FLOAT = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")


# --------------------------------------------------------------------------------------------- dataclass <-> dict
def to_dict(obj: Any) -> Any:
    """A JSON-ready dict of a config dataclass (components as ``{"name", "options"}``)."""
    if isinstance(obj, Component):
        return {"name": obj.name, "options": to_dict(dict(obj.options))}
    if isinstance(obj, TokenBudget):
        return obj.to_dict()
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, Mapping):
        return {str(k): to_dict(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    return obj


def from_dict(cls: type, data: Any, where: str = "") -> Any:
    """Build (and validate) a config dataclass from a dict, with shorthands; unknown keys are refused with the
    valid ones and a did-you-mean."""
    obj = _coerce(cls, data, where or cls.__name__)
    validate = getattr(obj, "validate", None)
    if validate is not None:
        validate()
    return obj


def _coerce(tp: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None:
            if len(args) < len(typing.get_args(tp)):
                return None
            raise ConfigError(f"{where} may not be empty")
        return _coerce(args[0], value, where)
    if tp is Component:
        try:
            return Component.of(value)
        except (TypeError, ValueError) as e:
            raise ConfigError(f"{where}: {e}") from None
    if tp is TokenBudget:
        if isinstance(value, TokenBudget):
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            value = {"budget": value}
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where} expects a token budget (a number in (0, 1] or a mapping), got {value!r}")
        try:
            return TokenBudget.from_dict(dict(value))
        except (TypeError, ValueError) as e:
            raise ConfigError(f"{where}: {e}") from None
    if tp is AlignSpec and isinstance(value, (str, Component)):
        value = {"objective": value}
    if origin is dict:
        key_t, val_t = typing.get_args(tp)
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where} expects a mapping, got {value!r}")
        return {str(k): _coerce(val_t, v, f"{where}.{k}") for k, v in value.items()}
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where} expects a list, got {value!r}")
        return list(value)
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where} expects a mapping of {tp.__name__} options, got {value!r}")
        hints = typing.get_type_hints(tp)
        names = [f.name for f in dataclasses.fields(tp)]
        for k in value:
            if k not in names:
                raise ConfigError(unknown_message(f"{where} option", k, names))
        return tp(**{k: _coerce(hints[k], v, f"{where}.{k}") for k, v in value.items()})
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp is float and isinstance(value, str) and _FLOAT.fullmatch(value.strip()):
        return float(value)  # YAML 1.1 (PyYAML) reads 1e-3 as a string; JSON and YAML 1.2 read a number
    if tp in (int, float, str, bool) and not isinstance(value, tp) or (tp in (int, float) and isinstance(value, bool)):
        raise ConfigError(f"{where} expects {tp.__name__}, got {value!r}")
    return value


# ------------------------------------------------------------------------------------------------ layered options
def flatten_sections(options: Mapping[str, Any]) -> dict[str, Any]:
    """``{"model": {...}, "train": {...}}`` (a run's config.json, a YAML file) -> one flat namespace of options;
    flat keys pass through (model and training option names do not overlap)."""
    out: dict[str, Any] = {}
    for k, v in options.items():
        if k in SECTIONS and isinstance(v, Mapping):
            out.update(v)
        elif k not in ("run_type", "polymodal_version"):
            out[k] = v
    return out


def merge(base: Mapping[str, Any], layer: Mapping[str, Any]) -> dict[str, Any]:
    """``layer`` over ``base``, recursively. A component renamed by ``layer`` starts from its own options only."""
    out = dict(base)
    for k, v in layer.items():
        old = out.get(k)
        if isinstance(v, Mapping) and isinstance(old, str) and "name" not in v:
            old = {"name": old}  # --set fusion.options.layers=4 over fusion="transformer"
        if isinstance(v, Mapping) and isinstance(old, Mapping):
            renamed = "name" in v and "name" in old and v["name"] != old["name"]
            out[k] = dict(v) if renamed else merge(old, v)
        elif isinstance(v, str) and isinstance(old, Mapping) and "name" in old:
            out[k] = v  # fusion="late" over {"name": "transformer", "options": {...}}: a new component
        else:
            out[k] = v
    return out


def parse_sets(sets: Iterable[str]) -> dict[str, Any]:
    """``["fusion.options.layers=4", "epochs=3"]`` -> a nested dict; values are read as YAML (4 -> int,
    ``[0.5, 1.0]`` -> list, ``null`` -> None, anything else a string)."""
    out: dict[str, Any] = {}
    for item in sets:
        if "=" not in item:
            raise ConfigError(f"--set expects key.path=value, got {item!r} (e.g. --set fusion.options.layers=4)")
        path, raw = item.split("=", 1)
        keys = [k.strip() for k in path.split(".")]
        if not all(keys):
            raise ConfigError(f"--set has an empty key in {path!r}")
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError:
            value = raw
        if isinstance(value, str) and _FLOAT.fullmatch(value.strip()):
            value = float(value)  # 1e-3: a number, as in JSON and YAML 1.2
        node: dict[str, Any] = {}
        leaf = node
        for k in keys[:-1]:
            leaf[k] = {}
            leaf = leaf[k]
        leaf[keys[-1]] = value
        out = merge(out, node)
    return out


def read_file(path: str | Path) -> dict[str, Any]:
    """A ``--config`` file: YAML or JSON, with ``model:`` / ``train:`` sections or flat options."""
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as e:
        raise ConfigError(f"cannot read config file {str(p)!r}: {e.strerror or e}") from None
    try:
        data = json.loads(text) if p.suffix == ".json" else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as e:
        raise ConfigError(f"config file {str(p)!r} is not valid {'JSON' if p.suffix == '.json' else 'YAML'}: {e}") from None
    if data is None:
        return {}
    if not isinstance(data, Mapping):
        raise ConfigError(f"config file {str(p)!r} must hold a mapping of options, got {type(data).__name__}")
    return flatten_sections(data)


def build(options: Mapping[str, Any]) -> tuple[ModelConfig, TrainConfig]:
    """Route flat options to the model or the training config, build both and validate them."""
    m_names = {f.name for f in dataclasses.fields(ModelConfig)}
    t_names = {f.name for f in dataclasses.fields(TrainConfig)}
    for k in options:
        if k not in m_names and k not in t_names:
            raise ConfigError(unknown_message("option", k, m_names | t_names))
    model = from_dict(ModelConfig, {k: v for k, v in options.items() if k in m_names}, "model")
    train = from_dict(TrainConfig, {k: v for k, v in options.items() if k in t_names}, "train")
    return model, train


def dump(model: ModelConfig, train: TrainConfig, **extra: Any) -> dict[str, Any]:
    """The ``config.json`` of a run: ``{**extra, "model": {...}, "train": {...}}``."""
    return {**extra, "model": to_dict(model), "train": to_dict(train)}
