"""What an index stores per row besides vectors: content keys and hashes (what changed since the last build),
and the metadata columns (scalars; mixed-type columns as text)."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from polymodal.data.schema import Schema, is_missing
from polymodal.errors import SchemaError

FILE_KINDS = ("image", "audio", "depth", "timeseries")


def digest(*parts: bytes) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(len(p).to_bytes(8, "little"))
        h.update(p)
    return h.hexdigest()[:32]


def file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:32]


def _cell_bytes(v: Any) -> bytes:
    if isinstance(v, bytes):
        return v
    if isinstance(v, np.ndarray):
        return str(v.shape).encode() + str(v.dtype).encode() + np.ascontiguousarray(v).tobytes()
    if isinstance(v, dict):
        return b"".join(str(k).encode() + _cell_bytes(v[k]) for k in sorted(v, key=str))
    if isinstance(v, (list, tuple)):
        return _cell_bytes(np.asarray(v))
    return repr(v).encode()


def _is_inline(kind: str, v: str) -> bool:
    """A string cell that is a value, not a file path: a JSON list of a time series (how CSV stores lists)."""
    return kind == "timeseries" and v.lstrip().startswith("[")


def row_keys_and_hashes(
    schema: Schema, frame: pd.DataFrame, base_dir: Path, names: Sequence[str], id_column: str | None = None
) -> tuple[list[str], list[str], list[dict[str, Any]]]:
    """(key per row, content hash per row, missing-file problems [{row, column, file}])."""
    keys, hashes, missing = [], [], []
    cols = [(m, c) for m in names for c in schema[m].columns]
    ids = frame[id_column].tolist() if id_column else None
    for i, (row_label, row) in enumerate(zip(frame.index, frame[[c for _, c in cols]].itertuples(index=False, name=None))):
        key_parts, content_parts = [], []
        for (m, c), v in zip(cols, row):
            kind = schema[m].kind
            if is_missing(v):
                key_parts.append(b"\0")
                content_parts.append(b"\0")
            elif isinstance(v, str) and kind in FILE_KINDS and not _is_inline(kind, v):
                p = Path(v).expanduser()
                p = p if p.is_absolute() else base_dir / p
                key_parts.append(v.encode())
                try:
                    is_file = p.is_file()
                except OSError:  # e.g. a name too long for the OS: not a path; the decoder reports the bad value
                    is_file = None
                if is_file is None:
                    content_parts.append(v.encode())
                elif is_file:
                    content_parts.append(file_digest(p).encode())
                else:
                    missing.append({"row": row_label, "column": c, "file": str(p)})
                    content_parts.append(b"\0missing")
            else:
                b = _cell_bytes(v)
                key_parts.append(b if isinstance(v, str) else digest(b).encode())
                content_parts.append(b)
        keys.append(str(ids[i]) if ids is not None else digest(*key_parts))
        hashes.append(digest(*content_parts))
    return keys, hashes, missing


def metadata_frame(frame: pd.DataFrame, columns: Sequence[str] | None) -> pd.DataFrame:
    """The metadata to store: given columns, or every column whose values are plain scalars (str/number/bool).

    A column whose values mix types (numbers and strings, booleans and numbers, ...) is stored as strings, its
    missing values as nulls; ``metadata_as_text(frame)`` names those columns."""
    if columns is not None:
        absent = [c for c in columns if c not in frame.columns]
        if absent:
            raise SchemaError(f"metadata column(s) {absent} not in the table; it has {list(frame.columns)}")
        out = frame[list(columns)]
    else:
        keep = []
        for c in frame.columns:
            vals = [v for v in frame[c].head(50).tolist() if not is_missing(v)]
            if all(isinstance(v, (str, bool, int, float, np.generic)) for v in vals):
                keep.append(c)
        out = frame[keep]
    out = out.copy()
    as_text = []
    for c in out.columns:
        if out[c].dtype != object:  # a numeric / bool / string dtype holds one type
            continue
        vals = out[c].tolist()
        if len({_scalar_type(v) for v in vals if not is_missing(v)}) > 1:
            out[c] = pd.Series([None if is_missing(v) else str(v.item() if isinstance(v, np.generic) else v)
                                for v in vals], index=out.index, dtype=object)
            as_text.append(str(c))
    out.attrs["as_text"] = as_text
    return out


def _scalar_type(v: Any) -> str:
    """The Arrow-relevant type of a metadata cell: bool / number / str / other (ints and floats mix fine)."""
    if isinstance(v, (bool, np.bool_)):
        return "bool"
    if isinstance(v, (int, float, np.integer, np.floating)):
        return "number"
    if isinstance(v, str):
        return "str"
    return "other"
