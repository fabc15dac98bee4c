"""Arrow tables for the vector store: one write's rows, and fitting them to an existing table's schema."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from polymodal.index.lock import IndexError_

RESERVED = ("id", "hash")


def rows_table(ids: Sequence[str], hashes: Sequence[str], vectors: Mapping[str, np.ndarray],
               present: Mapping[str, np.ndarray] | None, metadata: pd.DataFrame | None):
    """The Arrow table of one write: id, hash, metadata columns, then ``vec_<name>`` + ``has_<name>`` per vector."""
    import pyarrow as pa

    n = len(ids)
    cols: dict[str, Any] = {"id": pa.array([str(i) for i in ids], pa.string()), "hash": pa.array(list(hashes), pa.string())}
    if metadata is not None:
        if len(metadata) != n:
            raise ValueError(f"metadata has {len(metadata)} rows for {n} ids")
        for c in metadata.columns:
            if c in RESERVED or str(c).startswith(("vec_", "has_")):
                raise IndexError_(f"metadata column {c!r} clashes with the index's own columns; rename it")
            try:
                cols[str(c)] = pa.array(_plain_column(metadata[c]), from_pandas=True)
            except (pa.ArrowInvalid, pa.ArrowTypeError) as e:
                raise IndexError_(
                    f"metadata column {c!r} cannot be stored: {str(e).splitlines()[0]}; leave it out with "
                    "metadata= (--metadata COLUMNS) or make its values one type"
                ) from None
    for name, v in vectors.items():
        v = np.ascontiguousarray(np.asarray(v, dtype=np.float32))
        if v.ndim != 2 or v.shape[0] != n:
            raise ValueError(f"vectors {name!r} must be [{n}, dim], got {v.shape}")
        p = np.ones(n, bool) if present is None or name not in present else np.asarray(present[name], bool)
        v = np.where(p[:, None], v, 0.0).astype(np.float32)
        cols[f"vec_{name}"] = pa.FixedSizeListArray.from_arrays(pa.array(v.reshape(-1)), v.shape[1])
        cols[f"has_{name}"] = pa.array(p)
    return pa.table(cols)


def fit_to_schema(data, schema):
    """``data`` with the index's column order and types, or an error naming the column that does not fit."""
    import pyarrow as pa

    data = data.select(schema.names)
    try:
        data = data.cast(schema)
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
        for f in schema:
            try:
                data.column(f.name).cast(f.type)
            except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError) as e:
                raise IndexError_(
                    f"column {f.name!r} holds {data.schema.field(f.name).type} values that do not fit the "
                    f"index's {f.type} column ({str(e).splitlines()[0]}); build into a new index folder, or "
                    "leave the column out with metadata= (--metadata COLUMNS)"
                ) from None
        raise
    return data


def _plain_column(s: pd.Series) -> list[Any]:
    """Metadata cells as Arrow-friendly scalars (numpy scalars -> Python, other objects -> str)."""
    out = []
    for v in s.tolist():
        if v is None or isinstance(v, (str, bool, int, float)):
            out.append(None if isinstance(v, float) and math.isnan(v) else v)
        elif isinstance(v, np.generic):
            out.append(v.item())
        else:
            out.append(str(v))
    return out
