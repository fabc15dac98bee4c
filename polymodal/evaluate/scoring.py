"""Scoring a net on a decoded dataset: the public functions every estimator, study and benchmark calls.

``outputs`` (raw head outputs, optionally with some modalities marked missing), ``targets`` (labels in row
order), ``task_metrics`` (the task's metrics, regression targets un-standardised) and ``embeddings`` (vectors
in a shared space). They take a ``Scorable``: anything with the ``net`` and ``schema`` it was trained with.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn

from polymodal.data.dataset import DecodedDataset, make_loader
from polymodal.data.labels import unscale_target
from polymodal.data.schema import Schema
from polymodal.errors import PolymodalError
from polymodal.evaluate.metrics import classification_metrics, regression_metrics
from polymodal.heads.projection import fuse

FUSED = "fused"


class Scorable(Protocol):
    net: nn.Module
    schema: Schema


def primary_metric(model: Scorable) -> str:
    """The study metric: accuracy (classification, higher is better) or RMSE (regression, lower is better)."""
    return "accuracy" if model.schema.task == "classify" else "rmse"


@torch.inference_mode()
def outputs(model: Scorable, ds: DecodedDataset, keep: Sequence[str] | None = None, batch_size: int = 256) -> torch.Tensor:
    """Raw head outputs ``[N, n_out]`` for every row of ``ds``; with ``keep``, the other modalities are missing."""
    net = model.net
    if not getattr(net, "has_task", True):
        raise PolymodalError("this is an alignment run: it has no task head to score (use embed / evaluate)")
    net.eval()
    outs = []
    for batch in make_loader(ds, batch_size, shuffle=False):
        if keep is not None:
            batch.present = {m: p & (m in keep) for m, p in batch.present.items()}
        outs.append(net(batch).logits)
    return torch.cat(outs) if outs else torch.empty(0, 1)


def targets(ds: DecodedDataset) -> torch.Tensor:
    """The labels of ``ds``'s rows, in row order (a view's ``target`` is indexed by absolute position)."""
    if ds.target is None:
        raise PolymodalError("this needs a labelled table: the label column was not decoded")
    return ds.target[torch.as_tensor(ds.rows, dtype=torch.long)]


def task_metrics(schema: Schema, out: torch.Tensor, target: torch.Tensor, confusion: bool = True) -> dict[str, Any]:
    """Accuracy, macro-F1 (+ confusion matrix) for classification; RMSE, MAE, R² on the original scale."""
    if schema.task == "classify":
        return classification_metrics(out, target, len(schema.classes), confusion=confusion)
    return regression_metrics(unscale_target(schema, out), unscale_target(schema, target))


def score(model: Scorable, ds: DecodedDataset, keep: Sequence[str] | None = None) -> float:
    """The primary metric of ``model`` on ``ds`` (with ``keep``, the other modalities are marked missing)."""
    m = task_metrics(model.schema, outputs(model, ds, keep=keep), targets(ds), confusion=False)
    return float(m[primary_metric(model)])


@torch.inference_mode()
def embeddings(
    net: nn.Module, ds: DecodedDataset, names: Sequence[str] | None = None, batch_size: int = 256
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Per-modality L2-normalised vectors ``[N, E]`` and presence ``[N]``, plus the ``fused`` vector (the
    normalised mean of the present modalities' vectors)."""
    if getattr(net, "align_head", None) is None:
        raise PolymodalError(
            "this model has no shared embedding space: train it with `polymodal align` / pm.align(...), "
            "or pass align='clip' (or another objective) to fit"
        )
    net.eval()
    names = list(names or net.align_head.names)
    chunks: dict[str, list[torch.Tensor]] = {m: [] for m in names}
    fused: list[torch.Tensor] = []
    for batch in make_loader(ds, batch_size, shuffle=False):
        emb = net.align_head(net.encode(batch, names))
        for m in names:
            chunks[m].append(emb[m])
        fused.append(fuse(emb, {m: batch.present[m] for m in names}))
    rows = ds.rows
    present = {m: ds.present[m][torch.as_tensor(rows)].numpy() for m in names}
    e = net.align_head.embed_dim
    out = {m: (torch.cat(c).float().numpy() if c else np.zeros((0, e), np.float32)) for m, c in chunks.items()}
    out[FUSED] = torch.cat(fused).float().numpy() if fused else np.zeros((0, e), np.float32)
    present[FUSED] = np.stack([present[m] for m in names], 0).any(0) if names else np.zeros(len(rows), bool)
    return out, present
