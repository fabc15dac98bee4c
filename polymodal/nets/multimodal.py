"""``MultimodalNet``: encoders -> fusion -> head, assembled from a ``Schema`` and a ``ModelConfig``."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from polymodal import encoders as _encoders  # noqa: F401  (registers the built-in encoders)
from polymodal import fusion as _fusion  # noqa: F401  (registers the built-in fusions)
from polymodal.config.model import ModelConfig
from polymodal.data.schema import Schema
from polymodal.encoders.base import DEFAULT_ENCODER, ENCODERS
from polymodal.fusion.base import FUSIONS
from polymodal.heads.task import HEADS
from polymodal.tokens.budget import begin_step, install_token_budget, reduce_at_boundary
from polymodal.tokens.spec import TokenBudget
from polymodal.types import Batch, FusionOutput, Tokens


@dataclass
class NetOutput:
    logits: Tensor  # [B, n_out]
    aux_logits: dict[str, Tensor]  # modality -> [B, n_out], from that modality's own vector
    fusion: FusionOutput
    present: dict[str, Tensor]  # the presence the fusion saw (after modality dropout)
    align_loss: Tensor | None = None  # weighted alignment objective (training with ModelConfig.align only)
    step_logits: Tensor | None = None  # [B, S, n_out]: the task head after every step (fusions with per_step_outputs)
    step_mask: Tensor | None = None  # [B, S]: True where the step ran for that sample


def output_size(schema: Schema) -> int:
    if schema.task == "regress":
        return 1
    if not schema.classes:
        raise ValueError("a classification schema needs its label vocabulary (schema.classes) before building a net")
    return len(schema.classes)


class MultimodalNet(nn.Module):
    def __init__(self, schema: Schema, cfg: ModelConfig) -> None:
        super().__init__()
        cfg.validate()
        self.schema, self.cfg = schema, cfg
        self.names = schema.names
        unknown = set(cfg.encoders) - set(self.names)
        if unknown:
            raise ValueError(f"encoders given for unknown modalities {sorted(unknown)}; modalities: {self.names}")
        self.encoders = nn.ModuleDict(
            {
                s.name: ENCODERS.build(
                    cfg.encoders.get(s.name, DEFAULT_ENCODER[s.kind]), s, cfg.dim, **cfg.encoder_options.get(s.name, {})
                )
                for s in schema
            }
        )
        self.fusion = FUSIONS.build(cfg.fusion, self.names, cfg.dim, **cfg.fusion_options)
        n_out = output_size(schema)
        self.head = HEADS.build(schema.task, cfg.dim, n_out, dropout=cfg.head_dropout)
        self.aux_heads = nn.ModuleDict({m: nn.Linear(cfg.dim, n_out) for m in self.names})
        self.align_head = _align_head(self.names, cfg)  # shared embedding space (ModelConfig.align), or None
        install_token_budget(self, TokenBudget.from_config(cfg))  # token budget (tokens/budget.py); 1.0: no-op

    def encode(self, batch: Batch) -> dict[str, Tokens]:
        return {m: self.encoders[m](batch.inputs[m], batch.present[m]) for m in self.names}

    def forward(self, batch: Batch, modality_dropout: float = 0.0) -> NetOutput:
        begin_step(self)  # samples this step's token budget when training with random budgets
        tokens = reduce_at_boundary(self, self.encode(batch))
        present = {m: t.present for m, t in tokens.items()}
        align_loss = None
        if self.align_head is not None and self.training:  # on each modality's own tokens, true presence
            align_loss = self.align_head.loss(self.align_head(tokens), present)
        if modality_dropout > 0:
            present = drop_modalities(present, modality_dropout)
            tokens = {m: t.with_present(present[m]) for m, t in tokens.items()}
        fused = self.fusion(tokens)
        logits = self.head(fused.pooled)
        aux = {m: self.aux_heads[m](v) for m, v in fused.per_modality.items()}
        out = NetOutput(logits=logits, aux_logits=aux, fusion=fused, present=present, align_loss=align_loss)
        if getattr(self.fusion, "per_step_outputs", False) and fused.tokens is not None:
            # MultiModN: the same head decodes the state after every step, and every step is supervised
            out.step_logits, out.step_mask = self.head(fused.tokens.x), fused.tokens.mask
        return out


def _align_head(names: list[str], cfg: ModelConfig) -> nn.Module | None:
    if not cfg.align:
        return None
    from polymodal.heads.projection import AlignHead

    return AlignHead(names, cfg.dim, cfg.embed_dim, cfg.align, cfg.align_options, weight=cfg.align_weight)


def drop_modalities(present: dict[str, Tensor], p: float, generator: torch.Generator | None = None) -> dict[str, Tensor]:
    """Hide each present modality of each sample with probability ``p``; a sample never loses all of them."""
    names = list(present)
    stacked = torch.stack([present[m] for m in names], 1)  # [B, M]
    keep = torch.rand(stacked.shape, generator=generator, device=stacked.device) >= p
    dropped = stacked & keep
    emptied = ~dropped.any(1) & stacked.any(1)
    dropped = torch.where(emptied[:, None], stacked, dropped)
    return {m: dropped[:, i] for i, m in enumerate(names)}
