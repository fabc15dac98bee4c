"""Table-level helpers of the shared embedding space: which modalities a table has, the embedding frame, the
one modality of a kind. The vectors themselves come from ``evaluate.scoring.embeddings``."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from polymodal.data.schema import Schema
from polymodal.errors import SchemaError


def present_names(schema: Schema, frame: pd.DataFrame, names: Sequence[str] | None = None) -> list[str]:
    """The modalities (of ``names``, default all) whose columns ``frame`` has; an error when there is none."""
    if names is not None:
        unknown = [m for m in names if m not in schema.names]
        if unknown:
            raise SchemaError(f"unknown modalities {unknown}; this model encodes {schema.names}")
    out = [m for m in (names or schema.names) if all(c in frame.columns for c in schema[m].columns)]
    if not out:
        raise SchemaError(
            f"the table has none of the columns this model reads ({[s.columns for s in schema]}); "
            f"it has {list(frame.columns)}"
        )
    return out


def embedding_frame(emb: dict[str, np.ndarray], present: dict[str, np.ndarray], index: pd.Index) -> pd.DataFrame:
    """One ``emb_<modality>`` column per modality (a list of floats, None where absent) plus ``emb_fused``."""
    cols = {}
    for m, v in emb.items():
        cols[f"emb_{m}"] = [row.tolist() if p else None for row, p in zip(v, present[m])]
    return pd.DataFrame(cols, index=index)


def modality_of_kind(schema: Schema, kind: str, names: Sequence[str] | None = None) -> str:
    """The one modality of ``kind`` (``text``, ``image``, ...), or a clear error naming the candidates."""
    cands = [s.name for s in schema if s.kind == kind and (names is None or s.name in names)]
    if not cands:
        raise SchemaError(f"this model has no {kind} modality; it encodes {[(s.name, s.kind) for s in schema]}")
    if len(cands) > 1:
        raise SchemaError(f"this model has several {kind} modalities {cands}; name one explicitly")
    return cands[0]


def values_frame(schema: Schema, modality: str, values: Sequence[object]) -> pd.DataFrame:
    """A one-column table of raw cell values of one modality (texts, image paths or bytes, audio paths, ...)."""
    if modality not in schema.names:
        raise SchemaError(f"unknown modality {modality!r}; this model encodes {schema.names}")
    spec = schema[modality]
    if len(spec.columns) != 1:
        raise SchemaError(f"modality {modality!r} reads several columns {spec.columns}; pass a table instead")
    return pd.DataFrame({spec.column: list(values)})
