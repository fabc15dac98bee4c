"""onnxruntime against PyTorch on decoded rows, for every subset of modalities (the empty one included).

For each subset the ``present`` flags of the other modalities are switched off (their real input values stay in
the tensors, so the graph must ignore them); rows that lack a modality in the data keep it absent. Two more
checks exercise the dynamic axes away from the export example: one row alone, and that row with every padded
length axis cut to its own length.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from polymodal.data.dataset import DecodedDataset, make_loader
from polymodal.evaluate.subsets import modality_subsets, subset_key
from polymodal.export.flat import InputLayout
from polymodal.types import Batch

NONE = "(none)"


def _diff(a: torch.Tensor, b: torch.Tensor) -> float:
    if a.shape != b.shape:
        return float("inf")
    return float((a.float() - b.float()).abs().max()) if a.numel() else 0.0


def _with(batch: Batch, present: dict[str, torch.Tensor]) -> Batch:
    return Batch(batch.inputs, present, batch.target, batch.index)


def shortest_row(batch: Batch, layout: InputLayout) -> Batch:
    """The row with the shortest first ``length`` input, alone, each padded length axis cut to its own length."""
    lengths = [m for m, k in layout.tensors if k == "length"]
    row = int(batch.inputs[lengths[0]]["length"].argmin()) if lengths else 0
    inputs = {m: {k: v[row:row + 1] for k, v in d.items()} for m, d in batch.inputs.items()}
    cut = layout.length_axes()
    for m in lengths:
        n = max(int(inputs[m]["length"][0]), 1)
        for k, v in inputs[m].items():
            if f"{m}.{k}" in cut and v.dim() > 1:
                inputs[m][k] = v[:, :n]
    return Batch(inputs, {m: p[row:row + 1] for m, p in batch.present.items()})


@torch.inference_mode()
def check_parity(net: nn.Module, onnx_net: Any, ds: DecodedDataset, layout: InputLayout,
                 batch_size: int = 64) -> dict[str, Any]:
    """``{"subsets": {key: max |diff|}, "shapes": {...}, "max_abs_diff": float, "rows": n}`` (logits)."""
    net.eval()
    names = list(layout.modalities)
    subsets = [()] + modality_subsets(names, max_subsets=2 ** len(names))
    batches = list(make_loader(ds, batch_size, shuffle=False))
    per_subset: dict[str, float] = {}
    for s in subsets:
        worst = 0.0
        for b in batches:
            sub = _with(b, {m: p & (m in s) for m, p in b.present.items()})
            worst = max(worst, _diff(net(sub).logits, onnx_net(sub).logits))
        per_subset[subset_key(s) or NONE] = worst
    first = batches[0]
    one = Batch({m: {k: v[:1] for k, v in d.items()} for m, d in first.inputs.items()},
                {m: p[:1] for m, p in first.present.items()})
    short = shortest_row(first, layout)
    shapes = {"batch_1": _diff(net(one).logits, onnx_net(one).logits),
              "batch_1_own_length": _diff(net(short).logits, onnx_net(short).logits)}
    return {"rows": len(ds), "subsets": per_subset, "shapes": shapes,
            "max_abs_diff": max([*per_subset.values(), *shapes.values()])}
