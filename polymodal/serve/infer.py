"""Inference on a batch of requests: the run's net (or its ONNX export) through the public scoring functions.

``Runner.predict`` / ``Runner.embed`` take the decoded records of one batch of requests (``decoding.decode_batch``)
and the number of records of each request, run them through ``evaluate.scoring.outputs`` / ``embeddings`` as one
batch and split the answers back per request. ``inference_net`` is the one place the task head's backend is
chosen: the PyTorch net, or an onnxruntime session over an exported graph (``polymodal export``) with the same
call shape (``net(batch).logits``). Embeddings always come from the PyTorch net.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from polymodal.data.dataset import Decoded, DecodedDataset
from polymodal.data.labels import decode_predictions
from polymodal.errors import PolymodalError
from polymodal.evaluate.scoring import FUSED, embeddings, outputs
from polymodal.serve.decoding import split


def inference_net(model: Any, backend: str, run: str | Path | None = None, *, onnx: str | Path | None = None,
                  threads: int | None = None) -> Any:
    """The object whose ``(batch).logits`` the task head's answers come from, for ``backend`` torch | onnx: the
    onnx graph is ``onnx`` or ``RUN/model.onnx``, checked (``export.open_backend``) to be an export of this very
    net whose parity check against PyTorch passed."""
    if backend == "torch":
        return model.net
    from polymodal.export import find_graph, open_backend

    return open_backend(find_graph(run, onnx), model.schema, model.net, threads=threads).net


class Runner:
    """The model's answers for batches of decoded records. ``schema`` and ``net`` make it a ``Scorable``."""

    def __init__(self, model: Any, backend: str = "torch", run: str | Path | None = None, *,
                 onnx: str | Path | None = None, threads: int | None = None) -> None:
        self.model, self.schema, self.backend = model, model.schema, backend
        self.can_predict = bool(getattr(model.net, "has_task", True)) and model.schema.label is not None
        self.can_embed = getattr(model.net, "align_head", None) is not None
        if backend == "onnx" and not self.can_predict:
            raise PolymodalError("--backend onnx serves a task head (/predict); this run has none (an alignment run)")
        self.net = inference_net(model, backend, run, onnx=onnx, threads=threads) if self.can_predict else model.net
        if self.can_predict:
            self.net.eval()

    def predict(self, decoded: Decoded, sizes: list[int]) -> list[list[dict[str, Any]]]:
        """Per request (``sizes``: its number of records), per record: ``prediction``, ``proba`` (class ->
        probability; classification) and ``missing`` (the modalities the record did not give, or whose value was
        empty)."""
        ds, present, parts = DecodedDataset(decoded), {m: p for m, (_, p) in decoded.items()}, split(sizes)
        out = outputs(self, ds, batch_size=len(ds))
        labels = decode_predictions(self.schema, out.numpy())
        proba = out.softmax(-1).numpy() if self.schema.task == "classify" else None
        names = list(present)
        rows = []
        for r in range(len(ds)):
            row: dict[str, Any] = {"prediction": _plain(labels[r])}
            if proba is not None:
                row["proba"] = {str(c): float(proba[r, k]) for k, c in enumerate(self.schema.classes)}
            row["missing"] = [m for m in names if not present[m][r]]
            rows.append(row)
        return [rows[s] for s in parts]

    def embed(self, decoded: Decoded, sizes: list[int]) -> list[list[dict[str, Any]]]:
        """Per request, per record: ``{modality: vector or None, "fused": vector}`` in the shared space."""
        ds, parts = DecodedDataset(decoded), split(sizes)
        emb, present = embeddings(self.model.net, ds, batch_size=len(ds))
        rows = [{m: (emb[m][r].tolist() if present[m][r] else None) for m in emb} for r in range(len(ds))]
        return [rows[s] for s in parts]


def _plain(v: Any) -> Any:
    return v.item() if isinstance(v, np.generic) else v


__all__ = ["FUSED", "Runner", "inference_net"]
