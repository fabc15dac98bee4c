"""Export a trained net to ONNX (one graph for every subset of modalities) and an onnxruntime backend.

* ``export_run(net, schema, check_ds, "out/m1.onnx")`` (``run.py``): the graph (``graph.py``), checked against
  PyTorch for every modality subset (``parity.py``), with its record ``out/m1.onnx.json``;
* ``open_backend(graph, schema, net)`` (``backend.py``): an ``OnnxScorer`` whose ``net`` is an ``OnnxNet``, a
  drop-in for the net in ``evaluate.scoring.outputs`` and the server;
* ``ExportError``: every failure, naming the part or the file and what to do.

onnxruntime and the exporter load on first use, not on ``import polymodal.export``.
"""

from polymodal.export.backend import DEFAULT_NAME, OnnxNet, OnnxScorer, find_graph, open_backend, sidecar
from polymodal.export.flat import ExportError, InputLayout
from polymodal.export.run import DEFAULT_ATOL, DEFAULT_ROWS, bundled_check_table, export_run

__all__ = ["DEFAULT_ATOL", "DEFAULT_NAME", "DEFAULT_ROWS", "ExportError", "InputLayout", "OnnxNet", "OnnxScorer",
           "bundled_check_table", "export_run", "find_graph", "open_backend", "sidecar"]
