"""``MultimodalNet``: the one net every recipe builds from a ``Schema`` and a ``ModelConfig``.

    encoders (one per modality) -> token budget -> fusion -> task head + one auxiliary head per modality
                                \\-> projection head into a shared space (``ModelConfig.align``)

A supervised run (``fit``) has a fusion and a task head, and optionally the projection head beside them; an
alignment run (``align``, ``ModelConfig.fusion=None``) has encoders and the projection head only.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from polymodal import encoders as _encoders  # noqa: F401  (registers the built-in encoders)
from polymodal import fusion as _fusion  # noqa: F401  (registers the built-in fusions)
from polymodal.config.model import ModelConfig
from polymodal.data.schema import Schema
from polymodal.fusion.base import FUSIONS
from polymodal.heads.projection import AlignHead
from polymodal.heads.task import HEADS
from polymodal.nets.build import build_encoders, resolve_lock
from polymodal.tokens.budget import begin_step, install_token_budget, reduce_at_boundary
from polymodal.types import Batch, FusionOutput, Tokens


@dataclass
class NetOutput:
    logits: Tensor | None  # [B, n_out]; None for an alignment net
    aux_logits: dict[str, Tensor]  # modality -> [B, n_out], from that modality's own vector
    fusion: FusionOutput | None
    present: dict[str, Tensor]  # the presence the fusion saw (after modality dropout)
    align_loss: Tensor | None = None  # weighted alignment objective (nets with a projection head, when asked)
    step_logits: Tensor | None = None  # [B, S, n_out]: the task head after every step (fusions with per_step_outputs)
    step_mask: Tensor | None = None  # [B, S]: True where the step ran for that sample


def output_size(schema: Schema) -> int:
    if schema.task == "regress":
        return 1
    if not schema.classes:
        raise ValueError("a classification schema needs its label vocabulary (schema.classes) before building a net")
    return len(schema.classes)


class MultimodalNet(nn.Module):
    # set by tokens/budget.py: install_token_budget (the budget state and each modality's route)
    token_state = None
    token_route: dict[str, str] = {}

    def __init__(self, schema: Schema, cfg: ModelConfig) -> None:
        super().__init__()
        cfg.validate()
        self.schema, self.cfg = schema, cfg
        self.names = schema.names
        if cfg.is_alignment and len(self.names) < 2:
            raise ValueError(
                f"alignment needs at least 2 modalities, the table gives {self.names}; "
                "pass a table with two or more input columns (or use=[a, b])"
            )
        self.encoders = build_encoders(schema, cfg)
        self.fusion = self.head = self.aux_heads = None
        if not cfg.is_alignment:
            self.fusion = FUSIONS.build(cfg.fusion.name, self.names, cfg.dim, **cfg.fusion.options)
            n_out = output_size(schema)
            head = cfg.head.name if cfg.head is not None else schema.task
            self.head = HEADS.build(head, cfg.dim, n_out, **(cfg.head.options if cfg.head is not None else {}))
            self.aux_heads = nn.ModuleDict({m: nn.Linear(cfg.dim, n_out) for m in self.names})
        self.align_head = None
        if cfg.align is not None:  # shared embedding space on each modality's own tokens
            a = cfg.align
            lock = resolve_lock(a, self.encoders, cfg.is_alignment)
            if lock is not None:  # frozen towers feed their own features to the head (AlignSpec.lock)
                for m in self.names:
                    if self.encoders[m].frozen_features:
                        self.encoders[m].use_raw_features()
            center = [m for m in self.names
                      if a.center == "all" or (a.center == "frozen" and self.encoders[m].frozen_features)]
            projection = a.projection or ("linear" if lock is not None else "mlp")
            self.align_head = AlignHead(self.names, cfg.dim, a.embed_dim or 64, a.objective.name, a.objective.options,
                                        projection, weight=a.weight, uniformity_weight=a.uniformity_weight,
                                        center=center, widths={m: self.encoders[m].dim for m in self.names},
                                        lock=lock)
        install_token_budget(self, cfg.tokens)  # token budget (tokens/budget.py); 1.0: no-op

    @property
    def has_task(self) -> bool:
        return self.head is not None

    def encode(self, batch: Batch, names: list[str] | None = None) -> dict[str, Tokens]:
        return {m: self.encoders[m](batch.inputs[m], batch.present[m]) for m in (names or self.names)}

    def forward(self, batch: Batch, modality_dropout: float = 0.0, align_loss: bool | None = None) -> NetOutput:
        """``align_loss``: compute the alignment objective (default: in training only)."""
        begin_step(self)  # samples this step's token budget when training with random budgets
        tokens = reduce_at_boundary(self, self.encode(batch))
        present = {m: t.present for m, t in tokens.items()}
        loss = None
        if self.align_head is not None and (self.training if align_loss is None else align_loss):
            loss = self.align_head.loss(self.align_head(tokens), present)  # true presence, before dropout
        if self.fusion is None:
            return NetOutput(logits=None, aux_logits={}, fusion=None, present=present, align_loss=loss)
        if modality_dropout > 0:
            present = drop_modalities(present, modality_dropout)
            tokens = {m: t.with_present(present[m]) for m, t in tokens.items()}
        fused = self.fusion(tokens)
        logits = self.head(fused.pooled)
        aux = {m: self.aux_heads[m](v) for m, v in fused.per_modality.items()}
        out = NetOutput(logits=logits, aux_logits=aux, fusion=fused, present=present, align_loss=loss)
        if self.fusion.per_step_outputs and fused.tokens is not None:
            # MultiModN: the same head decodes the state after every step, and every step is supervised
            out.step_logits, out.step_mask = self.head(fused.tokens.x), fused.tokens.mask
        return out


def drop_modalities(present: dict[str, Tensor], p: float, generator: torch.Generator | None = None) -> dict[str, Tensor]:
    """Hide each present modality of each sample with probability ``p``; a sample never loses all of them."""
    names = list(present)
    stacked = torch.stack([present[m] for m in names], 1)  # [B, M]
    keep = torch.rand(stacked.shape, generator=generator, device=stacked.device) >= p
    dropped = stacked & keep
    emptied = ~dropped.any(1) & stacked.any(1)
    dropped = torch.where(emptied[:, None], stacked, dropped)
    return {m: dropped[:, i] for i, m in enumerate(names)}
