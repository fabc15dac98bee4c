"""A cheap Rich progress bar for training: redrawn by hand a few times per epoch, never from a refresh thread.

Lightning's own bars redraw on a timer thread and format metrics every step; on a 2-core CPU that cost ~12 % of
step throughput (benchmarks/overhead.py). This one advances a counter per step and redraws every
``redraw_every`` steps and at each epoch end, showing the epoch, the step and the last validation metrics.
"""

from __future__ import annotations

import lightning as L
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn


class EpochProgress(L.Callback):
    def __init__(self, redraw_every: int = 20, console: Console | None = None) -> None:
        self.redraw_every = redraw_every
        self.console = console or Console(stderr=True)
        self.progress: Progress | None = None
        self.task = None

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.progress = Progress(
            TextColumn("[bold]training[/] {task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.fields[metrics]}"),
            console=self.console,
            auto_refresh=False,
            transient=False,
        )
        self.progress.start()
        total = trainer.estimated_stepping_batches
        self.task = self.progress.add_task("epoch 1", total=total if total != float("inf") else None, metrics="")

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.progress.advance(self.task)
        if trainer.global_step % self.redraw_every == 0:
            self.progress.refresh()

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        shown = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith(("val_", "train_loss"))}
        metrics = "  ".join(f"{k}={v:.4f}" for k, v in sorted(shown.items()))
        self.progress.update(self.task, description=f"epoch {trainer.current_epoch + 1}/{trainer.max_epochs}", metrics=metrics)
        self.progress.refresh()

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.progress is not None:
            self.progress.refresh()
            self.progress.stop()
            self.progress = None

    def on_exception(self, trainer, pl_module, exception) -> None:
        self.on_train_end(trainer, pl_module)
