"""Hugging Face vision encoder ``hf_vision`` (pip extra ``pretrained``): ViT-like encoders (``AutoModel``), or
the vision tower of a CLIP / SigLIP checkpoint, from a local folder (a hub id only with ``allow_hub=True``).

``image_stats`` gives a checkpoint's pixel normalisation. Loading helpers: ``hf.py``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from polymodal.data.schema import ModalitySpec
from polymodal.encoders.base import ENCODERS
from polymodal.encoders.pretrained.base import PretrainedEncoder, resolve_source
from polymodal.encoders.pretrained.hf import identity, load_json, local_source, vision_config, load_hf

CLIP_MEAN, CLIP_STD = [0.48145466, 0.4578275, 0.40821073], [0.26862954, 0.26130258, 0.27577711]
HALF = [0.5, 0.5, 0.5]


def image_stats(source: str, model_type: str) -> tuple[list[float], list[float]]:
    """Normalisation of a vision checkpoint: its preprocessor_config.json, else the family's convention."""
    pre = load_json(Path(source) / "preprocessor_config.json")
    if pre.get("image_mean") and pre.get("image_std"):
        return list(pre["image_mean"]), list(pre["image_std"])
    return (CLIP_MEAN, CLIP_STD) if model_type.startswith("clip") else (HALF, HALF)


@ENCODERS.register("hf_vision")
class HFVision(PretrainedEncoder):
    """Hugging Face vision encoder from a local folder: ViT-like (AutoModel) or a CLIP / SigLIP vision tower."""

    kind = ("image",)
    default_pool = None  # CLIP / SigLIP: 'pooler' (CLIP through its visual projection); others: 'cls'

    @classmethod
    def source_path(cls, **options: Any) -> str | None:
        return local_source(options)

    def __init__(self, spec: ModalitySpec, dim: int, *, path: str | None = None, allow_hub: bool = False,
                 mean: list[float] | None = None, std: list[float] | None = None, **options: Any) -> None:
        super().__init__(spec, dim, **options)
        source = resolve_source(path, allow_hub=allow_hub, what="hf_vision")
        model = load_hf(source, allow_hub=allow_hub, what="hf_vision")
        tower = getattr(model, "vision_model", None) or model
        projection = getattr(model, "visual_projection", None)
        self.backbone = nn.ModuleDict({"tower": tower, "projection": projection or nn.Identity()})
        cfg = vision_config(model.config)
        model_type = str(getattr(model.config, "model_type", ""))
        if self.pool is None:
            self.pool = "pooler" if model_type.startswith(("clip", "siglip")) else "cls"
        self.feature_dim = int(cfg.hidden_size)
        if self.pool == "pooler" and isinstance(projection, nn.Linear):
            self.feature_dim = int(projection.out_features)
        m, s = image_stats(source, model_type)
        self.register_buffer("mean", torch.tensor(mean or m).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std or s).view(1, -1, 1, 1), persistent=False)
        self.source = source
        self.identity = identity(source, allow_hub) + f":{self.mean.flatten().tolist()}{self.std.flatten().tolist()}"
        self._finish()

    @classmethod
    def processor_options(cls, spec: ModalitySpec, **options: Any) -> dict[str, Any]:
        source = resolve_source(options.get("path"), allow_hub=bool(options.get("allow_hub")), what="hf_vision")
        d = load_json(Path(source) / "config.json")
        v = d.get("vision_config") or d
        size = v.get("image_size", 224)
        size = [size, size] if isinstance(size, int) else list(size)
        return {"size": size, "channels": int(v.get("num_channels", 3))}

    def features(self, inputs: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        px = inputs["pixels"].float()
        if px.shape[1] == 1 and self.mean.shape[1] == 3:
            px = px.expand(-1, 3, -1, -1)
        out = self.backbone["tower"](pixel_values=(px - self.mean) / self.std)
        x = out.last_hidden_state.float()
        pooled = getattr(out, "pooler_output", None)
        if pooled is not None:
            pooled = self.backbone["projection"](pooled).float()
        mask = torch.ones(x.shape[:2], dtype=torch.bool, device=x.device)
        return self.pooled_features(x, mask, pooled)
