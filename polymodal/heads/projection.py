"""``AlignHead``: per-modality projections into one shared space plus the contrastive objective.

Each modality's vector comes from that modality's own encoder tokens only (masked mean, then, for the modalities
``AlignSpec.center`` names, a centring over the batch, then a projection, then L2 normalisation), never from the fused tokens, so an audio embedding
carries no information from the image it was paired with. The head is used by alignment nets
(``ModelConfig(fusion=None, align=...)``) and by supervised models trained with an alignment objective beside the
task loss (``ModelConfig.align``).

The centring (``BatchCenter``: BatchNorm's mean subtraction over the rows where the modality is present, no
scaling) keeps the batch-common part of a modality's vectors out of the projection. Frozen pretrained features are
far from centred (EfficientNet-Lite0's pooled features are all positive, norm ~17, mean pairwise cosine 0.42), so
every optimiser step on the projection in front of the head moves all of a modality's vectors together. CLIP's
row-wise softmax ignores such a common shift; SigLIP's per-pair sigmoid is exponentially sensitive to it and,
without the centring, oscillates and stalls on small data (80 emoji pairs, frozen towers, 30 full-batch epochs:
R@1 0.09-0.18 against CLIP's 0.99; with it and SigLIP's prior bias init, both 0.99;
``tests/recipes/test_alignment_quality.py``). Encoders trained from scratch shape their own outputs, and the
centring costs them: av-digits audio->image class-level R@1 0.940 without it, 0.923 with it (CLIP, built-in
towers). So the default (``center="frozen"``) centres only modalities whose encoder is a frozen pretrained tower.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from itertools import combinations
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from polymodal.objectives import OBJECTIVES, Objective, uniformity_alignment
from polymodal.types import Tokens

def build_objective(name: str, n_modalities: int, options: Mapping[str, Any] | None = None) -> nn.Module:
    """The objective module for ``n_modalities``; a pair loss (``Objective.takes_pair``) over >= 3 modalities is
    averaged over all pairs (``pairwise``)."""
    options = dict(options or {})
    if n_modalities < 2:
        raise ValueError(f"alignment needs at least 2 modalities, got {n_modalities}")
    factory = OBJECTIVES.get(name)
    takes_pair = isinstance(factory, type) and issubclass(factory, Objective) and factory.takes_pair
    if takes_pair and n_modalities > 2:
        return OBJECTIVES.build("pairwise", pair=name, **options)
    return OBJECTIVES.build(name, **options)


class BatchCenter(nn.Module):
    """Subtract each feature's mean over the batch's present rows (training) or its running estimate (evaluation,
    and training batches with fewer than 2 present rows): BatchNorm1d's centring, without its scaling or affine
    parameters, blind to absent rows. The running mean averages the first batches equally, then follows an
    exponential average with ``momentum``, so a run of a few steps evaluates with its own statistics."""

    def __init__(self, dim: int, momentum: float = 0.1) -> None:
        super().__init__()
        self.momentum = momentum
        self.register_buffer("running_mean", torch.zeros(dim))
        self.register_buffer("batches_tracked", torch.zeros((), dtype=torch.long))
        self.register_load_state_dict_pre_hook(_identity_if_missing)

    def forward(self, x: Tensor, present: Tensor) -> Tensor:
        rows = x[present]
        if self.training and rows.shape[0] >= 2:
            mean = rows.mean(0)
            with torch.no_grad():
                self.batches_tracked += 1
                self.running_mean.lerp_(mean.detach(), max(self.momentum, 1.0 / float(self.batches_tracked)))
        else:
            mean = self.running_mean
        return x - mean


def _identity_if_missing(module: BatchCenter, state_dict: dict, prefix: str, *args: Any) -> None:
    """A run saved before the head centred its inputs loads as the identity (a zero mean): its projection was
    trained on uncentred vectors, so it keeps computing exactly what it computed."""
    if prefix + "running_mean" not in state_dict:
        state_dict[prefix + "running_mean"] = torch.zeros_like(module.running_mean)
        state_dict[prefix + "batches_tracked"] = torch.zeros((), dtype=torch.long)


def make_projection(dim: int, embed_dim: int, kind: str) -> nn.Module:
    if kind == "linear":
        return nn.Linear(dim, embed_dim)
    return nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, dim), nn.GELU(), nn.Linear(dim, embed_dim))


class AlignHead(nn.Module):
    """Per-modality projections from each modality's pooled tokens (width ``widths[m]``, default ``dim``) into the
    shared space. With ``lock``, that modality's vectors are its (centred) tokens themselves and the shared space
    has their width; every other modality is projected into it."""

    def __init__(
        self,
        names: Sequence[str],
        dim: int,
        embed_dim: int,
        objective: str = "clip",
        objective_options: Mapping[str, Any] | None = None,
        projection: str = "mlp",
        weight: float = 1.0,
        uniformity_weight: float = 0.0,
        center: Sequence[str] = (),
        widths: Mapping[str, int] | None = None,
        lock: str | None = None,
    ) -> None:
        super().__init__()
        self.names = list(names)
        widths = {m: int((widths or {}).get(m, dim)) for m in self.names}
        self.lock = lock
        self.embed_dim = widths[lock] if lock is not None else embed_dim
        self.center = nn.ModuleDict({m: BatchCenter(widths[m]) for m in center})  # AlignSpec.center
        self.proj = nn.ModuleDict({
            m: nn.Identity() if m == lock else make_projection(widths[m], self.embed_dim, projection)
            for m in self.names})
        self.objective = build_objective(objective, len(self.names), objective_options)
        self.weight, self.uniformity_weight = weight, uniformity_weight

    def forward(self, tokens: Mapping[str, Tokens]) -> dict[str, Tensor]:
        """L2-normalised ``[B, embed_dim]`` vectors per modality (zeros where the modality is absent)."""
        out = {}
        for m, t in tokens.items():
            x = self.center[m](t.pooled(), t.present) if m in self.center else t.pooled()
            v = F.normalize(self.proj[m](x), dim=-1)
            out[m] = v * t.present[:, None].to(v.dtype)
        return out

    def loss(self, emb: Mapping[str, Tensor], present: Mapping[str, Tensor]) -> Tensor:
        """``weight`` x the objective over the rows where the modalities it compares are present."""
        return self.weight * alignment_loss(self.objective, emb, present, self.uniformity_weight)


def alignment_loss(
    objective: Objective, emb: Mapping[str, Tensor], present: Mapping[str, Tensor], uniformity_weight: float = 0.0
) -> Tensor:
    """The objective over ``emb``, called as its class declares (``Objective.handles_missing`` / ``takes_pair``)."""
    if not isinstance(objective, Objective):
        raise TypeError(f"an alignment objective must subclass polymodal.objectives.Objective (which declares how it "
                        f"is called), got {type(objective).__name__}")
    emb = dict(emb)
    zero = sum(e.sum() for e in emb.values()) * 0.0
    if objective.handles_missing:  # pairwise / anchor: each pair on its own rows
        loss = objective(emb, present=present)
    else:  # clip / siglip on 2 modalities, symile on all: rows where every modality is present
        rows = torch.stack([present[m] for m in emb], 0).all(0)
        if int(rows.sum()) < 2:
            loss = zero
        elif len(emb) == 2 and objective.takes_pair:
            a, b = (emb[m][rows] for m in emb)
            loss = objective(a, b)
        else:
            loss = objective({m: e[rows] for m, e in emb.items()})
    if uniformity_weight > 0:
        terms = []
        for x, y in combinations(list(emb), 2):
            both = present[x] & present[y]
            if int(both.sum()) >= 2:
                terms.append(uniformity_alignment(emb[x][both], emb[y][both]))
        if terms:
            loss = loss + uniformity_weight * torch.stack(terms).mean()
    return loss


def fuse(emb: Mapping[str, Tensor], present: Mapping[str, Tensor]) -> Tensor:
    """The fused vector: the normalised mean of the present modalities' vectors (zeros if none is present)."""
    w = torch.stack([present[m].to(next(iter(emb.values())).dtype) for m in emb], 0)  # [M, B]
    stacked = torch.stack([emb[m] for m in emb], 0)  # [M, B, E]
    mean = (stacked * w[..., None]).sum(0) / w.sum(0).clamp_min(1.0)[:, None]
    return F.normalize(mean, dim=-1)
