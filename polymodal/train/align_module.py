"""Training an ``AlignNet``: the contrastive objective on every batch, validation loss for early stopping."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
from torch import Tensor

from polymodal.config.model import TrainConfig
from polymodal.data.dataset import DecodedDataset, make_loader
from polymodal.train.loop import run_trainer
from polymodal.train.module import build_optimizer
from polymodal.types import Batch
from polymodal.nets.align import AlignNet


class LitAlign(L.LightningModule):
    def __init__(self, net: AlignNet, train_cfg: TrainConfig) -> None:
        super().__init__()
        self.net, self.train_cfg = net, train_cfg

    def _loss(self, batch: Batch) -> Tensor:
        return self.net.align_head.loss(self.net(batch), batch.present)

    def training_step(self, batch: Batch, batch_idx: int) -> Tensor:
        loss = self._loss(batch)
        self.log("train_loss", loss.detach(), on_step=False, on_epoch=True, batch_size=len(batch))
        return loss

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        self.log("val_loss", self._loss(batch), on_step=False, on_epoch=True, batch_size=len(batch))

    def configure_optimizers(self):
        opt, sched = build_optimizer(self.net, self.train_cfg, self.trainer.estimated_stepping_batches)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


def train_align(
    net: AlignNet,
    train_ds: DecodedDataset,
    val_ds: DecodedDataset | None,
    train_cfg: TrainConfig,
    ckpt_dir: Path | None = None,
    val_batch_size: int | None = None,
) -> dict[str, Any]:
    """Train ``net`` in place (best validation-loss weights kept when there is a validation set)."""
    L.seed_everything(train_cfg.seed, workers=True, verbose=False)
    lit = LitAlign(net, train_cfg)
    # a final batch with fewer than 2 complete rows contributes a zero loss (no negatives to contrast with)
    train_loader = make_loader(train_ds, train_cfg.batch_size, shuffle=True, seed=train_cfg.seed)
    # validation in batches as large as training ones, so the loss is comparable across epochs and runs
    has_val = val_ds is not None and len(val_ds) >= 2
    val_loader = make_loader(val_ds, val_batch_size or train_cfg.batch_size, shuffle=False) if has_val else None
    return run_trainer(lit, net, train_loader, val_loader, train_cfg, "val_loss", "min", ckpt_dir)
