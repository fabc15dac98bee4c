"""Objectives for three or more modalities built from a pair loss, and the alignment + uniformity regulariser.

* ``pairwise_loss``: the mean of a pair loss over all ``M * (M - 1) / 2`` modality pairs (every modality aligned
  with every other; "sum of pairwise CLIP losses" up to the constant factor).
* ``anchor_loss``: ImageBind's binding: every other modality is aligned with one anchor modality only
  (``M - 1`` pairs), so modalities never seen together are aligned through the anchor.
* ``uniformity_alignment``: Wang & Isola (2020) alignment + uniformity on the hypersphere; see there.

A pair loss is any callable ``(a, b) -> scalar``: a configured module (``ClipLoss()``, ``SigLipLoss()``, sharing
its learnable temperature across pairs) or a partial function (``functools.partial(clip_loss, logit_scale=10.)``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from itertools import combinations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from polymodal.objectives.base import OBJECTIVES, Objective
from polymodal.objectives.clip import pair_from

PairLoss = Callable[[Tensor, Tensor], Tensor]


def _pair_rows(
    feats: Mapping[str, Tensor], x: str, y: str, present: Mapping[str, Tensor] | None
) -> tuple[Tensor, Tensor] | None:
    a, b = feats[x], feats[y]
    if present is None:
        return a, b
    both = torch.ones(a.shape[0], dtype=torch.bool, device=a.device)
    for name in (x, y):
        if name in present:
            both = both & present[name].to(device=a.device, dtype=torch.bool)
    if int(both.sum()) < 2:  # a contrastive pair loss needs at least one negative
        return None
    return a[both], b[both]


def _mean(losses: list[Tensor], feats: Mapping[str, Tensor]) -> Tensor:
    if not losses:  # nothing to align in this batch: a zero that still belongs to the graph
        return sum(f.sum() for f in feats.values()) * 0.0
    return torch.stack(losses).mean()


def pairwise_loss(
    feats: Mapping[str, Tensor], pair_loss: PairLoss, *, present: Mapping[str, Tensor] | None = None
) -> Tensor:
    """Mean of ``pair_loss(feats[x], feats[y])`` over all pairs ``x < y`` in dict order.

    ``present`` (optional, ``{name: [B] bool}``): each pair uses only the rows where both modalities are present;
    pairs with fewer than 2 such rows are skipped. Not combinable with a gathering pair loss (row counts differ).
    """
    if len(feats) < 2:
        raise ValueError(f"pairwise_loss needs at least 2 modalities, got {list(feats)}")
    losses = []
    for x, y in combinations(list(feats), 2):
        rows = _pair_rows(feats, x, y, present)
        if rows is not None:
            losses.append(pair_loss(*rows))
    return _mean(losses, feats)


def anchor_loss(
    feats: Mapping[str, Tensor],
    anchor: str,
    pair_loss: PairLoss,
    *,
    present: Mapping[str, Tensor] | None = None,
) -> Tensor:
    """ImageBind binding: mean over the other modalities ``m`` of ``pair_loss(feats[anchor], feats[m])``."""
    if anchor not in feats:
        raise KeyError(f"anchor modality {anchor!r} not among the features {list(feats)}")
    if len(feats) < 2:
        raise ValueError(f"anchor_loss needs at least 2 modalities, got {list(feats)}")
    losses = []
    for m in feats:
        if m == anchor:
            continue
        rows = _pair_rows(feats, anchor, m, present)
        if rows is not None:
            losses.append(pair_loss(*rows))
    return _mean(losses, feats)


def alignment(a: Tensor, b: Tensor, alpha: float = 2.0) -> Tensor:
    """``mean_i ||a_i - b_i||_2 ** alpha``: how far paired embeddings are apart (Wang & Isola's L_align)."""
    sq = (a - b).pow(2).sum(dim=1)
    return sq.mean() if alpha == 2 else sq.pow(alpha / 2).mean()


def uniformity(x: Tensor, t: float = 2.0) -> Tensor:
    """``log mean_{i<j} exp(-t ||x_i - x_j||^2)`` (Wang & Isola's L_uniform; lower = more uniform on the sphere).

    Computed with a log-sum-exp over the ``B (B - 1) / 2`` distinct pairs, from ``|x_i|^2 + |x_j|^2 - 2 x_i.x_j``
    (``[B, B]`` memory, no ``[B, B, D]`` difference tensor).
    """
    n = x.shape[0]
    if n < 2:
        raise ValueError("uniformity needs at least 2 rows")
    sq = x.pow(2).sum(dim=1)
    d2 = (sq[:, None] + sq[None, :] - 2 * x @ x.T).clamp_min(0)
    i, j = torch.triu_indices(n, n, offset=1, device=x.device)
    return torch.logsumexp(-t * d2[i, j], dim=0) - math.log(i.numel())


def uniformity_alignment(
    a: Tensor,
    b: Tensor,
    t: float = 2.0,
    *,
    alpha: float = 2.0,
    uniformity_weight: float = 1.0,
    joint: bool = True,
) -> Tensor:
    """Alignment + uniformity regulariser for two L2-normalised ``[B, D]`` feature matrices.

    ``alignment(a, b, alpha) + uniformity_weight * U`` with ``U = uniformity(cat([a, b]), t)`` (``joint=True``) or
    ``(uniformity(a, t) + uniformity(b, t)) / 2``.

    Why it shrinks the modality gap (the distance between the modality centroids, which contrastive training with
    separately initialised towers tends to leave large; Liang et al. 2022): the alignment term pulls each pair
    together, and so the two centroids; the joint uniformity term spreads the *union* of both modalities over the
    sphere, which penalises two separate clusters and pushes the modalities to intermix. Add it to a contrastive
    loss with a small weight.
    """
    if a.shape != b.shape:
        raise ValueError(f"paired features must have the same shape, got {tuple(a.shape)} and {tuple(b.shape)}")
    u = uniformity(torch.cat([a, b], dim=0), t) if joint else (uniformity(a, t) + uniformity(b, t)) / 2
    return alignment(a, b, alpha) + uniformity_weight * u


class PairwiseLoss(Objective):
    """Mean of one pair loss module (shared parameters) over all modality pairs: ``PairwiseLoss(ClipLoss())``."""

    takes_pair = False  # {modality: features} of every modality; each pair on the rows where both are present
    handles_missing = True

    def __init__(self, pair: nn.Module) -> None:
        super().__init__()
        self.pair = pair

    def forward(self, feats: Mapping[str, Tensor], present: Mapping[str, Tensor] | None = None) -> Tensor:
        return pairwise_loss(feats, self.pair, present=present)


class AnchorLoss(Objective):
    """ImageBind-style binding of every modality to ``anchor`` (default: the first modality of each call)."""

    takes_pair = False  # {modality: features} of every modality; each pair on the rows where both are present
    handles_missing = True

    def __init__(self, pair: nn.Module, anchor: str | None = None) -> None:
        super().__init__()
        self.pair = pair
        self.anchor = anchor

    def forward(self, feats: Mapping[str, Tensor], present: Mapping[str, Tensor] | None = None) -> Tensor:
        anchor = self.anchor if self.anchor is not None else next(iter(feats))
        return anchor_loss(feats, anchor, self.pair, present=present)


@OBJECTIVES.register("uniformity_alignment")
class UniformityAlignment(Objective):
    """Wang & Isola alignment + uniformity regulariser (shrinks the modality gap); no parameters.

    Called with ``(a, b)`` or a dict of exactly two modalities; see ``uniformity_alignment``.
    """

    def __init__(
        self,
        t: float = 2.0,
        alpha: float = 2.0,
        uniformity_weight: float = 1.0,
        joint: bool = True,
        normalize: bool = True,
    ) -> None:
        super().__init__()
        self.t, self.alpha, self.uniformity_weight, self.joint = t, alpha, uniformity_weight, joint
        self.normalize = normalize

    def forward(self, *feats) -> Tensor:
        a, b = pair_from(feats)
        if self.normalize:
            a, b = F.normalize(a, dim=-1), F.normalize(b, dim=-1)
        return uniformity_alignment(
            a, b, self.t, alpha=self.alpha, uniformity_weight=self.uniformity_weight, joint=self.joint
        )

@OBJECTIVES.register("pairwise")
def _pairwise(pair: str | nn.Module = "clip", **pair_options) -> PairwiseLoss:
    """A pair loss (default CLIP) averaged over all modality pairs, one shared temperature."""
    return PairwiseLoss(OBJECTIVES.build(pair, **pair_options) if isinstance(pair, str) else pair)


@OBJECTIVES.register("anchor")
def _anchor(anchor: str | None = None, pair: str | nn.Module = "clip", **pair_options) -> AnchorLoss:
    """ImageBind: every modality aligned to one anchor modality (default: the first) with a pair loss."""
    return AnchorLoss(OBJECTIVES.build(pair, **pair_options) if isinstance(pair, str) else pair, anchor)
