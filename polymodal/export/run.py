"""``export_run``: graph + parity check + the record beside the graph, in one step that says "done" only when
onnxruntime matches PyTorch.

The record (``<graph>.json``) holds the opset, the inputs (dynamic axes named), the layout the backend feeds,
the subsets checked and their largest absolute differences, the tolerance, whether it passed, the polymodal /
torch / onnxruntime versions, the weights' fingerprint (``net_sha256``, checked by the backend) and, for a run
folder, the sha256 of its ``manifest.json``.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import os
import time
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from torch import nn

from polymodal import __version__
from polymodal.data.dataset import DecodedDataset
from polymodal.data.decode import decode
from polymodal.data.schema import Schema
from polymodal.errors import PolymodalError
from polymodal.export.backend import OnnxNet, net_sha256, sidecar
from polymodal.export.flat import ExportError, InputLayout
from polymodal.export.graph import MIN_OPSET, export_graph
from polymodal.export.parity import check_parity

DEFAULT_ATOL = 1e-4
DEFAULT_ROWS = 32


def run_sha256(run: str | Path | None) -> str | None:
    """sha256 of the run folder's ``manifest.json`` (which holds every run file's sha256), else of its weights."""
    if run is None:
        return None
    for name in ("manifest.json", "weights.safetensors"):
        p = Path(run) / name
        if p.is_file():
            return hashlib.sha256(p.read_bytes()).hexdigest()
    return None


def bundled_check_table(schema: Schema, rows: int = DEFAULT_ROWS) -> tuple[pd.DataFrame, str] | None:
    """Real rows for the check when the user gives none: the test split of the first bundled dataset
    (``polymodal.datasets``) whose columns this run reads and whose cells decode with its schema."""
    from polymodal.datasets import DATASETS

    columns = {c for spec in schema for c in spec.columns}
    for name, entry in DATASETS.items():
        load = entry["load"]
        try:
            kw = {"limit": rows} if "limit" in inspect.signature(load).parameters else {}
            frame = load("test", **kw).head(rows)
        except Exception:  # noqa: BLE001  (a dataset that cannot load here is simply not a candidate)
            continue
        if not columns <= set(frame.columns):
            continue
        try:
            decode(schema, frame, labels="ignore", progress=False)
        except PolymodalError:
            continue
        return frame, f"bundled dataset {name!r} (test split, first {len(frame)} rows)"
    return None


def check_options(out: str | Path, opset: int | None = None) -> None:
    """Refuse an ``out`` that is a folder and an opset the exporter cannot write, before any work."""
    out = Path(out)
    if out.is_dir():
        raise ExportError(f"--onnx {out} is a folder: pass a file path such as {out / 'model.onnx'}")
    if opset is not None and opset < MIN_OPSET:
        raise ExportError(f"--opset {opset} is too old for the exporter: use {MIN_OPSET} or newer (default: "
                          "the exporter's own)")


def export_run(net: nn.Module, schema: Schema, check: DecodedDataset, out: str | Path, *, opset: int | None = None,
               atol: float = DEFAULT_ATOL, run: str | Path | None = None, check_source: str = "",
               threads: int | None = None) -> dict[str, Any]:
    """Export ``net`` to ``out``, check onnxruntime against PyTorch on ``check`` for every modality subset and
    write ``<out>.json``. Raises ``ExportError`` (and leaves no graph at ``out``) when the largest absolute
    difference of the logits exceeds ``atol``."""
    if len(check) == 0:
        raise ExportError("the check table has no rows: the graph is checked on real rows of the run's data")
    check_options(out, opset)
    out = Path(out)
    tmp = out.with_name(f"{out.name}.tmp-{os.getpid()}")
    example = check[list(range(min(len(check), 8)))]
    started = time.perf_counter()
    try:
        graph = export_graph(net, example, tmp, opset=opset)
        export_s = time.perf_counter() - started
        layout = InputLayout.of(example, list(net.names))
        parity = check_parity(net, OnnxNet(tmp, schema, layout, threads=threads), check, layout)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    passed = parity["max_abs_diff"] <= atol
    record = {
        **graph,
        "layout": {"tensors": [list(t) for t in layout.tensors], "modalities": list(layout.modalities)},
        "check": {"data": check_source, **parity},
        "max_abs_diff": parity["max_abs_diff"],
        "atol": atol,
        "passed": passed,
        "exporter": "torch.onnx.export(dynamo=True)",
        "versions": {"polymodal": __version__, "torch": torch.__version__, "onnxruntime": _ort_version()},
        "net_sha256": net_sha256(net),
        "run": None if run is None else str(run),
        "run_sha256": run_sha256(run),
        "export_s": round(export_s, 2),
    }
    if not passed:
        tmp.unlink(missing_ok=True)
        worst = max(parity["subsets"], key=parity["subsets"].get)
        raise ExportError(
            f"onnxruntime differs from PyTorch by {parity['max_abs_diff']:.3g} (> --atol {atol:g}; worst subset "
            f"{worst!r}: {parity['subsets'][worst]:.3g}; per subset: {parity['subsets']}), so no graph was "
            f"written to {out}. What to do: check a different opset (--opset), or raise --atol if the difference "
            "is acceptable for your use")
    os.replace(tmp, out)
    sidecar(out).write_text(json.dumps(record, indent=2))
    return record


def _ort_version() -> str:
    import onnxruntime

    return onnxruntime.__version__
