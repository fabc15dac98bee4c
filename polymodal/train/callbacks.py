"""Keep the best weights seen on validation (in memory, and as a safetensors checkpoint when a folder is given).

Epochs are numbered from 1 everywhere a person reads them: ``history[i]["epoch"]`` and ``best_epoch`` (the first
epoch is ``1``), the progress lines, the CLI summary.
"""

from __future__ import annotations

import time
from pathlib import Path

import lightning as L
import torch
from safetensors.torch import save_file


class BestWeights(L.Callback):
    def __init__(self, monitor: str, mode: str, ckpt_dir: Path | None = None) -> None:
        self.monitor, self.mode, self.ckpt_dir = monitor, mode, ckpt_dir
        self.best: float | None = None
        self.best_epoch: int | None = None  # 1-based
        self.state: dict[str, torch.Tensor] | None = None
        self.history: list[dict[str, float]] = []
        self._t0 = time.perf_counter()

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        epoch = trainer.current_epoch + 1  # Lightning counts from 0
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
        metrics["epoch"] = epoch
        metrics["elapsed_s"] = round(time.perf_counter() - self._t0, 3)
        self.history.append(metrics)
        value = metrics.get(self.monitor)
        if value is None:
            return
        better = self.best is None or (value > self.best if self.mode == "max" else value < self.best)
        if better:
            self.best, self.best_epoch = value, epoch
            self.state = {k: v.detach().clone() for k, v in pl_module.net.state_dict().items()}
            if self.ckpt_dir is not None and trainer.is_global_zero:  # the ranks hold the same weights
                self.ckpt_dir.mkdir(parents=True, exist_ok=True)
                save_file({k: v.contiguous() for k, v in self.state.items()}, str(self.ckpt_dir / "best.safetensors"))

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # Lightning reduces the epoch's training metrics after validation ran inside the epoch: the entry written
        # in on_validation_epoch_end still holds the previous epoch's train_loss, so put this epoch's in.
        if self.history and self.history[-1].get("epoch") == trainer.current_epoch + 1:
            for k, v in trainer.callback_metrics.items():
                if k.startswith("train_"):
                    self.history[-1][k] = float(v)

    def state_dict(self) -> dict:
        """Saved in crash checkpoints (``train/checkpoint.py``): the best so far and the history."""
        return {"best": self.best, "best_epoch": self.best_epoch, "state": self.state, "history": self.history}

    def load_state_dict(self, state: dict) -> None:
        self.best, self.best_epoch = state["best"], state["best_epoch"]
        self.state, self.history = state["state"], list(state["history"])

    def restore(self, net: torch.nn.Module) -> None:
        if self.state is not None:
            net.load_state_dict(self.state)
