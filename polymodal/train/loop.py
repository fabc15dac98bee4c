"""Run training: Lightning Trainer on CPU (or whatever accelerator Lightning finds), early stopping, best weights."""

from __future__ import annotations

import logging
import warnings
from datetime import timedelta
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import EarlyStopping

from polymodal.config.model import ModelConfig, TrainConfig
from polymodal.data.dataset import DecodedDataset, make_loader
from polymodal.nets.multimodal import MultimodalNet
from polymodal.train.callbacks import BestWeights
from polymodal.train.module import LitMultimodal
from polymodal.train.progress import EpochProgress


def train_net(
    net: MultimodalNet,
    train_ds: DecodedDataset,
    val_ds: DecodedDataset | None,
    model_cfg: ModelConfig,
    train_cfg: TrainConfig,
    ckpt_dir: Path | None = None,
    callbacks: list[L.Callback] | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Train ``net`` in place; returns the history and the best validation score.

    Early stopping on validation accuracy (classification), the task's validation loss (regression) or the
    alignment objective (alignment nets). Without a validation set, trains for ``epochs`` and keeps the last
    weights.
    """
    L.seed_everything(train_cfg.seed, workers=True, verbose=False)
    lit = LitMultimodal(net, model_cfg, train_cfg)
    monitor, mode = ("val_acc", "max") if net.has_task and net.schema.task == "classify" else ("val_loss", "min")
    # a final batch with fewer than 2 complete rows contributes a zero alignment loss (no negatives to contrast)
    train_loader = make_loader(train_ds, train_cfg.batch_size, shuffle=True, seed=train_cfg.seed)
    if net.has_task:
        val_loader = make_loader(val_ds, 256, shuffle=False) if val_ds is not None and len(val_ds) else None
    else:  # contrastive validation in batches as large as training ones: the loss compares across epochs and runs
        has_val = val_ds is not None and len(val_ds) >= 2
        val_loader = make_loader(val_ds, train_cfg.batch_size, shuffle=False) if has_val else None
    return run_trainer(lit, net, train_loader, val_loader, train_cfg, monitor, mode, ckpt_dir, callbacks, progress)


def run_trainer(
    lit: L.LightningModule,
    net,
    train_loader,
    val_loader,
    train_cfg: TrainConfig,
    monitor: str,
    mode: str,
    ckpt_dir: Path | None = None,
    callbacks: list[L.Callback] | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """The one Lightning run behind ``fit`` and ``align``: early stopping on ``monitor`` and the best weights
    restored into ``net`` when there is a validation loader (else ``epochs`` epochs and the last weights), our
    epoch progress bar, Lightning's own output silenced. Returns the training history."""
    best = BestWeights(monitor, mode, ckpt_dir)
    callbacks = list(callbacks or [])
    if val_loader is not None:
        callbacks += [best, EarlyStopping(monitor=monitor, mode=mode, patience=train_cfg.patience)]
    if progress:
        callbacks.append(EpochProgress())
    with _quiet_lightning():
        trainer = L.Trainer(
            max_epochs=train_cfg.epochs,
            max_time=timedelta(minutes=train_cfg.max_minutes) if train_cfg.max_minutes else None,
            accelerator="auto",
            devices=1,
            logger=False,
            enable_checkpointing=False,
            enable_model_summary=False,
            enable_progress_bar=False,  # our EpochProgress instead: no timer thread, no per-step formatting
            num_sanity_val_steps=0,
            deterministic=True,
            callbacks=callbacks,
        )
        trainer.fit(lit, train_loader, val_loader)
    best.restore(net)
    net.eval()
    return {
        "epochs_run": trainer.current_epoch,
        "best_epoch": best.best_epoch,
        f"best_{monitor}": best.best,
        "history": best.history,
    }


class _quiet_lightning:
    """Silence Lightning's banner lines and its advice that does not apply here (DataLoader workers: data is already
    in memory; no validation loader: training without a validation split is allowed)."""

    def __enter__(self):
        self._loggers = [logging.getLogger(n) for n in ("lightning.pytorch", "lightning.fabric", "lightning")]
        self._levels = [lg.level for lg in self._loggers]
        for lg in self._loggers:
            lg.setLevel(logging.WARNING)
        self._warn = warnings.catch_warnings()
        self._warn.__enter__()
        warnings.filterwarnings("ignore", message=".*does not have many workers.*")
        warnings.filterwarnings("ignore", message=".*has `shuffle=True`.*")
        warnings.filterwarnings("ignore", message=".*LeafSpec.*")
        # training without a validation split (val_fraction=0) is a choice, not a mistake
        warnings.filterwarnings("ignore", message=".*no `val_dataloader`.*")
        warnings.filterwarnings("ignore", message=".*module\\(s\\) in eval mode.*")  # frozen pretrained backbones
        return self

    def __exit__(self, *exc):
        for lg, lvl in zip(self._loggers, self._levels):
            lg.setLevel(lvl)
        self._warn.__exit__(*exc)
        return False
