"""Run training: Lightning Trainer on CPU (or whatever accelerator Lightning finds), early stopping, best weights.

Ctrl-C during training is not the end of the program: Lightning 2.x answers a ``KeyboardInterrupt`` in
``Trainer.fit`` by calling the ``on_exception`` hooks, ignoring SIGINT from then on and ``sys.exit(1)``
(``lightning/pytorch/trainer/call.py: _call_and_handle_interrupt``). ``run_trainer`` catches that exit (and a
``KeyboardInterrupt`` Lightning did not see), restores the SIGINT handler, puts the best weights seen so far
back, warns (``TrainingInterrupted``, naming how many epochs ran) and returns the history with
``"interrupted": True``. Any other ``SystemExit`` propagates.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import warnings
from datetime import timedelta
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import EarlyStopping

from polymodal.config.model import ModelConfig, TrainConfig
from polymodal.data.dataset import DecodedDataset
from polymodal.data.stream import make_loader  # in memory or streamed, by the dataset's type
from polymodal.nets.multimodal import MultimodalNet
from polymodal.train.callbacks import BestWeights
from polymodal.train.checkpoint import LAST, AtomicCheckpointIO, CrashCheckpoint, ResumeError, check_resume, fingerprint
from polymodal.train.distributed import trainer_args
from polymodal.train.module import LitMultimodal
from polymodal.train.progress import EpochProgress

_PACKAGE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # the polymodal package folder


class TrainingInterrupted(UserWarning):
    """Training was interrupted (Ctrl-C): the net holds the best weights seen so far."""


def train_net(
    net: MultimodalNet,
    train_ds: DecodedDataset,
    val_ds: DecodedDataset | None,
    model_cfg: ModelConfig,
    train_cfg: TrainConfig,
    ckpt_dir: Path | None = None,
    callbacks: list[L.Callback] | None = None,
    progress: bool = True,
    resume: bool = False,
    launch: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Train ``net`` in place; returns the history and the best validation score.

    Early stopping on validation accuracy (classification), the task's validation loss (regression) or the
    alignment objective (alignment nets). Without a validation set, trains for ``epochs`` and keeps the last
    weights. With ``ckpt_dir``, crash-safe checkpoints go to ``ckpt_dir/last.ckpt`` (``train/checkpoint.py``) and
    ``resume`` continues from there. ``launch`` overrides the Trainer's process arguments (Ray Train:
    ``recipes/ray_train.py``).
    """
    L.seed_everything(train_cfg.seed, workers=True, verbose=False)
    lit = LitMultimodal(net, model_cfg, train_cfg)
    # the contrastive gather needs the same number of rows on every rank: only when no row misses a modality
    lit.gather_ok = all(bool(p[train_ds.rows].all()) for p in train_ds.present.values()) \
        if isinstance(train_ds, DecodedDataset) else False
    if ckpt_dir is not None:
        lit.fingerprint = fingerprint(model_cfg, train_cfg, train_ds, val_ds)
    monitor, mode = ("val_acc", "max") if net.has_task and net.schema.task == "classify" else ("val_loss", "min")
    # a final batch with fewer than 2 complete rows contributes a zero alignment loss (no negatives to contrast)
    train_loader = make_loader(train_ds, train_cfg.batch_size, shuffle=True, seed=train_cfg.seed, shard=True)
    lit.train_loader = train_loader
    if net.has_task:
        has_val = val_ds is not None and len(val_ds)
        val_loader = make_loader(val_ds, 256, shuffle=False, shard=True) if has_val else None
    else:  # contrastive validation in batches as large as training ones: the loss compares across epochs and runs
        has_val = val_ds is not None and len(val_ds) >= 2
        val_loader = make_loader(val_ds, train_cfg.batch_size, shuffle=False, shard=True) if has_val else None
    if resume and ckpt_dir is None:
        raise ResumeError("resume needs the run folder the interrupted run wrote: give the same out= / --out")
    if resume:
        check_resume(Path(ckpt_dir) / LAST, lit.fingerprint)
    return run_trainer(lit, net, train_loader, val_loader, train_cfg, monitor, mode, ckpt_dir, callbacks, progress,
                       resume=resume, launch=launch)


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
    resume: bool = False,
    launch: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The one Lightning run behind ``fit`` and ``align``: early stopping on ``monitor`` and the best weights
    restored into ``net`` when there is a validation loader (else ``epochs`` epochs and the last weights), our
    epoch progress (``train/progress.py``), Lightning's own output silenced, ``max_minutes`` as a time limit.
    Returns the training history: ``epochs_run``, ``best_epoch`` (1-based), ``best_<monitor>``, ``interrupted``
    and ``history`` (one entry per validated epoch, ``"epoch"`` counted from 1). Ctrl-C: see the module doc.
    """
    best = BestWeights(monitor, mode, ckpt_dir)
    callbacks = list(callbacks or [])
    if val_loader is not None:
        callbacks += [best, EarlyStopping(monitor=monitor, mode=mode, patience=train_cfg.patience)]
    limit_s = 60.0 * train_cfg.max_minutes if train_cfg.max_minutes else None
    if progress:
        callbacks.append(EpochProgress(time_limit_s=limit_s))
    crash_safe = ckpt_dir is not None and launch is None  # Ray Train: the driver holds the run (no resume there)
    if crash_safe:
        callbacks.append(CrashCheckpoint(Path(ckpt_dir), train_cfg.checkpoint_every_n_steps))
    launch = dict(launch or trainer_args(train_cfg))
    prepare = launch.pop("prepare", None)
    if crash_safe:
        launch["plugins"] = [*launch.get("plugins", []), AtomicCheckpointIO()]
    sigint = _sigint_handler()
    interrupted = False
    with _quiet_lightning():
        trainer = L.Trainer(
            max_epochs=train_cfg.epochs,
            max_time=timedelta(seconds=limit_s) if limit_s else None,
            **launch,
            use_distributed_sampler=False,  # the loaders shard themselves (data/dataset.py: ShardedBatchSampler)
            logger=False,
            enable_checkpointing=crash_safe,  # our CrashCheckpoint, no default ModelCheckpoint
            enable_model_summary=False,
            enable_progress_bar=False,  # our EpochProgress instead: no timer thread, no per-step formatting
            num_sanity_val_steps=0,
            deterministic=True,
            callbacks=callbacks,
        )
        if prepare is not None:
            trainer = prepare(trainer)
        ckpt_path = Path(ckpt_dir) / LAST if resume else None
        try:
            trainer.fit(lit, train_loader, val_loader, ckpt_path=ckpt_path, weights_only=True)
        except KeyboardInterrupt:  # raised where Lightning does not handle it
            interrupted = True
        except SystemExit as e:  # Lightning's answer to Ctrl-C: on_exception hooks, then sys.exit(1)
            if not (trainer.interrupted and isinstance(e.__context__, KeyboardInterrupt)):
                raise
            interrupted = True
        finally:
            _restore_sigint(sigint)  # Lightning leaves SIGINT ignored after an interrupt
    best.restore(net)
    net.eval()
    epochs_run = trainer.fit_loop.epoch_progress.current.processed  # epochs whose training (+ validation) finished
    if interrupted:
        kept = (f"restored the best weights so far (epoch {best.best_epoch}, {monitor}={best.best:.4f})"
                if best.best_epoch is not None else "no validation finished: kept the last weights")
        _warn_caller(f"training interrupted after {epochs_run} of {train_cfg.epochs} epoch(s); {kept}",
                     TrainingInterrupted)
    return {
        "epochs_run": epochs_run,
        "best_epoch": best.best_epoch,
        f"best_{monitor}": best.best,
        "interrupted": interrupted,
        "world_size": trainer.world_size,
        "contrastive_gather": bool(getattr(lit, "gather", False)),  # contrastive losses saw every rank's rows
        "history": best.history,
    }


def _sigint_handler():
    """The current SIGINT handler (None off the main thread, where signals cannot be set)."""
    if threading.current_thread() is not threading.main_thread():
        return None
    return signal.getsignal(signal.SIGINT)


def _restore_sigint(handler) -> None:
    if handler is not None and threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, handler)


def _warn_caller(message: str, category: type[Warning]) -> None:
    """``warnings.warn`` with the stacklevel of the first caller outside polymodal (the user's ``fit`` call)."""
    frame, level = sys._getframe(1), 2  # level 1 is this function, 2 its caller
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(_PACKAGE + os.sep):
        frame, level = frame.f_back, level + 1
    warnings.warn(message, category, stacklevel=level)


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
