"""``AlignNet``: one encoder per modality plus an ``AlignHead`` (no fusion, no task head)."""

from __future__ import annotations

from torch import Tensor, nn

from polymodal import encoders as _encoders  # noqa: F401  (registers the built-in encoders)
from polymodal.data.schema import Schema
from polymodal.encoders.base import DEFAULT_ENCODER, ENCODERS
from polymodal.types import Batch, Tokens
from polymodal.config.align import AlignConfig
from polymodal.heads.projection import AlignHead


def build_encoders(schema: Schema, dim: int, names: dict[str, str], options: dict[str, dict]) -> nn.ModuleDict:
    unknown = (set(names) | set(options)) - set(schema.names)
    if unknown:
        raise ValueError(f"encoders given for unknown modalities {sorted(unknown)}; modalities: {schema.names}")
    return nn.ModuleDict(
        {s.name: ENCODERS.build(names.get(s.name, DEFAULT_ENCODER[s.kind]), s, dim, **options.get(s.name, {})) for s in schema}
    )


class AlignNet(nn.Module):
    def __init__(self, schema: Schema, cfg: AlignConfig) -> None:
        super().__init__()
        cfg.validate()
        self.schema, self.cfg = schema, cfg
        self.names = schema.names
        if len(self.names) < 2:
            raise ValueError(
                f"alignment needs at least 2 modalities, the table gives {self.names}; "
                "pass a table with two or more input columns (or --modalities a,b)"
            )
        self.encoders = build_encoders(schema, cfg.dim, cfg.encoders, cfg.encoder_options)
        self.align_head = AlignHead(
            self.names, cfg.dim, cfg.embed_dim, cfg.objective, cfg.objective_options, cfg.projection,
            uniformity_weight=cfg.uniformity_weight,
        )

    def encode(self, batch: Batch, names: list[str] | None = None) -> dict[str, Tokens]:
        return {m: self.encoders[m](batch.inputs[m], batch.present[m]) for m in (names or self.names)}

    def forward(self, batch: Batch) -> dict[str, Tensor]:
        return self.align_head(self.encode(batch))
