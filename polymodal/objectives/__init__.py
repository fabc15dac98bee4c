"""Contrastive alignment objectives: each a pure function plus a thin ``nn.Module`` holding its parameters.

Chosen by name from ``OBJECTIVES`` (``OBJECTIVES.build("siglip")``); every module returns a scalar loss:

=========================  ============================================================================
``clip``                   ``ClipLoss()(a, b)``: symmetric InfoNCE, learnable temperature
``siglip``                 ``SigLipLoss()(a, b)``: pairwise sigmoid loss, learnable scale and bias
``symile``                 ``SymileLoss()(feats)``: multilinear inner product over M >= 2 modalities
``pairwise``               ``PairwiseLoss(pair)(feats)``: a pair loss averaged over all modality pairs
``anchor``                 ``AnchorLoss(pair, anchor)(feats)``: ImageBind binding to one anchor modality
``uniformity_alignment``   ``UniformityAlignment()(a, b)``: Wang & Isola regulariser (shrinks the modality gap)
=========================  ============================================================================

Pair losses accept ``(a, b)`` or a dict of exactly two modalities; the multi-modality ones a dict (or list). Every
objective subclasses ``Objective`` (``base.py``), which declares how it is called (``takes_pair``,
``handles_missing``).
``gather=True`` makes a loss use the features of every process (``distributed.gather_features``).
"""

from __future__ import annotations

from polymodal.objectives.base import OBJECTIVES, Objective
from polymodal.registry import import_submodules
from polymodal.objectives.clip import ClipLoss, ContrastiveOutput, clip_loss, clip_output, contrastive_loss_with_temperature
from polymodal.objectives.distributed import gather_features
from polymodal.objectives.multi import (
    AnchorLoss,
    PairwiseLoss,
    UniformityAlignment,
    alignment,
    anchor_loss,
    pairwise_loss,
    uniformity,
    uniformity_alignment,
)
from polymodal.objectives.siglip import SigLipLoss, siglip_loss
from polymodal.objectives.symile import SymileLoss, mip_similarity, symile_loss

import_submodules(__name__, __path__)  # an objective registers itself by being in this folder

__all__ = [
    "OBJECTIVES",
    "AnchorLoss",
    "ClipLoss",
    "ContrastiveOutput",
    "Objective",
    "PairwiseLoss",
    "SigLipLoss",
    "SymileLoss",
    "UniformityAlignment",
    "alignment",
    "anchor_loss",
    "clip_loss",
    "clip_output",
    "contrastive_loss_with_temperature",
    "gather_features",
    "mip_similarity",
    "pairwise_loss",
    "siglip_loss",
    "symile_loss",
    "uniformity",
    "uniformity_alignment",
]
