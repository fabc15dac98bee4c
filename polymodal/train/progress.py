"""Training progress: a cheap Rich bar in a terminal, one plain line per epoch anywhere else (logs, CI, pipes).

Lightning's own bars redraw on a timer thread and format metrics every step; on a 2-core CPU that cost ~12 % of
step throughput (benchmarks/overhead.py). In a terminal this bar advances a counter per step and redraws every
``redraw_every`` steps and at each epoch end, showing the epoch, the step and the last validation metrics; when
training stops before ``max_epochs`` (early stopping, the time limit) the bar is completed at that epoch and says
so (``early stop at epoch 7``). When the stream is not a terminal, each epoch prints one flushed line instead:

    epoch 3/40  train_loss=0.6012  val_acc=0.8125  val_loss=0.5521  elapsed 4.1s  eta 50.2s

Epochs are numbered from 1, as in the run's history.
"""

from __future__ import annotations

import time

import lightning as L
from lightning.pytorch.callbacks import Timer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn


def duration(seconds: float) -> str:
    """``4.2s``, ``3m05s``, ``1h02m``."""
    s = max(0.0, float(seconds))
    if s < 60:
        return f"{s:.1f}s"
    if s < 3600:
        return f"{int(s // 60)}m{int(s % 60):02d}s"
    return f"{int(s // 3600)}h{int(s % 3600 // 60):02d}m"


def stop_reason(trainer: L.Trainer, epochs_done: int) -> str | None:
    """Why training ended before ``max_epochs`` epochs: ``early stop at epoch k`` / ``time limit reached at epoch
    k``; None when it ran them all."""
    max_epochs = trainer.max_epochs
    if max_epochs is None or max_epochs < 0 or epochs_done >= max_epochs:
        return None
    for cb in trainer.callbacks:
        left = cb.time_remaining() if isinstance(cb, Timer) else None
        if left is not None and left <= 0:
            return f"time limit reached at epoch {epochs_done}"
    return f"early stop at epoch {epochs_done}" if trainer.should_stop else f"stopped at epoch {epochs_done}"


class EpochProgress(L.Callback):
    def __init__(self, redraw_every: int = 20, console: Console | None = None, plain: bool | None = None,
                 time_limit_s: float | None = None) -> None:
        """``plain``: one line per epoch (True), the Rich bar (False), or by whether ``console`` is a terminal
        (None). ``time_limit_s`` caps the ETA (the ``max_minutes`` training option)."""
        self.redraw_every = redraw_every
        self.console = console or Console(stderr=True, highlight=False, soft_wrap=True, emoji=False)
        self.plain = plain
        self.time_limit_s = time_limit_s
        self.progress: Progress | None = None
        self.task = None
        self.epochs_done = 0
        self._plain = False
        self._silent = False  # a rank other than 0 of a distributed run
        self._t0 = time.perf_counter()

    # --------------------------------------------------------------------------------------------------- hooks
    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._t0 = time.perf_counter()
        self.epochs_done = 0
        self._plain = (not self.console.is_terminal) if self.plain is None else self.plain
        if not trainer.is_global_zero:  # one bar per run, not one per process
            self._plain, self._silent = True, True
        if self._plain:
            return
        self.progress = Progress(
            TextColumn("[bold]training[/] {task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.fields[metrics]}", markup=False),
            console=self.console,
            auto_refresh=False,
            transient=False,
        )
        self.progress.start()
        total = trainer.estimated_stepping_batches
        self.task = self.progress.add_task(f"epoch 1/{trainer.max_epochs}",
                                           total=total if total != float("inf") else None, metrics="")

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.progress is not None:  # the bar names the epoch running; the metrics stay the last epoch's
            self.progress.update(self.task, description=f"epoch {trainer.current_epoch + 1}/{trainer.max_epochs}")

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self.progress is None:
            return
        self.progress.advance(self.task)
        if trainer.global_step % self.redraw_every == 0:
            self.progress.refresh()

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.epochs_done = trainer.current_epoch + 1
        shown = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith(("val_", "train_loss"))}
        metrics = "  ".join(f"{k}={v:.4f}" for k, v in sorted(shown.items()))
        epoch = f"epoch {self.epochs_done}/{trainer.max_epochs}"
        if self._plain:
            elapsed = time.perf_counter() - self._t0
            parts = [epoch, metrics, f"elapsed {duration(elapsed)}"]
            eta = self._eta(trainer, elapsed)
            if eta is not None:
                parts.append(f"eta {duration(eta)}")
            self._line("  ".join(p for p in parts if p))
        elif self.progress is not None:
            self.progress.update(self.task, description=epoch, metrics=metrics)
            self.progress.refresh()

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        reason = stop_reason(trainer, self.epochs_done)
        if self._plain:
            if reason:
                self._line(reason)
            return
        self._finish(reason)

    def on_exception(self, trainer, pl_module, exception) -> None:
        if self._plain:  # the caller reports the interruption / error in its own words
            return
        interrupted = isinstance(exception, KeyboardInterrupt)
        self._finish(f"interrupted in epoch {self.epochs_done + 1}" if interrupted else None)

    # ------------------------------------------------------------------------------------------------- helpers
    def _eta(self, trainer: L.Trainer, elapsed: float) -> float | None:
        max_epochs = trainer.max_epochs
        if max_epochs is None or max_epochs < 0 or not self.epochs_done:
            return None
        eta = elapsed / self.epochs_done * (max_epochs - self.epochs_done)
        if self.time_limit_s is not None:
            eta = min(eta, max(0.0, self.time_limit_s - elapsed))
        return eta

    def _line(self, text: str) -> None:
        if self._silent:
            return
        self.console.print(text, markup=False, highlight=False, soft_wrap=True)
        try:
            self.console.file.flush()
        except (AttributeError, OSError, ValueError):
            pass

    def _finish(self, reason: str | None) -> None:
        """Stop the bar; when training ended early, complete it at the epoch it stopped and say why."""
        if self.progress is None:
            return
        if reason is not None and self.task is not None:
            done = self.progress.tasks[0].completed if self.progress.tasks else 0
            self.progress.update(self.task, total=done, completed=done, description=reason)
        self.progress.refresh()
        self.progress.stop()
        self.progress = None
