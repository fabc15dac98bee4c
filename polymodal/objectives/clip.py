"""CLIP / ALIGN symmetric InfoNCE: a pure function plus a thin module holding the learnable temperature.

Conventions (the same as open_clip's ``ClipLoss``):

* ``clip_loss`` takes features the caller has already L2-normalised and ``logit_scale``, the *already
  exponentiated* multiplier of the cosine similarity (``1 / temperature``);
* the loss is the mean of the a->b and b->a cross-entropies with labels ``arange(B)`` (pair ``i`` is positive).

``ClipLoss`` stores the *log* of the multiplier as the parameter ``logit_scale`` (init ``log(1 / 0.07)``),
clamps it in place to ``[log min_scale, log max_scale] = [0, log 100]`` before every use (open_clip clamps it
after each optimiser step, TorchMultimodal at the start of ``forward``; clamping in ``forward`` means the clamp
also holds when the module is used outside our training loop) and normalises its inputs itself
(``normalize=False`` reproduces TorchMultimodal's ``ContrastiveLossWithTemperature``, which does not).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from polymodal.objectives.base import OBJECTIVES, Objective
from polymodal.objectives.distributed import gather_features, local_offset


@dataclass
class ContrastiveOutput:
    """Everything a symmetric contrastive loss computed (TorchMultimodal's ``ContrastiveLossOutput``)."""

    loss: Tensor
    loss_a: Tensor  # a -> b cross-entropy
    loss_b: Tensor  # b -> a cross-entropy
    logits_a: Tensor  # [rows kept, B(*world)]  scale * a @ b.T
    logits_b: Tensor  # [rows kept, B(*world)]  scale * b @ a.T


def check_pair(a: Tensor, b: Tensor) -> None:
    if a.dim() != 2 or b.dim() != 2:
        raise ValueError(f"contrastive features must be [B, D] matrices, got {tuple(a.shape)} and {tuple(b.shape)}")
    if a.shape != b.shape:
        raise ValueError(
            f"paired features must have the same shape, got {tuple(a.shape)} and {tuple(b.shape)}; "
            "project both modalities to the same dimension and keep only rows where both are present"
        )


def clip_output(
    a: Tensor,
    b: Tensor,
    logit_scale: Tensor | float,
    *,
    labels: Tensor | None = None,
    mask: Tensor | None = None,
    label_smoothing: float = 0.0,
    gather: bool = False,
) -> ContrastiveOutput:
    """``clip_loss`` with all intermediates (see there for the arguments)."""
    check_pair(a, b)
    n = a.shape[0]
    if gather:
        if labels is not None:
            raise ValueError("custom labels are not supported with gather=True; pair row i of a with row i of b")
        a_all, b_all = gather_features(a), gather_features(b)
        labels_a = labels_b = torch.arange(n, device=a.device) + local_offset(n)
        rows_a = rows_b = mask
    else:
        a_all, b_all = a, b
        if labels is None:
            labels_a = labels_b = torch.arange(n, device=a.device)
            rows_a = rows_b = mask
        else:
            labels_a = labels.to(device=a.device, dtype=torch.long)
            if labels_a.shape != (n,) or not torch.equal(labels_a.sort().values, torch.arange(n, device=a.device)):
                raise ValueError(
                    "labels must be a permutation of arange(B): row i of a is paired with row labels[i] of b"
                )
            labels_b = torch.argsort(labels_a)  # the inverse pairing: row j of b is paired with row labels_b[j] of a
            rows_a = mask
            if mask is None:
                rows_b = None
            else:
                rows_b = torch.zeros_like(mask)
                rows_b[labels_a] = mask
    logits_a = logit_scale * a @ b_all.T
    logits_b = logit_scale * b @ a_all.T
    if rows_a is not None:
        rows_a = rows_a.to(device=a.device, dtype=torch.bool)
        rows_b = rows_b.to(device=a.device, dtype=torch.bool)
        logits_a, labels_a = logits_a[rows_a], labels_a[rows_a]
        logits_b, labels_b = logits_b[rows_b], labels_b[rows_b]
    loss_a = F.cross_entropy(logits_a, labels_a, label_smoothing=label_smoothing)
    loss_b = F.cross_entropy(logits_b, labels_b, label_smoothing=label_smoothing)
    return ContrastiveOutput((loss_a + loss_b) / 2, loss_a, loss_b, logits_a, logits_b)


def clip_loss(
    a: Tensor,
    b: Tensor,
    logit_scale: Tensor | float,
    *,
    labels: Tensor | None = None,
    mask: Tensor | None = None,
    label_smoothing: float = 0.0,
    gather: bool = False,
) -> Tensor:
    """Symmetric InfoNCE: ``(CE(s * a @ b.T, labels) + CE(s * b @ a.T, labels')) / 2``.

    Args:
        a, b: ``[B, D]`` features, L2-normalised by the caller (row ``i`` of ``a`` pairs with row ``i`` of ``b``).
        logit_scale: the already-exponentiated multiplier ``s`` (a float or a scalar tensor).
        labels: optional permutation; row ``i`` of ``a`` pairs with row ``labels[i]`` of ``b`` (the b->a
            direction uses the inverse permutation). Default ``arange(B)``.
        mask: optional ``[B]`` bool; pairs with ``False`` are not used as positives (their rows do not
            contribute a cross-entropy term) but still serve as negatives (TorchMultimodal's ``mask``).
        label_smoothing: passed to ``F.cross_entropy``.
        gather: score local rows against the features of every process (see ``distributed``).
    """
    return clip_output(
        a, b, logit_scale, labels=labels, mask=mask, label_smoothing=label_smoothing, gather=gather
    ).loss


def contrastive_loss_with_temperature(
    a: Tensor,
    b: Tensor,
    log_scale: Tensor | float,
    *,
    mask: Tensor | None = None,
    label_smoothing: float = 0.0,
    gather: bool = False,
) -> ContrastiveOutput:
    """TorchMultimodal's convention: ``log_scale`` is the LOG of the multiplier and the embeddings are used as
    given (not normalised). Clamping the parameter is the module's job (``ClipLoss``)."""
    scale = torch.exp(torch.as_tensor(log_scale, dtype=a.dtype, device=a.device))
    return clip_output(a, b, scale, mask=mask, label_smoothing=label_smoothing, gather=gather)


def pair_from(args: tuple) -> tuple[Tensor, Tensor]:
    """Accept ``(a, b)``, ``([a, b],)`` or ``({"image": a, "text": b},)`` (dict order) as the two feature matrices."""
    if len(args) == 1:
        (feats,) = args
        if isinstance(feats, Mapping):
            feats = list(feats.values())
        elif isinstance(feats, Sequence):
            feats = list(feats)
        else:
            feats = [feats]
    else:
        feats = list(args)
    if len(feats) != 2:
        raise ValueError(
            f"a pairwise contrastive loss needs exactly 2 modalities, got {len(feats)}; "
            "for 3 or more use the 'pairwise', 'anchor' or 'symile' objective"
        )
    return feats[0], feats[1]


def make_logit_scale(module: nn.Module, init: float, *, learnable: bool = True) -> None:
    """Register ``module.logit_scale`` (the LOG of the multiplier) as a parameter, or a buffer when fixed."""
    value = torch.tensor(float(init))
    if learnable:
        module.logit_scale = nn.Parameter(value)
    else:
        module.register_buffer("logit_scale", value)


def clamped_scale(log_scale: Tensor, log_min: float | None, log_max: float | None) -> Tensor:
    """Clamp the stored log-multiplier in place (outside autograd, like TorchMultimodal and open_clip's training
    loop) and return its ``exp``, through which the gradient reaches the parameter."""
    if log_min is not None or log_max is not None:
        with torch.no_grad():
            log_scale.clamp_(log_min, log_max)
    return log_scale.exp()


def log_or_none(x: float | None) -> float | None:
    return None if x is None else math.log(x)


@OBJECTIVES.register("clip")
class ClipLoss(Objective):
    """CLIP / ALIGN symmetric InfoNCE with a learnable temperature (open_clip / TorchMultimodal style).

    ``ClipLoss()(a, b)`` or ``ClipLoss()({"image": a, "text": b})``. The parameter ``logit_scale`` is the log of
    the multiplier, initialised to ``log(1 / 0.07)`` and clamped to ``[0, log 100]`` before use; inputs are
    L2-normalised unless ``normalize=False``.
    """

    def __init__(
        self,
        init_logit_scale: float = math.log(1 / 0.07),
        *,
        learnable: bool = True,
        min_scale: float | None = 1.0,
        max_scale: float | None = 100.0,
        normalize: bool = True,
        label_smoothing: float = 0.0,
        gather: bool = False,
    ) -> None:
        super().__init__()
        make_logit_scale(self, init_logit_scale, learnable=learnable)
        self.log_min, self.log_max = log_or_none(min_scale), log_or_none(max_scale)
        self.normalize = normalize
        self.label_smoothing = label_smoothing
        self.gather = gather

    def scale(self) -> Tensor:
        """The multiplier actually used: ``exp(logit_scale)`` after clamping ``logit_scale`` in place."""
        return clamped_scale(self.logit_scale, self.log_min, self.log_max)

    def output(self, *feats, labels: Tensor | None = None, mask: Tensor | None = None) -> ContrastiveOutput:
        a, b = pair_from(feats)
        if self.normalize:
            a, b = F.normalize(a, dim=-1), F.normalize(b, dim=-1)
        return clip_output(
            a, b, self.scale(), labels=labels, mask=mask, label_smoothing=self.label_smoothing, gather=self.gather
        )

    def forward(self, *feats, labels: Tensor | None = None, mask: Tensor | None = None) -> Tensor:
        return self.output(*feats, labels=labels, mask=mask).loss
