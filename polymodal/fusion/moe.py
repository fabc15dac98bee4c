"""Modality-aware mixture of experts (MoMa, Lin et al. 2024; Uni-MoE, Li et al. 2024): experts grouped by modality.

Each modality ``m`` has its own group of ``experts`` feed-forward experts and its own router. Every real token of
a present sample is sent to its top-``k`` experts of its modality's group (token-choice routing, so a sample's
output never depends on the rest of the batch): ``x <- x + sum_{e in topk} g_e * FFN_e(LN(x))`` with ``g`` the
router probabilities (renormalised over the chosen ``k`` when ``k > 1``; the raw top-1 probability otherwise, as in
Switch, so the router gets a gradient). Only routed tokens are computed.

Load balancing (Switch Transformer): per modality ``E * sum_e f_e * P_e`` over real tokens, ``f_e`` the fraction of
assignments to expert ``e`` and ``P_e`` its mean router probability; it is 1 for uniform routing and ``E`` when
one expert takes everything (it can dip slightly below 1 when ``f`` and ``P`` disagree; ``>= 1/E`` always).
``aux_loss`` = ``aux_weight`` (default 0.01) times its mean over modalities with tokens.
``last_utilisation[m]`` holds the last forward's ``f`` (sums to 1 where the modality had tokens); ``utilisation()``
(the ``Fusion`` hook) returns it.

Fusion step: ``per_modality[m]`` = LayerNorm(masked mean of m's expert outputs); ``pooled`` = their mean over the
modalities the sample has (a learned vector when it has none).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from polymodal.types import FusionOutput, Tokens
from polymodal.fusion.base import FUSIONS, Fusion


def switch_balance_loss(probs: Tensor, chosen: Tensor, valid: Tensor) -> tuple[Tensor, Tensor]:
    """Switch load-balancing loss over real tokens: ``probs[B, N, E]``, ``chosen[B, N, k]`` expert indices,
    ``valid[B, N]``. Returns ``(E * sum_e f_e P_e, f)``; ``f`` sums to 1 (zeros when no token is real)."""
    e = probs.shape[-1]
    assign = torch.zeros_like(probs).scatter_(-1, chosen, 1.0)[valid]  # [T, E]
    f = assign.sum(0) / assign.sum().clamp_min(1.0)
    p = probs[valid].mean(0) if assign.shape[0] else torch.zeros_like(f)
    return e * (f * p).sum(), f


@FUSIONS.register("moe")
class MoEFusion(Fusion):
    """Modality-aware mixture of experts: per-modality expert groups (default 2 each) with a learned top-k router
    (default top-1), Switch load-balancing aux loss, expert utilisation in ``last_utilisation``; pooled = mean of
    present modalities' pooled expert outputs."""

    def __init__(
        self,
        names: list[str],
        dim: int,
        *,
        experts: int = 2,
        top_k: int = 1,
        hidden: int | None = None,
        dropout: float = 0.1,
        aux_weight: float = 0.01,
    ) -> None:
        super().__init__(names, dim)
        if not 1 <= top_k <= experts:
            raise ValueError(f"moe needs 1 <= top_k <= experts, got top_k={top_k}, experts={experts}")
        hidden = hidden or 2 * dim
        self.top_k, self.aux_weight = top_k, aux_weight
        self.norms = nn.ModuleDict({m: nn.LayerNorm(dim) for m in self.names})
        self.routers = nn.ModuleDict({m: nn.Linear(dim, experts) for m in self.names})
        self.experts = nn.ModuleDict(
            {
                m: nn.ModuleList(
                    nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, dim))
                    for _ in range(experts)
                )
                for m in self.names
            }
        )
        self.norm = nn.LayerNorm(dim)
        self.nothing = nn.Parameter(torch.zeros(dim))
        self.last_utilisation: dict[str, Tensor] = {}

    def utilisation(self) -> dict[str, Tensor]:
        """modality -> the last forward's fraction of tokens routed to each expert (``last_utilisation``)."""
        return self.last_utilisation

    def route(self, m: str, x: Tensor, valid: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """One modality's tokens through its expert group: ``(x + mixture, balance loss, utilisation)``."""
        h = self.norms[m](x)
        probs = torch.softmax(self.routers[m](h), dim=-1)  # [B, N, E]
        gates, chosen = probs.topk(self.top_k, dim=-1)  # [B, N, k]
        if self.top_k > 1:
            gates = gates / gates.sum(-1, keepdim=True)
        out = torch.zeros_like(x)
        for e, expert in enumerate(self.experts[m]):
            hit = (chosen == e) & valid[..., None]  # [B, N, k]
            idx = hit.any(-1).nonzero(as_tuple=True)
            if idx[0].numel():
                g = (gates * hit).sum(-1)[idx][:, None]
                out = out.index_put(idx, g * expert(h[idx]), accumulate=True)
        balance, util = switch_balance_loss(probs, chosen, valid)
        return x + out, balance, util

    def forward(self, tokens: dict[str, Tokens]) -> FusionOutput:
        per_modality, losses = {}, []
        for m in self.names:
            t = tokens[m]
            valid = t.valid
            x = torch.where(valid[..., None], t.x, torch.zeros_like(t.x))  # placeholders never enter the arithmetic
            y, balance, util = self.route(m, x, valid)
            self.last_utilisation[m] = util.detach()
            if valid.any():
                losses.append(balance)
            per_modality[m] = self.norm(Tokens(y, valid, t.present).pooled())
        present = torch.stack([tokens[m].present for m in self.names], dim=1)  # [B, M]
        v = torch.stack([per_modality[m] for m in self.names], dim=1)
        count = present.sum(1, keepdim=True)
        mean = torch.where(present[..., None], v, torch.zeros_like(v)).sum(1) / count.clamp_min(1)
        pooled = torch.where(count > 0, mean, self.nothing.expand_as(mean))
        aux = torch.stack(losses).mean() if losses else pooled.new_zeros(())
        return FusionOutput(pooled=pooled, per_modality=per_modality, aux_loss=self.aux_weight * aux)
