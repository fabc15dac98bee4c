"""``PretrainNet``: masked any-to-any modelling (MultiMAE / 4M) on the same encoders and fusion as ``fit``'s net.

    targets per modality (``targets.py``) -> visible tokens drawn per row (``masking.py``)
    -> each encoder on its input with the hidden tokens blanked -> Tokens with only ``mask`` / ``present`` changed
    -> the fusion (any fusion that returns its tokens: ``transformer``) -> one decoder per modality
    -> a loss per modality on its hidden tokens

Parameter names match ``MultimodalNet``'s (``encoders.<modality>.*``, ``fusion.*``), so ``fit(init=run)`` loads
them by name and shape. A row's modality with no visible token is absent (``present=False``): its whole content is
predicted from the other modalities, which is how ``generate`` predicts a missing modality.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from polymodal import encoders as _encoders  # noqa: F401  (registers the built-in encoders)
from polymodal import fusion as _fusion  # noqa: F401  (registers the built-in fusions)
from polymodal.config.model import ConfigError, ModelConfig
from polymodal.data.schema import Schema
from polymodal.fusion.base import FUSIONS
from polymodal.nets.build import build_encoders, encoder_components
from polymodal.pretrain.decoder import ModalityDecoder
from polymodal.pretrain.masking import sample_visible
from polymodal.pretrain.targets import TARGETS
from polymodal.types import Batch, Tokens

MASKINGS = ("crossmodal", "permodal")


@dataclass
class PretrainSpec:
    """The pre-training options and what was learned from the training rows (stored as ``pretrain`` in
    ``config.json``)."""

    mask_ratio: float = 0.75
    """Fraction of each row's maskable tokens hidden (the targets); the rest is the visible budget."""
    alpha: float = 1.0
    """Dirichlet concentration splitting a row's visible budget over its present modalities (MultiMAE: 1)."""
    hide_modality: float = 0.0
    """Probability that a row hides one of its present modalities whole, to be predicted from the others alone
    (``masking.py``; crossmodal masking only)."""
    budget: dict[str, int] = field(default_factory=dict)
    """At most this many visible tokens per modality and row (``--budget image=64,audio=32``)."""
    masking: str = "crossmodal"
    """``crossmodal`` (MultiMAE: every decoder reads every modality's visible tokens) | ``permodal`` (each
    modality masked, encoded and decoded on its own: no cross-modal targets)."""
    decoder_layers: int = 1
    tokens: dict[str, int] = field(default_factory=dict)  # decoder queries per modality (learned from the data)
    stats: dict[str, dict[str, Any]] = field(default_factory=dict)  # target normalisation per modality

    def __post_init__(self) -> None:
        if not 0.0 < float(self.mask_ratio) < 1.0:
            raise ConfigError(f"mask_ratio must lie strictly between 0 and 1, got {self.mask_ratio}; 0.75 is usual")
        if float(self.alpha) <= 0:
            raise ConfigError(f"alpha (the Dirichlet concentration) must be > 0, got {self.alpha}; 1.0 is MultiMAE's")
        if not 0.0 <= float(self.hide_modality) < 1.0:
            raise ConfigError(f"hide_modality is a probability in [0, 1), got {self.hide_modality}")
        if self.masking not in MASKINGS:
            raise ConfigError(f"masking must be one of {', '.join(MASKINGS)}, got {self.masking!r}")
        bad = {m: v for m, v in self.budget.items() if not isinstance(v, int) or v < 1}
        if bad:
            raise ConfigError(f"budget values are visible-token counts (integers >= 1), got {bad}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "PretrainSpec":
        known = set(cls.__dataclass_fields__)
        extra = set(d) - known
        if extra:
            raise ConfigError(f"unknown pre-training option(s) {sorted(extra)}; valid: {sorted(known)}")
        return cls(**d)


@dataclass
class PretrainOutput:
    losses: dict[str, Tensor]  # modality -> mean loss over its hidden tokens (only modalities with some)
    preds: dict[str, Tensor]  # modality -> [B, N, out_dim]
    targets: dict[str, Tensor]
    hidden: dict[str, Tensor]  # modality -> [B, N] bool: the tokens that were targets


class PretrainNet(nn.Module):
    has_task = False

    def __init__(self, schema: Schema, cfg: ModelConfig, spec: PretrainSpec, sample: Batch | None = None) -> None:
        super().__init__()
        cfg.validate()
        if cfg.fusion is None:
            raise ConfigError("pre-training needs a fusion whose tokens the decoders read: fusion='transformer'")
        self.schema, self.cfg, self.spec = schema, cfg, spec
        self.names = schema.names
        unknown = set(spec.budget) - set(self.names)
        if unknown:
            raise ConfigError(f"budget names unknown modalities {sorted(unknown)}; the table gives {self.names}")
        comps = encoder_components(schema, cfg)
        for m, c in comps.items():
            if c.name not in TARGETS:
                raise ConfigError(f"pre-training has no target for encoder {c.name!r} of modality {m!r}; it "
                                  f"pre-trains {', '.join(TARGETS.names())} (set encoders={{{m!r}: ...}})")
        self.encoders = build_encoders(schema, cfg)
        self.fusion = FUSIONS.build(cfg.fusion.name, self.names, cfg.dim, **cfg.fusion.options)
        self.targets = {m: TARGETS.get(comps[m].name)(self.encoders[m], spec.stats.get(m)) for m in self.names}
        for m in self.names:  # what the data teaches: target statistics and each modality's token count
            if m not in spec.stats and sample is not None:
                spec.stats[m] = self.targets[m].fit_stats(sample.inputs[m], sample.present[m])
                self.targets[m].stats = spec.stats[m]
            if m not in spec.tokens:
                if sample is None:
                    raise ConfigError(f"the pre-training spec has no token count for modality {m!r}")
                with torch.no_grad():
                    spec.tokens[m] = int(self.targets[m].make(sample.inputs[m])[1].shape[1])
        heads = 4 if cfg.dim % 4 == 0 else 1
        self.decoders = nn.ModuleDict({m: ModalityDecoder(cfg.dim, spec.tokens[m], self.targets[m].out_dim,
                                                          heads=heads, layers=spec.decoder_layers)
                                       for m in self.names})

    def maskable(self, batch: Batch) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        """(targets, maskable tokens of present samples) per modality."""
        tg, mk = {}, {}
        for m in self.names:
            tg[m], k = self.targets[m].make(batch.inputs[m])
            mk[m] = k & batch.present[m][:, None]
        return tg, mk

    def forward(self, batch: Batch, visible: dict[str, Tensor] | None = None, *,
                rng: np.random.Generator | None = None, decode: list[str] | None = None) -> PretrainOutput:
        """``visible``: the tokens each encoder may see (default: drawn by ``masking.sample_visible``);
        ``decode``: modalities to predict even without hidden tokens (``generate``)."""
        tg, maskable = self.maskable(batch)
        s = self.spec
        if visible is None:
            visible = sample_visible(maskable, s.mask_ratio, s.alpha, s.budget, rng, s.masking == "crossmodal",
                                     s.hide_modality)
        hidden = {m: maskable[m] & ~visible[m] for m in self.names}
        tokens = {m: self._encode(batch, m, hidden[m], visible[m], maskable[m]) for m in self.names}
        wanted = [m for m in self.names if bool(hidden[m].any()) or m in (decode or ())]
        preds = {}
        if s.masking == "crossmodal":
            ctx = self._context(tokens)
            preds = {m: self.decoders[m](ctx.x, ctx.valid, hidden[m].shape[1]) for m in wanted}
        else:
            for m in wanted:  # each modality alone: the others are absent for the fusion
                alone = {k: t if k == m else t.with_present(torch.zeros_like(t.present)) for k, t in tokens.items()}
                ctx = self._context(alone)
                preds[m] = self.decoders[m](ctx.x, ctx.valid, hidden[m].shape[1])
        losses = {m: self._loss(m, preds[m], tg[m], hidden[m]) for m in wanted if bool(hidden[m].any())}
        return PretrainOutput(losses, preds, tg, hidden)

    def _encode(self, batch: Batch, m: str, hidden: Tensor, visible: Tensor, maskable: Tensor) -> Tokens:
        inputs = self.targets[m].hide(batch.inputs[m], hidden)
        t = self.encoders[m](inputs, batch.present[m])
        if t.x.shape[1] != hidden.shape[1]:
            raise ConfigError(f"encoder of modality {m!r} gave {t.x.shape[1]} tokens but its targets have "
                              f"{hidden.shape[1]}; pre-train without a token budget (tokens=1.0)")
        # a row whose maskable tokens are all hidden has the modality absent: it is predicted from the others
        present = batch.present[m] & (visible.any(1) | ~maskable.any(1))
        return Tokens(t.x, t.mask & ~hidden, present)

    def _context(self, tokens: dict[str, Tokens]) -> Tokens:
        fused = self.fusion(tokens)
        if fused.tokens is None:
            raise ConfigError(f"fusion {self.cfg.fusion.name!r} returns no tokens for the decoders to read; "
                              "pre-train with fusion='transformer'")
        return fused.tokens

    def _loss(self, m: str, pred: Tensor, target: Tensor, hidden: Tensor) -> Tensor:
        if self.targets[m].loss == "ce":
            return F.cross_entropy(pred[hidden], target[hidden])
        return (pred[hidden] - target[hidden]).square().mean()

    def all_visible(self, batch: Batch, target: str) -> dict[str, Tensor]:
        """Every maskable token visible except all of ``target``'s (cross-modal prediction of ``target``)."""
        _, mk = self.maskable(batch)
        return {m: torch.zeros_like(k) if m == target else k for m, k in mk.items()}
