"""The graph's interface: a flat list of named tensors <-> a ``Batch``, and the export-friendly net around it.

A ``MultimodalNet`` takes a ``Batch`` (``inputs[modality][key]`` plus ``present[modality]``); an ONNX graph takes
named tensors. ``InputLayout`` fixes that naming once, from a decoded batch: one input ``<modality>.<key>`` per
tensor the modality's processor produces (``image.pixels``, ``audio.wave``, ``audio.length``, ...), then one bool
input ``<modality>.present`` per modality. Axis 0 of every input is the dynamic batch axis; in a modality that
carries a ``length`` input (audio ``wave``, text ``ids``, time-series ``series``), axis 1 of its other inputs is
dynamic too (``<modality>_len``): the processors pad to a fitted length, but a caller (a server batching clips)
may pad only as far as a batch's longest cell.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from polymodal import blocks
from polymodal.errors import PolymodalError
from polymodal.types import Batch

OUTPUT = "logits"
BATCH_AXIS = "batch"


class ExportError(PolymodalError):
    """The net cannot be exported, or onnxruntime disagrees with PyTorch, or a graph cannot be used: the message
    names the part (or the file) and what to do."""


@dataclass(frozen=True)
class InputLayout:
    """The graph's inputs in order: ``tensors`` as ``(modality, key)`` pairs, then one ``present`` per modality."""

    tensors: tuple[tuple[str, str], ...]
    modalities: tuple[str, ...]

    @classmethod
    def of(cls, batch: Batch, modalities: list[str]) -> "InputLayout":
        missing = [m for m in modalities if m not in batch.inputs]
        if missing:
            raise ExportError(f"the example batch has no inputs for modalities {missing}; decode a table with "
                              "every modality's columns to export")
        return cls(tuple((m, k) for m in modalities for k in batch.inputs[m]), tuple(modalities))

    @property
    def names(self) -> list[str]:
        return [f"{m}.{k}" for m, k in self.tensors] + [f"{m}.present" for m in self.modalities]

    def length_axes(self) -> dict[str, int]:
        """``<modality>.<key>`` -> 1 for inputs whose axis 1 is a padded length (their modality has ``length``)."""
        with_length = {m for m, k in self.tensors if k == "length"}
        return {f"{m}.{k}": 1 for m, k in self.tensors if m in with_length and k != "length"}

    def args(self, batch: Batch) -> tuple[Tensor, ...]:
        """The graph's positional inputs from a batch (tensors, then present flags)."""
        return tuple(batch.inputs[m][k] for m, k in self.tensors) + tuple(batch.present[m] for m in self.modalities)

    def feed(self, batch: Batch, dtypes: dict[str, np.dtype] | None = None) -> dict[str, np.ndarray]:
        """onnxruntime's feed from a batch, each array cast to the graph's dtype (``dtypes``, by input name)."""
        out = {}
        for name, t in zip(self.names, self.args(batch)):
            a = t.detach().cpu().numpy()
            if dtypes is not None and a.dtype != dtypes[name]:
                a = a.astype(dtypes[name])
            out[name] = np.ascontiguousarray(a)
        return out

    def batch(self, args: tuple[Tensor, ...]) -> Batch:
        n = len(self.tensors)
        inputs: dict[str, dict[str, Tensor]] = {m: {} for m in self.modalities}
        for (m, k), t in zip(self.tensors, args[:n]):
            inputs[m][k] = t
        return Batch(inputs=inputs, present=dict(zip(self.modalities, args[n:])))


class FlatNet(nn.Module):
    """``net`` as a function of the flat inputs of ``layout``: ``forward(*tensors, *present) -> logits``."""

    def __init__(self, net: nn.Module, layout: InputLayout) -> None:
        super().__init__()
        self.net, self.layout = net, layout

    def forward(self, *args: Tensor) -> Tensor:
        return self.net(self.layout.batch(args)).logits


def run_on_all_rows(module: nn.Module, fn, present: Tensor, *inputs: Tensor) -> Tensor:
    """Export form of ``blocks.run_on_present``: ``fn`` on every row, absent rows of the result set to zero.

    ``run_on_present`` selects the present rows (``if present.all()``, ``nonzero``) so that BatchNorm statistics
    never see placeholder rows in training. In eval mode every row is computed on its own (BatchNorm uses its
    running statistics), so computing all rows and zeroing the absent ones gives the same numbers, with shapes
    that do not depend on the data, which the exporter needs. The parity check confirms it on every subset.
    """
    out = fn(*inputs)
    keep = present.reshape((-1,) + (1,) * (out.dim() - 1))
    return torch.where(keep, out, torch.zeros_like(out))


@contextlib.contextmanager
def export_friendly() -> Iterator[None]:
    """While exporting: every polymodal module that calls ``run_on_present`` calls ``run_on_all_rows`` instead
    (the encoders import the function by name, so each importing module's binding is swapped, then restored)."""
    original = blocks.run_on_present
    swapped = [mod for name, mod in list(sys.modules.items())
               if name.startswith("polymodal.") and name != "polymodal.blocks"
               and getattr(mod, "run_on_present", None) is original]
    for mod in swapped:
        mod.run_on_present = run_on_all_rows
    try:
        yield
    finally:
        for mod in swapped:
            mod.run_on_present = original
