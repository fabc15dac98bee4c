"""Export a task net (encoders + fusion + head) to one ONNX graph with the torch exporter (``dynamo=True``).

Why the dynamo exporter: the audio encoder's ``torch.stft(..., return_complex=True)`` has no TorchScript-exporter
symbolic ("STFT does not currently support complex types"), while the dynamo exporter translates it to ONNX
``STFT``. Its one blocker in polymodal, the data-dependent row selection of ``blocks.run_on_present``, is swapped
for an equivalent fixed-shape form while exporting (``flat.export_friendly``).

A part that still cannot be exported is found by exporting each encoder on its own, then the fusion + head on
the encoders' outputs, and the error names it (``ExportError``), instead of the exporter's own traceback.
"""

from __future__ import annotations

import contextlib
import io
import logging
import re
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from polymodal.export.flat import BATCH_AXIS, OUTPUT, ExportError, FlatNet, InputLayout, export_friendly
from polymodal.types import Batch, Tokens

MIN_OPSET = 18  # the dynamo exporter's operator library (onnxscript's torchlib) is written for opset 18+


def check_exportable(net: nn.Module) -> None:
    """Refuse nets the graph cannot represent, before any tracing."""
    if not getattr(net, "has_task", False):
        raise ExportError("this is an alignment run: it has no task head, and ONNX export covers encoders + fusion + "
                          "head (a run trained with `polymodal fit`)")


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """The exporter's progress lines, warnings and log records are not the user's business; errors are rethrown."""
    loggers = [logging.getLogger(n) for n in ("torch.onnx", "torch.export", "torch._export", "onnxscript")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), \
                contextlib.redirect_stderr(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def _dynamic_shapes(layout: InputLayout, args: tuple[Tensor, ...]) -> tuple[tuple[dict[int, str], ...]]:
    lengths = layout.length_axes()
    shapes = []
    for name, a in zip(layout.names, args):
        axes = {0: BATCH_AXIS}
        if name in lengths and a.dim() > 1:
            axes[1] = f"{name.split('.')[0]}_len"
        shapes.append(axes)
    return (tuple(shapes),)  # forward(*args): one entry, the tuple of the variadic inputs


def _program(module: nn.Module, args: tuple[Tensor, ...], names: list[str], dynamic, opset: int | None):
    with quiet(), export_friendly(), torch.no_grad():
        return torch.onnx.export(module, args, None, dynamo=True, input_names=names, output_names=[OUTPUT],
                                 dynamic_shapes=dynamic, opset_version=opset, optimize=True, verbose=False)


def _cause(e: BaseException) -> str:
    """The first informative line of an exporter error (its summary, not the 300-line report)."""
    text = str(e)
    if "## Exception summary" in text:
        text = text.split("## Exception summary", 1)[1]
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    line = re.sub(r"<class '(?:[\w]+\.)*(\w+)'>", r"\1", lines[0] if lines else type(e).__name__)
    return line.split("  (Size-like symbols")[0][:300]


def export_graph(net: nn.Module, batch: Batch, path: str | Path, opset: int | None = None) -> dict[str, Any]:
    """Write ``net`` (eval mode) as one ONNX graph to ``path``; ``batch``: a decoded example (>= 2 rows, real data).

    Returns the graph's description: ``inputs`` (name, dtype, dims; ``batch`` / ``<modality>_len`` dynamic),
    ``output`` and ``opset``. Raises ``ExportError`` naming the part that does not export.
    """
    check_exportable(net)
    net.eval()
    layout = InputLayout.of(batch, list(net.names))
    if len(batch) < 2:  # a batch of 1 would let the exporter specialise the batch axis to 1
        batch = Batch({m: {k: v.repeat_interleave(2, 0) for k, v in d.items()} for m, d in batch.inputs.items()},
                      {m: p.repeat_interleave(2, 0) for m, p in batch.present.items()})
    args = layout.args(batch)
    dynamic = _dynamic_shapes(layout, args)
    try:
        program = _program(FlatNet(net, layout), args, layout.names, dynamic, opset)
    except Exception as e:  # noqa: BLE001  (any exporter failure becomes a message naming the part)
        raise ExportError(locate_failure(net, batch, layout, opset, e)) from None
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with quiet():
        program.save(str(path))
    opset_used = next((o.version for o in program.model_proto.opset_import if o.domain in ("", "ai.onnx")), opset)
    dims = {name: d for name, d in zip(layout.names, dynamic[0])}
    inputs = [{"name": n, "dtype": str(a.dtype).removeprefix("torch."),
               "shape": [dims[n].get(i, int(s)) for i, s in enumerate(a.shape)]} for n, a in zip(layout.names, args)]
    return {"opset": int(opset_used), "inputs": inputs, "output": {"name": OUTPUT, "shape": [BATCH_AXIS, "n_out"]}}


# ------------------------------------------------------------------------------------------------ which part fails
class _EncoderPart(nn.Module):
    def __init__(self, encoder: nn.Module, keys: list[str]) -> None:
        super().__init__()
        self.encoder, self.keys = encoder, keys

    def forward(self, *args: Tensor) -> tuple[Tensor, Tensor]:
        t = self.encoder(dict(zip(self.keys, args[:-1])), args[-1])
        return t.x, t.mask


class _FusionPart(nn.Module):
    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, *args: Tensor) -> Tensor:
        names = list(self.net.names)
        tokens = {m: Tokens(args[3 * i], args[3 * i + 1], args[3 * i + 2]) for i, m in enumerate(names)}
        return self.net.head(self.net.fusion(tokens).pooled)


def _encoder_label(net: nn.Module, m: str) -> str:
    enc = net.encoders[m]
    label = f"the encoder of modality {m!r} ({type(enc).__name__})"
    state = getattr(enc, "token_state", None)
    if state is not None:
        label += f" with its token budget (reducer {state.spec.reducer.name!r})"
    return label


def locate_failure(net: nn.Module, batch: Batch, layout: InputLayout, opset: int | None, error: BaseException) -> str:
    """Export the parts one by one; the message names the first that fails and the exporter's reason."""
    what = "a part of the net"
    cause = _cause(error)
    try:
        tokens = {}
        with torch.no_grad(), export_friendly():
            for m in layout.modalities:
                keys = [k for mm, k in layout.tensors if mm == m]
                part = _EncoderPart(net.encoders[m], keys)
                args = tuple(batch.inputs[m][k] for k in keys) + (batch.present[m],)
                try:
                    _program(part, args, [f"{m}.{k}" for k in keys] + [f"{m}.present"],
                             (tuple({0: BATCH_AXIS} for _ in args),), opset)
                except Exception as e:  # noqa: BLE001
                    what, cause = _encoder_label(net, m), _cause(e)
                    raise
                tokens[m] = net.encoders[m](batch.inputs[m], batch.present[m])
        args = tuple(a for m in layout.modalities for a in (tokens[m].x, tokens[m].mask, tokens[m].present))
        try:
            _program(_FusionPart(net), args, [f"t{i}" for i in range(len(args))],
                     (tuple({0: BATCH_AXIS} for _ in args),), opset)
        except Exception as e:  # noqa: BLE001
            fusion = type(net.fusion).__name__
            what, cause = f"the fusion ({fusion}) or the task head ({type(net.head).__name__})", _cause(e)
    except Exception:  # noqa: BLE001  (the part that failed is named above)
        pass
    budget = getattr(net, "token_state", None)
    hint = ("export the model without its token budget (model.with_token_budget(1.0)) or pick parts with fixed "
            "token counts" if budget is not None else "choose another encoder / fusion for this run, or use the "
            "PyTorch backend (`--backend torch`)")
    return f"cannot export {what} to ONNX: {cause}. What to do: {hint}"
