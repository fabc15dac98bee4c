"""Adapters for towers from ``timm`` and ``open_clip`` (pip extras ``timm`` / ``open_clip``).

Both libraries need torchvision, which must match the installed torch build; the default install (and CI) does not
include them, so these adapters import them only when an encoder is built and otherwise fail with the extra to
install. Their logic is tested with stand-in modules (tests/encoders/pretrained/test_optional.py); a real model's
parity with the library is not tested here.

* ``timm``: ``model=<timm architecture>`` with ``weights=<local checkpoint file>`` (loaded with timm's
  ``checkpoint_path``), or ``model="local-dir:<folder>"`` (a folder saved by timm: config.json + weights), or a hub
  name with ``allow_hub=True``. Features: ``forward_features`` (tokens) and ``forward_head(pre_logits=True)``
  (``pool="pooler"``, the default); normalisation and input size from timm's data config.
* ``open_clip``: ``model=<open_clip architecture>`` with ``weights=<local checkpoint file>`` (or ``pretrained=<tag>``
  with ``allow_hub=True``). Image modalities use ``encode_image`` and text modalities ``encode_text`` (the shared
  CLIP space; ``pool="pooler"`` only); text is tokenised by open_clip's own tokenizer (``tokenizer="open_clip:<model>"``
  in the schema).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from polymodal.data.schema import ModalitySpec
from polymodal.errors import PolymodalError
from polymodal.encoders.base import ENCODERS
from polymodal.encoders.pretrained.base import PretrainedEncoder, fingerprint, require

OPENAI_MEAN, OPENAI_STD = [0.48145466, 0.4578275, 0.40821073], [0.26862954, 0.26130258, 0.27577711]


def _check_file(weights: str | None, what: str) -> str | None:
    if weights is None:
        return None
    p = Path(weights).expanduser()
    if not p.is_file():
        raise PolymodalError(f"{what}: weights file {str(p)!r} does not exist")
    return str(p.resolve())


# ------------------------------------------------------------------------------------------------------ timm
def _create_timm(timm: Any, model: str, weights: str | None, allow_hub: bool) -> nn.Module:
    if weights:
        net = timm.create_model(model, pretrained=False, checkpoint_path=weights)
    elif model.startswith("local-dir:") or allow_hub:
        net = timm.create_model(model, pretrained=True)
    else:
        raise PolymodalError(
            f"encoder 'timm': model {model!r} needs local weights: pass weights=<checkpoint file> or "
            "model='local-dir:<folder>'; polymodal never downloads unless you pass allow_hub=True"
        )
    net.reset_classifier(0)
    return net.eval()


def _timm_data_config(timm: Any, net: nn.Module) -> dict[str, Any]:
    return dict(timm.data.resolve_model_data_config(net))


@ENCODERS.register("timm")
class Timm(PretrainedEncoder):
    """A timm image model from local weights (pip extra 'timm'; needs torchvision): pre-logits features."""

    kind = ("image",)
    default_pool = "pooler"

    def __init__(self, spec: ModalitySpec, dim: int, *, model: str | None = None, weights: str | None = None,
                 allow_hub: bool = False, **options: Any) -> None:
        super().__init__(spec, dim, **options)
        if not model:
            raise PolymodalError("encoder 'timm' needs model=<timm architecture name or local-dir:<folder>>")
        timm = require("timm", "timm", what="encoder 'timm'")
        weights = _check_file(weights, "encoder 'timm'")
        self.backbone = _create_timm(timm, model, weights, allow_hub)
        data = _timm_data_config(timm, self.backbone)
        self.register_buffer("mean", torch.tensor(data["mean"]).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(data["std"]).view(1, -1, 1, 1), persistent=False)
        self.feature_dim = int(self.backbone.num_features)
        local = weights or (model[len("local-dir:"):] if model.startswith("local-dir:") else None)
        self.source = local
        self.identity = (fingerprint(local) if local else f"hub:{model}") + f":timm:{model}"
        self._finish()

    @classmethod
    def source_path(cls, **options: Any) -> str | None:
        model = str(options.get("model") or "")
        return options.get("weights") or (model[len("local-dir:"):] if model.startswith("local-dir:") else None)

    @classmethod
    def processor_options(cls, spec: ModalitySpec, **options: Any) -> dict[str, Any]:
        timm = require("timm", "timm", what="encoder 'timm'")
        model = options.get("model")
        if not model:
            raise PolymodalError("encoder 'timm' needs model=<timm architecture name or local-dir:<folder>>")
        weights = _check_file(options.get("weights"), "encoder 'timm'")
        net = _create_timm(timm, model, weights, bool(options.get("allow_hub")))
        _, h, w = _timm_data_config(timm, net)["input_size"]
        return {"size": [int(h), int(w)], "channels": 3}

    def features(self, inputs: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        px = inputs["pixels"].float()
        if px.shape[1] == 1:
            px = px.expand(-1, 3, -1, -1)
        fmap = self.backbone.forward_features((px - self.mean) / self.std)
        pooled = self.backbone.forward_head(fmap, pre_logits=True)
        x = fmap.flatten(2).transpose(1, 2) if fmap.dim() == 4 else fmap  # CNN maps or ViT tokens
        mask = torch.ones(x.shape[:2], dtype=torch.bool, device=x.device)
        return self.pooled_features(x.float(), mask, pooled.float())


# ------------------------------------------------------------------------------------------------- open_clip
def _create_open_clip(oc: Any, model: str, weights: str | None, pretrained: str | None, allow_hub: bool) -> nn.Module:
    if weights:
        net = oc.create_model(model, pretrained=weights)
    elif pretrained and allow_hub:
        net = oc.create_model(model, pretrained=pretrained)
    else:
        raise PolymodalError(
            f"encoder 'open_clip': model {model!r} needs weights=<local checkpoint file>; a pretrained tag is only "
            "downloaded with allow_hub=True"
        )
    return net.eval()


@ENCODERS.register("open_clip")
class OpenClip(PretrainedEncoder):
    """An open_clip image or text tower from a local checkpoint (pip extra 'open_clip'; needs torchvision)."""

    kind = ("image", "text")
    default_pool = "pooler"

    def __init__(self, spec: ModalitySpec, dim: int, *, model: str | None = None, weights: str | None = None,
                 pretrained: str | None = None, allow_hub: bool = False, **options: Any) -> None:
        super().__init__(spec, dim, **options)
        if not model:
            raise PolymodalError("encoder 'open_clip' needs model=<open_clip architecture, e.g. ViT-B-32>")
        if self.pool != "pooler":
            raise PolymodalError("encoder 'open_clip' gives the CLIP embedding only: pool must be 'pooler'")
        oc = require("open_clip", "open_clip", what="encoder 'open_clip'")
        weights = _check_file(weights, "encoder 'open_clip'")
        net = _create_open_clip(oc, model, weights, pretrained, allow_hub)
        if spec.kind == "image":
            self.backbone = net.visual
            cfg = getattr(net.visual, "preprocess_cfg", None) or {}
            mean, std = cfg.get("mean", OPENAI_MEAN), cfg.get("std", OPENAI_STD)
            self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1), persistent=False)
            self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1), persistent=False)
        else:
            net.visual = nn.Identity()  # only the text half is kept
            self.backbone = net
            self.context_length = int(getattr(net, "context_length", 77))
        with torch.no_grad():
            self.feature_dim = int(self._embed(self._dummy()).shape[-1])
        self.source = weights
        self.identity = (fingerprint(weights) if weights else f"hub:{model}:{pretrained}") + f":open_clip:{model}"
        self._finish()

    @classmethod
    def source_path(cls, **options: Any) -> str | None:
        return options.get("weights")

    @classmethod
    def processor_options(cls, spec: ModalitySpec, **options: Any) -> dict[str, Any]:
        oc = require("open_clip", "open_clip", what="encoder 'open_clip'")
        model = options.get("model")
        if not model:
            raise PolymodalError("encoder 'open_clip' needs model=<open_clip architecture, e.g. ViT-B-32>")
        if spec.kind == "text":
            return {"tokenizer": f"open_clip:{model}", "max_len_cap": int(getattr(oc.get_tokenizer(model), "context_length", 77))}
        net = oc.create_model(model)  # architecture only (random weights): the input size
        size = getattr(net.visual, "image_size", 224)
        size = [size, size] if isinstance(size, int) else list(size)
        return {"size": [int(s) for s in size], "channels": 3}

    def _dummy(self) -> dict[str, Tensor]:
        if self.spec.kind == "image":
            h, w = self.spec.options.get("size", [224, 224])
            return {"pixels": torch.zeros(1, 3, int(h), int(w))}
        return {"ids": torch.zeros(1, 2, dtype=torch.long), "length": torch.ones(1, dtype=torch.long)}

    def _embed(self, inputs: dict[str, Tensor]) -> Tensor:
        if self.spec.kind == "image":
            px = inputs["pixels"].float()
            if px.shape[1] == 1:
                px = px.expand(-1, 3, -1, -1)
            return self.backbone((px - self.mean) / self.std)
        ids = inputs["ids"].long()
        pos = torch.arange(ids.shape[1], device=ids.device)
        ids = torch.where(pos[None] < inputs["length"].to(ids.device)[:, None], ids, torch.zeros_like(ids))
        ids = nn.functional.pad(ids, (0, max(0, self.context_length - ids.shape[1])))[:, : self.context_length]
        return self.backbone.encode_text(ids)

    def features(self, inputs: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        v = self._embed(inputs).float()
        return v[:, None], torch.ones(v.shape[0], 1, dtype=torch.bool, device=v.device)
