"""SigLIP pairwise sigmoid loss (Zhai et al. 2023): a pure function plus a module with learnable scale and bias.

Every (a_i, b_j) pair is an independent binary classification: positive on the diagonal, negative elsewhere.
``siglip_loss = -sum(logsigmoid(labels * (scale * a @ b.T + bias))) / B``, the same as open_clip's ``SigLipLoss``
(single process); ``logit_scale`` is the already-exponentiated multiplier.

The bias starts at the prior log-odds of a positive pair, ``-log(B - 1)`` for the first batch the loss sees (the
paper's rule: "start close to the prior"; its fixed ``-10`` is that value for its ~22k-32k batches). A fixed bias
far from the prior is absorbed by the embeddings instead of the bias: they settle within a few steps on a common
pairwise cosine ``c* = (-log(B - 1) - b) / t`` (0.52 for the paper's ``b = -10, t = 10`` at a batch of 128), the loss
sits at the trivial ``log B + 1`` (5.8 at 128), the bias's gradient vanishes and it never moves. Runs with few
steps (a few hundred pairs) then stop early at chance level.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from polymodal.objectives.base import OBJECTIVES, Objective
from polymodal.objectives.clip import check_pair, clamped_scale, log_or_none, make_logit_scale, pair_from
from polymodal.objectives.distributed import gather_features, local_offset, rank_and_world


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


PRIOR = "prior"


def prior_logit_bias(n_candidates: int) -> float:
    """The log-odds of a positive pair when each row has one positive among ``n_candidates`` columns."""
    return -math.log(max(int(n_candidates) - 1, 1))


@OBJECTIVES.register("siglip")
class SigLipLoss(Objective):
    """SigLIP loss with a learnable log-scale (init ``log 10``, as in the paper) and bias (init: the prior log-odds).

    ``init_logit_bias="prior"`` (default) sets the bias to ``-log(B - 1)`` (``B``: the columns of the first batch's
    logits, all processes' rows with ``gather=True``) at the first call, unless a state dict has been loaded into
    the module; a number fixes it (``-10.0``: the paper's value for its ~32k batches). ``logit_scale`` stores the
    log of the multiplier and is clamped in place to ``[0, log 100]`` before use (open_clip clamps every model's
    scale there during training); inputs are L2-normalised unless ``normalize=False``.
    """

    def __init__(
        self,
        init_logit_scale: float = math.log(10.0),
        init_logit_bias: float | str = PRIOR,
        *,
        learnable: bool = True,
        min_scale: float | None = 1.0,
        max_scale: float | None = 100.0,
        normalize: bool = True,
        gather: bool = False,
    ) -> None:
        super().__init__()
        make_logit_scale(self, init_logit_scale, learnable=learnable)
        if isinstance(init_logit_bias, str) and init_logit_bias != PRIOR:
            raise ValueError(f"siglip init_logit_bias must be a number or {PRIOR!r}, got {init_logit_bias!r}")
        self.bias_pending = init_logit_bias == PRIOR  # set from the first batch (see the class docstring)
        bias = torch.tensor(prior_logit_bias(128) if self.bias_pending else float(init_logit_bias))
        if learnable:
            self.logit_bias = nn.Parameter(bias)
        else:
            self.register_buffer("logit_bias", bias)
        self.log_min, self.log_max = log_or_none(min_scale), log_or_none(max_scale)
        self.normalize = normalize
        self.gather = gather
        self.register_load_state_dict_pre_hook(_loaded_bias)

    def scale(self) -> Tensor:
        return clamped_scale(self.logit_scale, self.log_min, self.log_max)

    def forward(self, *feats) -> Tensor:
        a, b = pair_from(feats)
        if self.normalize:
            a, b = F.normalize(a, dim=-1), F.normalize(b, dim=-1)
        if self.bias_pending:
            columns = a.shape[0] * (rank_and_world()[1] if self.gather else 1)
            with torch.no_grad():
                self.logit_bias.fill_(prior_logit_bias(columns))
            self.bias_pending = False
        return siglip_loss(a, b, self.scale(), self.logit_bias, gather=self.gather)


def _loaded_bias(module: SigLipLoss, state_dict: dict, prefix: str, *args) -> None:
    """A trained (or saved) bias that is loaded is kept: the first call no longer sets it from the batch."""
    if prefix + "logit_bias" in state_dict:
        module.bias_pending = False
