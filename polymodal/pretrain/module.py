"""The Lightning module of pre-training: the sum of the per-modality reconstruction losses, each logged on its own.

It is ``train/module.py``'s ``LitMultimodal`` (optimiser, schedule, checkpoint and resume hooks) with its own
steps. Training draws fresh masks every step from a NumPy generator seeded by ``seed``; validation draws the
same masks every epoch (seeded by the batch index), so its loss compares across epochs.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from polymodal.config.model import ModelConfig, TrainConfig
from polymodal.pretrain.net import PretrainNet
from polymodal.train.module import LitMultimodal
from polymodal.types import Batch


class LitPretrain(LitMultimodal):
    def __init__(self, net: PretrainNet, model_cfg: ModelConfig, train_cfg: TrainConfig) -> None:
        super().__init__(net, model_cfg, train_cfg)
        self.rng = np.random.default_rng(train_cfg.seed)

    def _step(self, batch: Batch, rng: np.random.Generator, stage: str) -> Tensor:
        out = self.net(batch, rng=rng)
        if not out.losses:  # no row of the batch has a maskable token
            return torch.zeros((), requires_grad=stage == "train")
        loss = torch.stack(list(out.losses.values())).sum()
        n = len(batch)
        self.log(f"{stage}_loss", loss.detach(), on_step=False, on_epoch=True, batch_size=n, sync_dist=True)
        for m, v in out.losses.items():
            self.log(f"{stage}_loss_{m}", v.detach(), on_step=False, on_epoch=True, batch_size=n, sync_dist=True)
        return loss

    def training_step(self, batch: Batch, batch_idx: int) -> Tensor:
        return self._step(batch, self.rng, "train")

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        self._step(batch, np.random.default_rng([self.train_cfg.seed, batch_idx]), "val")
