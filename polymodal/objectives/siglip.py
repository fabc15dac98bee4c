"""SigLIP pairwise sigmoid loss (Zhai et al. 2023): a pure function plus a module with learnable scale and bias.

Every (a_i, b_j) pair is an independent binary classification: positive on the diagonal, negative elsewhere.
``siglip_loss = -sum(logsigmoid(labels * (scale * a @ b.T + bias))) / B``, the same as open_clip's ``SigLipLoss``
(single process); ``logit_scale`` is the already-exponentiated multiplier.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from polymodal.objectives.base import OBJECTIVES, Objective
from polymodal.objectives.clip import check_pair, clamped_scale, log_or_none, make_logit_scale, pair_from
from polymodal.objectives.distributed import gather_features, local_offset


def siglip_logits(a: Tensor, b: Tensor, logit_scale: Tensor | float, logit_bias: Tensor | float | None) -> Tensor:
    logits = logit_scale * a @ b.T
    if logit_bias is not None:
        logits = logits + logit_bias
    return logits


def siglip_loss(
    a: Tensor,
    b: Tensor,
    logit_scale: Tensor | float,
    logit_bias: Tensor | float | None,
    *,
    gather: bool = False,
) -> Tensor:
    """Sigmoid loss over all pairs, divided by the number of (local) rows.

    Args:
        a, b: ``[B, D]`` L2-normalised features; row ``i`` of ``a`` pairs with row ``i`` of ``b``.
        logit_scale: already-exponentiated multiplier; logit_bias: additive bias (``None`` = no bias).
        gather: score local rows of ``a`` against the ``b`` rows of every process. Each (a, b) pair of the global
            batch is then scored on exactly one process, so the mean over processes equals the single-process loss.
    """
    check_pair(a, b)
    n = a.shape[0]
    b_all = gather_features(b) if gather else b
    offset = local_offset(n) if gather else 0
    logits = siglip_logits(a, b_all, logit_scale, logit_bias)
    labels = -torch.ones_like(logits)
    rows = torch.arange(n, device=a.device)
    labels[rows, rows + offset] = 1.0
    return -F.logsigmoid(labels * logits).sum() / n


@OBJECTIVES.register("siglip")
class SigLipLoss(Objective):
    """SigLIP loss with a learnable log-scale (init ``log 10``) and bias (init ``-10``), as in the SigLIP paper.

    ``logit_scale`` stores the log of the multiplier and is clamped in place to ``[0, log 100]`` before use (open_clip
    clamps every model's scale there during training); inputs are L2-normalised unless ``normalize=False``.
    """

    def __init__(
        self,
        init_logit_scale: float = math.log(10.0),
        init_logit_bias: float = -10.0,
        *,
        learnable: bool = True,
        min_scale: float | None = 1.0,
        max_scale: float | None = 100.0,
        normalize: bool = True,
        gather: bool = False,
    ) -> None:
        super().__init__()
        make_logit_scale(self, init_logit_scale, learnable=learnable)
        bias = torch.tensor(float(init_logit_bias))
        if learnable:
            self.logit_bias = nn.Parameter(bias)
        else:
            self.register_buffer("logit_bias", bias)
        self.log_min, self.log_max = log_or_none(min_scale), log_or_none(max_scale)
        self.normalize = normalize
        self.gather = gather

    def scale(self) -> Tensor:
        return clamped_scale(self.logit_scale, self.log_min, self.log_max)

    def forward(self, *feats) -> Tensor:
        a, b = pair_from(feats)
        if self.normalize:
            a, b = F.normalize(a, dim=-1), F.normalize(b, dim=-1)
        return siglip_loss(a, b, self.scale(), self.logit_bias, gather=self.gather)
