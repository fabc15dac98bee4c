"""Run folders: one on-disk format for every recipe, with the run type read once.

A run folder holds ``config.json`` (``run_type``, the polymodal version, the ``model`` and ``train`` configs),
``schema.json`` (columns, kinds, fitted preprocessing), ``weights.safetensors`` (the net's state dict; frozen
pretrained backbones leave their weights out, see ``encoders/pretrained/base.py``) and ``report.json`` (training
history and decode report; optional when reading). Loading reads JSON and safetensors only: nothing is unpickled
and no code from the folder runs. ``RUN_TYPES`` maps ``run_type`` to the estimator class that loads it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from polymodal.data.schema import Schema
from polymodal.errors import PolymodalError
from polymodal.registry import Registry

NEEDED = ("config.json", "schema.json", "weights.safetensors")
RUN_TYPES: Registry[Any] = Registry("run type")


def check_out(path: str | Path | None) -> None:
    """Refuse an output path that cannot hold a run folder, before any decoding or training."""
    if path is None:
        return
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise PolymodalError(f"cannot write a run to {str(p)!r}: it is a file; pass a folder path to --out / out=")
    parent = next((a for a in (p, *p.parents) if a.exists()), None)
    if parent is not None and not os.access(parent, os.W_OK):
        raise PolymodalError(f"cannot write a run under {str(parent)!r}: the folder is not writable")


def write_run(path: str | Path, config: dict[str, Any], schema: Schema, net: nn.Module, info: dict[str, Any]) -> Path:
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise PolymodalError(f"cannot write a run to {str(path)!r}: it is a file; pass a folder path to --out")
    path.mkdir(parents=True, exist_ok=True)
    (path / "config.json").write_text(json.dumps(config, indent=2))
    (path / "schema.json").write_text(schema.to_json())
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(path / "weights.safetensors"))
    (path / "report.json").write_text(json.dumps(info, indent=2, default=str))
    return path


def read_run(path: str | Path) -> tuple[dict[str, Any], Schema, dict[str, Any]]:
    """``(config, schema, info)`` of a saved run; raises a clear error when files are missing or unreadable."""
    path = Path(path)
    if not path.is_dir():
        raise PolymodalError(f"{str(path)!r} is not a run folder (written by `polymodal fit --out` / `align --out`)")
    absent = [n for n in NEEDED if not (path / n).exists()]
    if absent:
        raise PolymodalError(f"{path} is not a saved polymodal run: missing {absent} (expected {list(NEEDED)})")
    try:
        cfg = json.loads((path / "config.json").read_text())
        schema = Schema.from_dict(json.loads((path / "schema.json").read_text()))
        info = json.loads((path / "report.json").read_text()) if (path / "report.json").exists() else {}
    except (ValueError, KeyError, TypeError) as e:
        raise PolymodalError(f"run folder {str(path)!r} has an unreadable config, schema or report: {e}") from None
    if not isinstance(cfg, dict) or "model" not in cfg or "train" not in cfg:
        raise PolymodalError(f"{path}/config.json has no model / train sections: not a polymodal run")
    return cfg, schema, info


def run_type(path: str | Path) -> str:
    """The ``run_type`` of a run folder (``"model"`` when the config does not say)."""
    cfg, _, _ = read_run(path)
    return str(cfg.get("run_type", "model"))


def load_weights(path: str | Path, net: nn.Module) -> nn.Module:
    try:
        net.load_state_dict(load_file(str(Path(path) / "weights.safetensors")))
    except (SafetensorError, RuntimeError, OSError) as e:
        raise PolymodalError(f"cannot load {Path(path) / 'weights.safetensors'}: {e}".splitlines()[0]) from None
    return net
