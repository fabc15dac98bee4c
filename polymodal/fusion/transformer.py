"""Early token fusion: every modality's tokens in one sequence, read out through a learned fusion token."""

from __future__ import annotations

import torch
from torch import nn

from polymodal.blocks import TransformerBlock, check_heads
from polymodal.tokens.budget import module_budget
from polymodal.tokens.spec import SizedTokens, schedule_counts
from polymodal.tokens.stack import Segment, run_stack
from polymodal.types import FusionOutput, Tokens
from polymodal.fusion.base import FUSIONS, Fusion


@FUSIONS.register("transformer")
class TransformerFusion(Fusion):
    """[fusion token, one "missing" token per modality, all modalities' tokens + modality-type embeddings] ->
    transformer blocks -> LayerNorm(fusion token). Absent modalities' tokens are masked out and their "missing"
    token is real instead, so the model knows what is absent without seeing placeholder values.

    Token budgets (``tokens/budget.py``, ``tokens/stack.py``): the streams routed to the fusion
    (``token_modalities``, given with the state by ``set_token_budget``) are reduced in its blocks, each modality
    on its own schedule; the fusion token and the missing tokens are protected, and pruning follows the fusion
    token's attention. Tokens that arrive with ``size`` (merged or pooled in an encoder) get proportional attention
    when the budget asks for it.
    """

    supports_token_budget = True

    def __init__(
        self,
        names: list[str],
        dim: int,
        *,
        layers: int = 1,
        heads: int = 4,
        dropout: float = 0.1,
        mlp_ratio: float = 2.0,
    ) -> None:
        super().__init__(names, dim)
        check_heads(dim, heads)
        m = len(self.names)
        self.fusion_token = nn.Parameter(torch.randn(1, 1, dim) * 0.02)
        self.missing_tokens = nn.Parameter(torch.randn(1, m, dim) * 0.02)
        self.type_embed = nn.Parameter(torch.randn(m, dim) * 0.02)
        self.blocks = nn.ModuleList(TransformerBlock(dim, heads, mlp_ratio, dropout) for _ in range(layers))
        self.norm = nn.LayerNorm(dim)
        self.unimodal = nn.ModuleDict({name: nn.Linear(dim, dim) for name in self.names})

    def forward(self, tokens: dict[str, Tokens]) -> FusionOutput:
        ts = [tokens[m] for m in self.names]
        b = ts[0].x.shape[0]
        device = ts[0].x.device
        present = torch.stack([t.present for t in ts], dim=1)  # [B, M]
        seq = [self.fusion_token.expand(b, -1, -1), self.missing_tokens.expand(b, -1, -1)]
        mask = [torch.ones(b, 1, dtype=torch.bool, device=device), ~present]
        for i, t in enumerate(ts):
            valid = t.valid  # real tokens of present samples only
            # Zero what is masked so no placeholder value (even a non-finite one) enters the arithmetic.
            seq.append(torch.where(valid[..., None], t.x, torch.zeros_like(t.x)) + self.type_embed[i])
            mask.append(valid)
        x = torch.cat(seq, dim=1)
        mask = torch.cat(mask, dim=1)
        x, mask = self._blocks(x, mask, ts, 1 + len(ts))
        pooled = self.norm(x[:, 0])
        per_modality = {m: self.unimodal[m](t.pooled()) for m, t in zip(self.names, ts)}
        fused = Tokens(x, mask, torch.ones(b, dtype=torch.bool, device=device))
        return FusionOutput(pooled=pooled, per_modality=per_modality, tokens=fused)

    def _blocks(self, x, mask, ts: list[Tokens], protected: int):
        state = self.token_state
        sizes = [t.size if isinstance(t, SizedTokens) else None for t in ts]
        prop = state is not None and state.spec.use_prop_attn and any(s is not None for s in sizes)
        budgets = {m: module_budget(self, m) for m in self.names if m in self.token_modalities}
        if not prop and all(v is None for v in budgets.values()):
            self.token_trace = [(x.shape[1], x.shape[1])] * len(self.blocks)  # for FLOPs accounting
            for block in self.blocks:
                x = block(x, mask)
            return x, mask
        spec = state.spec
        size = None
        if prop:
            ones = x.new_ones(x.shape[0], protected)
            size = torch.cat([ones] + [x.new_ones(t.x.shape[:2]) if s is None else s.to(x.dtype) for t, s in zip(ts, sizes)], 1)
        L = len(self.blocks)
        segs = []
        for m, t in zip(self.names, ts):
            n = t.x.shape[1]
            got = budgets.get(m)
            counts = [n] * (L + 1) if got is None else schedule_counts(n, got[1], L, spec.schedule, spec.token_reducer)
            segs.append(Segment(n, counts, None, m))
        res = run_stack(self.blocks, x, mask, spec, segs, protected=protected, size=size, cls=True)
        self.token_trace = res.trace
        return res.x, res.mask
