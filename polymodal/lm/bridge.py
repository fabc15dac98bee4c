"""``MultimodalLM``: frozen encoders -> (token budget) -> one connector per modality -> a frozen causal LM.

The trainable part is the ``Bridge`` (connectors + one learned start marker per modality). The encoders are the
encoders of a fitted polymodal net (``MultimodalNet.encode``, any built-in or pretrained encoder); the LM comes
from ``source.py``. ``tokens`` are encoder outputs (``dict[str, Tokens]``), so precomputed features can be fed
directly (``fit_lm`` encodes each training row once).
"""

from __future__ import annotations

import inspect
from functools import cache

import torch
from torch import Tensor, nn

from polymodal.lm.budget import LMBudget, reduce_tokens
from polymodal.lm.connectors import CONNECTORS
from polymodal.lm.sequence import IGNORE, ChatLayout, Packed, pack, shift_loss
from polymodal.lm.source import LoadedLM
from polymodal.nets.multimodal import MultimodalNet
from polymodal.registry import Component
from polymodal.tokens.budget import reduce_at_boundary
from polymodal.types import Batch, Tokens


@cache
def _keeps_logits(cls: type) -> bool:
    """Whether the LM's forward takes ``logits_to_keep`` (transformers' Llama, GPT-2 and most causal LMs do)."""
    return "logits_to_keep" in inspect.signature(cls.forward).parameters


class Bridge(nn.Module):
    """One connector per modality (from the encoder width to the LM width) and a learned start marker each."""

    def __init__(self, names: list[str], in_dim: int, lm_dim: int, connector: Component, marker_std: float) -> None:
        super().__init__()
        self.names = list(names)
        self.connectors = nn.ModuleDict(
            {m: CONNECTORS.build(connector.name, in_dim, lm_dim, **connector.options) for m in self.names})
        self.markers = nn.ParameterDict({m: nn.Parameter(torch.randn(lm_dim) * marker_std) for m in self.names})


class Trainable(nn.Module):
    """What stage 1 (+ 2) trains: the bridge, and the LoRA layers when there are any."""

    def __init__(self, bridge: Bridge, lora: nn.Module | None = None) -> None:
        super().__init__()
        self.bridge = bridge
        if lora is not None:
            self.lora = lora


class Saved(nn.Module):
    """What a run folder's weights hold: the encoder net (frozen towers left out by their own hooks), the bridge
    and the LoRA layers if any (never the LM's own weights)."""

    def __init__(self, encoder: MultimodalNet, bridge: Bridge, lora: nn.Module | None = None) -> None:
        super().__init__()
        self.encoder, self.bridge = encoder, bridge
        if lora is not None:
            self.lora = lora


class MultimodalLM(nn.Module):
    """Frozen encoders + trainable bridge + frozen LM; ``loss`` for training, ``packed`` for generation."""

    def __init__(self, encoder: MultimodalNet, lm: LoadedLM, bridge: Bridge, layout: ChatLayout,
                 budget: LMBudget | None = None) -> None:
        super().__init__()
        self.encoder, self.bridge = encoder, bridge
        self._lm = [lm]  # kept out of the module tree: never saved, never handed to an optimiser
        self.layout, self.budget = layout, budget
        for p in self.encoder.parameters():
            p.requires_grad_(False)
        self.encoder.eval()

    @property
    def lm(self) -> LoadedLM:
        return self._lm[0]

    def train(self, mode: bool = True) -> "MultimodalLM":
        super().train(mode)
        self.encoder.eval()  # frozen: no dropout, no batch-norm statistics
        return self

    @torch.no_grad()
    def encode(self, batch: Batch, names: list[str] | None = None) -> dict[str, Tokens]:
        """The frozen encoders' tokens of the modalities the batch holds."""
        names = [m for m in (names or self.bridge.names) if m in batch.inputs]
        return reduce_at_boundary(self.encoder, self.encoder.encode(batch, names))

    def connect(self, tokens: dict[str, Tokens]) -> dict[str, Tokens]:
        """Budget (if any), then each modality's connector: tokens in the LM width, masks kept."""
        if self.budget is not None:
            tokens = reduce_tokens(tokens, self.budget)
        return {m: self.bridge.connectors[m](t) for m, t in tokens.items() if m in self.bridge.connectors}

    def modal_parts(self, tokens: dict[str, Tokens]) -> list[list[tuple[Tensor, Tensor]]]:
        """Per row, ``(marker, real tokens)`` of each present modality in the bridge's order; absent: nothing."""
        out = self.connect(tokens)
        if not out:
            return []
        bsz = next(iter(out.values())).x.shape[0]
        rows: list[list[tuple[Tensor, Tensor]]] = [[] for _ in range(bsz)]
        for m in self.bridge.names:
            if m not in out:
                continue
            t = out[m]
            for b in range(bsz):
                if bool(t.present[b]) and bool(t.mask[b].any()):
                    rows[b].append((self.bridge.markers[m], t.x[b][t.mask[b]]))
        return rows

    def packed(self, tokens: dict[str, Tokens], prompts: list[list[int]],
               answers: list[list[int]] | None = None) -> Packed:
        parts = self.modal_parts(tokens) or [[] for _ in prompts]
        return pack(self.lm.model.get_input_embeddings(), self.layout, prompts, parts, answers)

    def loss(self, tokens: dict[str, Tokens], prompts: list[list[int]], answers: list[list[int]]) -> Tensor:
        """Next-token cross-entropy on the answer tokens only (teacher forcing)."""
        p = self.packed(tokens, prompts, answers)
        model = self.lm.model
        # rows are left-padded, so every row's answer lies in the last ``keep`` positions: the LM head (49k x 576
        # for SmolLM2) runs there only; a training step of 16 rows took 1.65 s instead of 2.7 s (2 cores)
        keep = int((p.labels != IGNORE).sum(1).max()) + 1
        extra = {"logits_to_keep": keep} if _keeps_logits(type(model)) else {}
        out = model(inputs_embeds=p.embeds, attention_mask=p.attention, position_ids=p.positions, use_cache=False,
                    **extra)
        return shift_loss(out.logits, p.labels[:, p.labels.shape[1] - out.logits.shape[1]:])


__all__ = ["Bridge", "MultimodalLM", "Saved", "Trainable"]
