"""The on-disk layout shared by every saved run (a supervised ``Model`` and an ``AlignedModel``).

A run folder holds ``config.json`` (the configs, the polymodal version and, for alignment runs, ``run_type``),
``schema.json`` (columns, kinds, fitted preprocessing), ``weights.safetensors`` (the network's state dict; frozen
pretrained backbones leave their weights out, see ``encoders/pretrained/base.py``) and ``report.json`` (training
history and decode report; optional when reading).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from safetensors.torch import load_file, save_file
from torch import nn

from polymodal.data.schema import Schema
from polymodal.errors import PolymodalError

NEEDED = ("config.json", "schema.json", "weights.safetensors")


def write_run(path: str | Path, config: dict[str, Any], schema: Schema, net: nn.Module, info: dict[str, Any]) -> Path:
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    (path / "config.json").write_text(json.dumps(config, indent=2))
    (path / "schema.json").write_text(schema.to_json())
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(path / "weights.safetensors"))
    (path / "report.json").write_text(json.dumps(info, indent=2, default=str))
    return path


def read_run(path: str | Path) -> tuple[dict[str, Any], Schema, dict[str, Any]]:
    """``(config, schema, info)`` of a saved run; raises a clear error when files are missing."""
    path = Path(path)
    absent = [n for n in NEEDED if not (path / n).exists()]
    if absent:
        raise PolymodalError(f"{path} is not a saved polymodal run: missing {absent} (expected {list(NEEDED)})")
    cfg = json.loads((path / "config.json").read_text())
    schema = Schema.from_dict(json.loads((path / "schema.json").read_text()))
    info = json.loads((path / "report.json").read_text()) if (path / "report.json").exists() else {}
    return cfg, schema, info


def load_weights(path: str | Path, net: nn.Module) -> nn.Module:
    net.load_state_dict(load_file(str(Path(path) / "weights.safetensors")))
    return net
