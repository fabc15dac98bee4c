"""Embedding a table (or a few raw values) with any net that has ``encoders`` and an ``align_head``.

Shared by alignment runs (``AlignedModel``) and supervised models trained with an alignment objective.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from polymodal.data.dataset import DecodedDataset, make_loader
from polymodal.data.kinds.base import DecodeContext, DecodeReport
from polymodal.data.schema import Schema
from polymodal.data.table import decode_table, read_table
from polymodal.errors import PolymodalError, SchemaError
from polymodal.heads.projection import fuse

FUSED = "fused"


def check_alignable(net: nn.Module) -> None:
    if getattr(net, "align_head", None) is None:
        raise PolymodalError(
            "this model has no shared embedding space: train it with `polymodal align` / pm.align(...), "
            "or pass align='clip' (or another objective) to fit"
        )


@torch.inference_mode()
def embed_dataset(
    net: nn.Module, ds: DecodedDataset, names: Sequence[str] | None = None, batch_size: int = 256
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Per-modality L2-normalised vectors ``[N, E]`` and presence ``[N]`` (+ the ``fused`` vector)."""
    check_alignable(net)
    net.eval()
    names = list(names or net.align_head.names)
    chunks: dict[str, list[torch.Tensor]] = {m: [] for m in names}
    fused: list[torch.Tensor] = []
    for batch in make_loader(ds, batch_size, shuffle=False):
        tokens = {m: net.encoders[m](batch.inputs[m], batch.present[m]) for m in names}
        emb = net.align_head(tokens)
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


def decode_rows(
    schema: Schema, data: Any, *, on_error: str = "raise", names: Sequence[str] | None = None, progress: bool = False,
    base_dir: Path | None = None,
) -> tuple[pd.DataFrame, DecodedDataset, DecodeReport]:
    """Decode the columns of ``names`` (default: every modality) with the fitted schema; no label needed.

    ``base_dir``: where relative file paths resolve (default: the table file's folder, or the current one).
    """
    frame, found_dir = read_table(data)
    base_dir = base_dir or found_dir
    if len(frame) == 0:
        raise SchemaError("the table is empty: nothing to embed")
    sub = subschema(schema, names)
    ctx = DecodeContext(base_dir=base_dir, on_error=on_error)
    sub.check_columns(frame)
    decoded = decode_table(sub, frame, ctx, progress=progress)
    return frame, DecodedDataset(decoded), ctx.report


def subschema(schema: Schema, names: Sequence[str] | None) -> Schema:
    if names is None:
        return schema
    unknown = [m for m in names if m not in schema.names]
    if unknown:
        raise SchemaError(f"unknown modalities {unknown}; this model encodes {schema.names}")
    return Schema({m: schema[m] for m in names}, label=None, task=schema.task)


def embedding_frame(emb: dict[str, np.ndarray], present: dict[str, np.ndarray], index: pd.Index) -> pd.DataFrame:
    """One ``emb_<modality>`` column per modality (a list of floats, None where absent) plus ``emb_fused``."""
    cols = {}
    for m, v in emb.items():
        cols[f"emb_{m}"] = [row.tolist() if p else None for row, p in zip(v, present[m])]
    return pd.DataFrame(cols, index=index)


def encode_values(schema: Schema, net: nn.Module, modality: str, values: Sequence[Any]) -> np.ndarray:
    """Embed raw cell values of one modality (texts, image paths or bytes, audio paths, ...): ``[len, E]``."""
    if modality not in schema.names:
        raise SchemaError(f"unknown modality {modality!r}; this model encodes {schema.names}")
    spec = schema[modality]
    if len(spec.columns) != 1:
        raise SchemaError(f"modality {modality!r} reads several columns {spec.columns}; pass a table instead")
    frame = pd.DataFrame({spec.column: list(values)})
    _, ds, _ = decode_rows(schema, frame, names=[modality])
    missing = np.flatnonzero(~ds.present[modality].numpy())
    if len(missing):
        raise SchemaError(f"value #{int(missing[0])} for modality {modality!r} is empty: {values[int(missing[0])]!r}")
    emb, _ = embed_dataset(net, ds, [modality])
    return emb[modality]


def modality_of_kind(schema: Schema, kind: str, names: Sequence[str] | None = None) -> str:
    """The one modality of ``kind`` (``text``, ``image``, ...), or a clear error naming the candidates."""
    cands = [s.name for s in schema if s.kind == kind and (names is None or s.name in names)]
    if not cands:
        raise SchemaError(f"this model has no {kind} modality; it encodes {[(s.name, s.kind) for s in schema]}")
    if len(cands) > 1:
        raise SchemaError(f"this model has several {kind} modalities {cands}; name one explicitly")
    return cands[0]


def embed_arrays(schema: Schema, net: nn.Module, data: Any, *, on_error: str = "raise",
                 names: Sequence[str] | None = None, base_dir: Path | None = None):
    """(frame, {modality|fused: [N, E]}, {modality|fused: present[N]}, decode report) for the modalities whose
    columns the table has (a text-only table embeds with an image+text model)."""
    check_alignable(net)
    frame, found_dir = read_table(data)
    base_dir = base_dir or found_dir
    names = [m for m in (names or schema.names) if all(c in frame.columns for c in schema[m].columns)]
    if not names:
        raise SchemaError(
            f"the table has none of the columns this model reads ({[s.columns for s in schema]}); "
            f"it has {list(frame.columns)}"
        )
    frame, ds, report = decode_rows(schema, frame, on_error=on_error, names=names, base_dir=base_dir)
    emb, present = embed_dataset(net, ds, names)
    return frame, emb, present, report


def embed_table(schema: Schema, net: nn.Module, data: Any, *, on_error: str = "raise") -> pd.DataFrame:
    """``emb_<modality>`` (L2-normalised, None where absent) and ``emb_fused`` columns, indexed like the input."""
    frame, emb, present, report = embed_arrays(schema, net, data, on_error=on_error)
    out = embedding_frame(emb, present, frame.index)
    out.attrs["decode_report"] = report.to_dict()
    return out
