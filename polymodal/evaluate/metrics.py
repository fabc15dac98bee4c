"""Task metrics, computed with torchmetrics."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from torchmetrics.functional import accuracy, confusion_matrix, f1_score
from torchmetrics.functional import mean_absolute_error, mean_squared_error, r2_score


def classification_metrics(logits: Tensor, target: Tensor, n_classes: int, confusion: bool = True) -> dict[str, Any]:
    if len(target) == 0:
        return {"n": 0, "accuracy": float("nan"), "macro_f1": float("nan")}
    pred = logits.argmax(-1)
    kw = dict(task="multiclass", num_classes=n_classes)
    out: dict[str, Any] = {
        "n": int(len(target)),
        "accuracy": float(accuracy(pred, target, **kw)),
        "macro_f1": float(f1_score(pred, target, average="macro", **kw)),
    }
    if confusion:
        out["confusion_matrix"] = confusion_matrix(pred, target, **kw).tolist()
    return out


def regression_metrics(pred: Tensor, target: Tensor) -> dict[str, Any]:
    pred, target = pred.float().reshape(-1), target.float().reshape(-1)
    if len(target) == 0:
        return {"n": 0, "rmse": float("nan"), "mae": float("nan"), "r2": float("nan")}
    return {
        "n": int(len(target)),
        "rmse": float(torch.sqrt(mean_squared_error(pred, target))),
        "mae": float(mean_absolute_error(pred, target)),
        "r2": float(r2_score(pred, target)) if len(target) > 1 else float("nan"),
    }
