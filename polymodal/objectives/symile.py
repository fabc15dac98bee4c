"""Symile (Saporta et al., NeurIPS 2024): contrastive learning for any number of modalities with the
multilinear inner product, reproducing PyPI ``symile==0.1.0`` exactly.

``MIP(x, y, z, ...) = sum_d x_d * y_d * z_d * ...``. Each modality in turn is the anchor; its logits score each
anchor row against candidate tuples of the other modalities (non-anchors, in their original order) and the loss is
the mean over anchors of ``cross_entropy(logit_scale * logits, arange(B))``. ``logit_scale`` is the
already-exponentiated multiplier. Two ways to build the negatives:

``"n_squared"`` (deterministic, ``B ** (M - 1)`` columns): blocks of ``B`` columns, one per shift tuple. With
non-anchors ``o_1 .. o_K`` (``K = M - 1``) the second-to-last ``o_{K-1}`` is never shifted and every other ``o_j``
is rolled by its own shift ``s_j`` (``roll(r, s)[k] = r[(k - s) mod B]``); column ``k`` of a block is
``MIP(anchor, roll(o_1, s_1)[k], ..., o_{K-1}[k], roll(o_K, s_K)[k])`` and blocks are ordered lexicographically over
``(s_1, ..., s_{K-2}, s_K)``, ``s_1`` outermost. For ``M = 3`` column ``s * B + k`` is ``MIP(anchor, y[k], z[k - s])``.
The all-zero block comes first, so the positives sit on the diagonal of the first ``B`` columns.

``"n"`` (``B`` columns): for every (anchor, non-anchor) pair one permutation of the rows (drawn with
``torch.randperm(B)`` in the order anchors ``0..M-1``, non-anchors by increasing index, ``M * (M - 1)`` draws);
``logits = anchor @ prod_j(o_j[perm_j]).T`` with the diagonal overwritten by the positive MIPs. Pass ``perms`` to
make it deterministic (e.g. to reproduce a recorded run); without it the draws use torch's global generator, so
``torch.manual_seed(s)`` right before the call gives the reference package's draws for the same seed.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from polymodal.objectives.base import OBJECTIVES, Objective
from polymodal.objectives.clip import clamped_scale, log_or_none, make_logit_scale
from polymodal.objectives.distributed import gather_features, local_offset

MODES = ("n", "n_squared")


def mip(*reps: Tensor) -> Tensor:
    """Row-wise multilinear inner product of equally shaped ``[B, D]`` tensors -> ``[B]``."""
    out = reps[0]
    for r in reps[1:]:
        out = out * r
    return out.sum(dim=-1)


def mip_similarity(anchor: Tensor, others: Sequence[Tensor]) -> Tensor:
    """Scores of every anchor row (candidate) against every query tuple: ``[Q, C]`` with
    ``scores[q, c] = MIP(anchor[c], others[0][q], others[1][q], ...)`` (symile's ``MIPSimilarity(candidates=anchor,
    query_reps=others)``, unscaled). Use it to retrieve the missing modality given the others (zero-shot)."""
    if not others:
        raise ValueError("mip_similarity needs at least one query modality")
    query = others[0]
    for r in others[1:]:
        query = query * r
    return query @ anchor.T


def _n_squared_products(others: Sequence[Tensor]) -> Tensor:
    """The ``[B ** K, D]`` element-wise products of non-anchor rows in symile 0.1.0's column order."""
    if len(others) == 1:
        return others[0]
    if len(others) == 2:
        y, z = others
        return torch.cat([y * torch.roll(z, s, dims=0) for s in range(y.shape[0])], dim=0)
    x = others[0]
    partial = _n_squared_products(others[1:])  # [B ** (K - 1), D], rows (block, k)
    reps = partial.shape[0] // x.shape[0]
    return torch.cat([partial * torch.roll(x, s, dims=0).repeat(reps, 1) for s in range(x.shape[0])], dim=0)


def _as_list(feats) -> list[Tensor]:
    feats = list(feats.values()) if isinstance(feats, Mapping) else list(feats)
    if len(feats) < 2:
        raise ValueError(f"symile needs at least 2 modalities, got {len(feats)}")
    shape = feats[0].shape
    if feats[0].dim() != 2 or any(f.shape != shape for f in feats):
        raise ValueError(f"symile features must all be [B, D] of one shape, got {[tuple(f.shape) for f in feats]}")
    return feats


def draw_perms(
    num_modalities: int, batch: int, *, generator: torch.Generator | None = None, device=None
) -> list[Tensor]:
    """``M * (M - 1)`` row permutations in symile's call order (anchor-major, non-anchors increasing)."""
    return [
        torch.randperm(batch, generator=generator, device=device)
        for _ in range(num_modalities * (num_modalities - 1))
    ]


def symile_loss(
    feats: Sequence[Tensor] | Mapping[str, Tensor],
    logit_scale: Tensor | float,
    negative_sampling: str = "n",
    perms: Sequence[Tensor | Sequence[int]] | None = None,
    *,
    generator: torch.Generator | None = None,
    gather: bool = False,
) -> Tensor:
    """Symile loss over ``M >= 2`` modalities (for ``M = 2`` it is CLIP's loss with MIP = dot product).

    Args:
        feats: ``M`` L2-normalised ``[B, D]`` feature matrices (a list, or a dict in its order).
        logit_scale: the already-exponentiated multiplier.
        negative_sampling: ``"n"`` (``B - 1`` negatives per row, random) or ``"n_squared"`` (``B ** (M - 1) - 1``,
            deterministic).
        perms: for ``"n"``: the ``M * (M - 1)`` row permutations, in call order (anchor ``0..M-1``, non-anchors by
            increasing index); drawn with ``torch.randperm`` (``generator`` if given) when ``None``.
        gather: score this process's anchor rows against negatives built from every process's features (``perms``
            then index the gathered batch; give the same perms on every process for an exact global loss).
    """
    if negative_sampling not in MODES:
        raise ValueError(f"negative_sampling must be one of {MODES}, got {negative_sampling!r}")
    local = _as_list(feats)
    n_local = local[0].shape[0]
    full = [gather_features(f) for f in local] if gather else local
    offset = local_offset(n_local) if gather else 0
    n, m = full[0].shape[0], len(full)
    device = local[0].device
    if negative_sampling == "n":
        if perms is None:
            perms = draw_perms(m, n, generator=generator, device=device)
        perms = [torch.as_tensor(p, dtype=torch.long, device=device) for p in perms]
        if len(perms) != m * (m - 1) or any(p.shape != (n,) for p in perms):
            raise ValueError(
                f"perms must hold {m * (m - 1)} permutations of length {n} (one per anchor/non-anchor pair)"
            )
    rows = torch.arange(n_local, device=device)
    labels = rows + offset
    losses = []
    for i, anchor in enumerate(local):
        others = [r for j, r in enumerate(full) if j != i]
        if negative_sampling == "n_squared":
            logits = anchor @ _n_squared_products(others).T
        else:
            shuffled = torch.ones_like(full[0])
            for k, r in enumerate(others):
                shuffled = shuffled * r[perms[i * (m - 1) + k]]
            logits = anchor @ shuffled.T  # [B_local, B]
            positive = mip(anchor, *[r[offset : offset + n_local] for r in others])
            is_pos = torch.zeros_like(logits, dtype=torch.bool)
            is_pos[rows, labels] = True
            logits = torch.where(is_pos, positive[:, None], logits)
        losses.append(F.cross_entropy(logit_scale * logits, labels))
    return sum(losses) / len(losses)


@OBJECTIVES.register("symile")
class SymileLoss(Objective):
    """Symile over M >= 2 modalities (multilinear inner product) with a learnable temperature.

    ``logit_scale`` stores the log of the multiplier, clamped in place to ``[0, log max_scale]`` before use.
    ``SymileLoss()([a, b, c])`` or ``SymileLoss()({"x": a, ...})``; inputs are
    L2-normalised unless ``normalize=False``. ``perms`` / ``generator`` are passed through for the ``"n"`` mode."""

    takes_pair = False  # one term over every modality at once, called with {modality: features}

    def __init__(
        self,
        negative_sampling: str = "n",
        init_logit_scale: float = math.log(1 / 0.07),
        *,
        learnable: bool = True,
        min_scale: float | None = 1.0,
        max_scale: float | None = 100.0,
        normalize: bool = True,
        gather: bool = False,
    ) -> None:
        super().__init__()
        if negative_sampling not in MODES:
            raise ValueError(f"negative_sampling must be one of {MODES}, got {negative_sampling!r}")
        self.negative_sampling = negative_sampling
        make_logit_scale(self, init_logit_scale, learnable=learnable)
        self.log_min, self.log_max = log_or_none(min_scale), log_or_none(max_scale)
        self.normalize = normalize
        self.gather = gather

    def scale(self) -> Tensor:
        return clamped_scale(self.logit_scale, self.log_min, self.log_max)

    def forward(self, feats, perms=None, generator: torch.Generator | None = None) -> Tensor:
        feats = _as_list(feats)
        if self.normalize:
            feats = [F.normalize(f, dim=-1) for f in feats]
        return symile_loss(
            feats, self.scale(), self.negative_sampling, perms, generator=generator, gather=self.gather
        )
