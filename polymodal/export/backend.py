"""The onnxruntime backend: an exported graph that stands in for the net at inference.

``OnnxNet`` answers what the scoring functions and the server ask of a net: ``eval()``, ``has_task``,
``schema``, ``names`` and ``net(batch).logits``, so ``evaluate.scoring.outputs`` runs it unchanged. It is opened
from a graph plus the sidecar JSON that ``export_run`` writes next to it (``<graph>.json``), which must say that
the parity check passed and must belong to the net it stands in for (``net_sha256``).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from polymodal.data.schema import Schema
from polymodal.export.flat import OUTPUT, ExportError, InputLayout
from polymodal.types import Batch

DEFAULT_NAME = "model.onnx"
EXPORT_HINT = "export it first with `polymodal export RUN --onnx RUN/model.onnx`"
_ORT_DTYPES = {"tensor(float)": np.float32, "tensor(double)": np.float64, "tensor(int64)": np.int64,
               "tensor(int32)": np.int32, "tensor(bool)": np.bool_, "tensor(float16)": np.float16}


def sidecar(graph: str | Path) -> Path:
    """``out/m1.onnx`` -> ``out/m1.onnx.json``: what was exported and checked."""
    return Path(f"{graph}.json")


def net_sha256(net: nn.Module) -> str:
    """A fingerprint of the weights (names, dtypes, shapes and bytes of the state dict, in name order)."""
    h = hashlib.sha256()
    for name, t in sorted(net.state_dict().items()):
        t = t.detach().cpu().contiguous()
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)};".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def find_graph(run: str | Path | None, onnx: str | Path | None = None) -> Path:
    """The graph to use: ``onnx`` when given, else ``RUN/model.onnx``; a clear error when there is none."""
    path = Path(onnx) if onnx is not None else (Path(run) / DEFAULT_NAME if run is not None else None)
    if path is None:
        raise ExportError(f"the onnx backend needs an exported graph: pass onnx=PATH; {EXPORT_HINT}")
    if not path.is_file():
        if onnx is not None:
            raise ExportError(f"no ONNX graph at {path}; {EXPORT_HINT}")
        raise ExportError(f"no ONNX graph at {path} (the default place for run {str(run)!r}); {EXPORT_HINT}, or "
                          "pass --onnx PATH")
    return path


def session_options(threads: int | None = None):
    """One inference thread pool of ``threads`` (default: torch's own thread count), nodes run one at a time
    (``inter_op`` 1): the server's worker and the benchmark compare like with like."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = int(threads or torch.get_num_threads())
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.log_severity_level = 3  # errors only
    return so


@dataclass
class OnnxOutput:
    """What ``OnnxNet`` returns: the head's outputs, like ``NetOutput.logits``."""

    logits: Tensor


class OnnxNet:
    """An onnxruntime session over an exported graph, called like the net: ``OnnxNet(...)(batch).logits``."""

    has_task = True
    training = False

    def __init__(self, graph: str | Path, schema: Schema, layout: InputLayout, threads: int | None = None) -> None:
        import onnxruntime as ort

        self.path, self.schema, self.layout = Path(graph), schema, layout
        self.names = list(schema.names)
        try:
            self.session = ort.InferenceSession(str(graph), sess_options=session_options(threads),
                                                providers=["CPUExecutionProvider"])
        except Exception as e:  # noqa: BLE001  (a truncated or foreign file)
            raise ExportError(f"{graph}: onnxruntime cannot load this graph ({str(e).splitlines()[0][:200]}); "
                              f"{EXPORT_HINT}") from None
        declared = {i.name: i for i in self.session.get_inputs()}
        if sorted(declared) != sorted(layout.names):
            raise ExportError(f"{graph}: the graph's inputs {sorted(declared)} are not this run's "
                              f"{sorted(layout.names)}; {EXPORT_HINT}")
        self.dtypes = {n: np.dtype(_ORT_DTYPES.get(i.type, np.float32)) for n, i in declared.items()}
        self.shapes = {n: i.shape for n, i in declared.items()}

    def eval(self) -> "OnnxNet":
        return self

    def __call__(self, batch: Batch) -> OnnxOutput:
        batch = self._complete(batch)
        (logits,) = self.session.run([OUTPUT], self.layout.feed(batch, self.dtypes))
        return OnnxOutput(torch.from_numpy(logits))

    def _complete(self, batch: Batch) -> Batch:
        """A modality the batch does not carry at all is fed as absent (placeholder zeros, ``present`` False)."""
        missing = [m for m in self.layout.modalities if m not in batch.inputs or m not in batch.present]
        if not missing:
            return batch
        n = len(batch)
        inputs, present = dict(batch.inputs), dict(batch.present)
        for m in missing:
            inputs[m] = {k: torch.zeros([n] + [d if isinstance(d, int) else 1 for d in self.shapes[f"{m}.{k}"][1:]],
                                        dtype=torch.from_numpy(np.zeros(0, self.dtypes[f"{m}.{k}"])).dtype)
                         for mm, k in self.layout.tensors if mm == m}
            inputs[m].update({k: torch.ones(n, dtype=torch.long) for k in inputs[m] if k == "length"})
            present[m] = torch.zeros(n, dtype=torch.bool)
        return Batch(inputs, present, batch.target, batch.index)


@dataclass
class OnnxScorer:
    """A ``Scorable`` (``net`` + ``schema``) whose net is an ``OnnxNet``: what ``scoring.outputs`` takes."""

    net: OnnxNet
    schema: Schema


def read_sidecar(graph: Path) -> dict[str, Any]:
    meta = sidecar(graph)
    if not meta.is_file():
        raise ExportError(f"{graph} has no {meta.name} beside it (written by the export once onnxruntime matched "
                          f"PyTorch); {EXPORT_HINT}")
    try:
        info = json.loads(meta.read_text())
        layout = InputLayout(tuple(tuple(t) for t in info["layout"]["tensors"]), tuple(info["layout"]["modalities"]))
    except (ValueError, KeyError, TypeError) as e:
        raise ExportError(f"{meta} is not an export record ({type(e).__name__}: {e}); {EXPORT_HINT}") from None
    if not info.get("passed", False):
        raise ExportError(f"{meta}: this graph did not pass the parity check against PyTorch; {EXPORT_HINT}")
    info["_layout"] = layout
    return info


def open_backend(graph: str | Path, schema: Schema, net: nn.Module | None = None,
                 threads: int | None = None) -> OnnxScorer:
    """The onnxruntime stand-in for ``net`` (checked to be the net the graph was exported from, when given)."""
    graph = Path(graph)
    info = read_sidecar(graph)
    if net is not None and info.get("net_sha256") != net_sha256(net):
        raise ExportError(f"{graph} was exported from other weights than this run's (net_sha256 differs): the run "
                          f"was retrained or changed since; {EXPORT_HINT}")
    if list(info["_layout"].modalities) != list(schema.names):
        raise ExportError(f"{graph} serves modalities {list(info['_layout'].modalities)}, this run has "
                          f"{list(schema.names)}; {EXPORT_HINT}")
    return OnnxScorer(OnnxNet(graph, schema, info["_layout"], threads=threads), schema)
