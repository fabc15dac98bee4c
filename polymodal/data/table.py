"""Reading a table and decoding its columns into per-modality numpy arrays.

* ``read_table`` accepts a DataFrame or a CSV / Parquet / JSON Lines / JSON (records) file and returns the frame
  plus the folder that relative file paths in its cells resolve against;
* ``fit_schema`` lets every modality's processor learn its options from the training table;
* ``decode_table`` turns each modality into ``(arrays, present)`` following ``kinds/base.py``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from polymodal.errors import SchemaError
from polymodal.data.kinds import PROCESSORS, DecodeContext
from polymodal.data.kinds._common import progress_enabled
from polymodal.data.schema import Schema

FORMATS = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "json",
}
_COMPRESSION = (".gz", ".bz2", ".zip", ".xz", ".zst")
ACCEPTED = "CSV (.csv, .tsv), Parquet (.parquet, .pq), JSON Lines (.jsonl, .ndjson), JSON records (.json)"


def _format_of(path: Path) -> str | None:
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] in _COMPRESSION:
        suffixes = suffixes[:-1]
    return FORMATS.get(suffixes[-1]) if suffixes else None


def _open_text(path: Path):
    import bz2
    import gzip
    import lzma

    opener = {".gz": gzip.open, ".bz2": bz2.open, ".xz": lzma.open}.get(path.suffix.lower(), open)
    return opener(path, "rt", encoding="utf-8")


def _records(rows: list) -> pd.DataFrame:
    if not all(isinstance(r, dict) for r in rows):
        raise ValueError("a JSON list must hold one object per record")
    return pd.DataFrame.from_records(rows) if rows else pd.DataFrame()


def _read_json_lines(path: Path) -> pd.DataFrame:
    records = []
    with _open_text(path) as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"line {lineno} is not valid JSON ({e.msg})") from None
            if not isinstance(rec, dict):
                raise ValueError(f"line {lineno} is a JSON {type(rec).__name__}, expected an object (one record)")
            records.append(rec)
    return _records(records)


def _read_json(path: Path) -> pd.DataFrame:
    with _open_text(path) as f:
        obj = json.load(f)
    if isinstance(obj, list):
        return _records(obj)
    if isinstance(obj, dict):
        if len(obj) == 1:
            key, value = next(iter(obj.items()))
            if key in ("data", "records", "rows") and isinstance(value, list):
                return _records(value)  # {"data": [records...]}
        return pd.DataFrame(obj)  # {column: [values] or {index: value}}
    raise ValueError(f"the top-level JSON value is a {type(obj).__name__}, expected a list of records")


class Table(NamedTuple):
    """A table value: the frame and the folder its relative file paths resolve against (never ``os.chdir``)."""

    frame: pd.DataFrame
    base_dir: Path


def read_table(source: Table | pd.DataFrame | str | os.PathLike) -> Table:
    """``Table(frame, base_dir)``: the table and the folder its relative file paths resolve against.

    A DataFrame resolves paths against the current directory; a file against its own folder; a ``Table``
    against the folder it carries.
    """
    if isinstance(source, Table):
        return source
    if isinstance(source, pd.DataFrame):
        return Table(source, Path.cwd())
    if not isinstance(source, (str, os.PathLike)):
        raise SchemaError(
            f"expected a pandas DataFrame or a path to a table file, got {type(source).__name__}; "
            f"accepted files: {ACCEPTED}"
        )
    path = Path(source).expanduser()
    if not path.exists():
        raise SchemaError(f"table file {str(path)!r} does not exist (looked in {str(path.resolve().parent)!r})")
    if path.is_dir():
        raise SchemaError(f"{str(path)!r} is a directory; pass a table file ({ACCEPTED})")
    fmt = _format_of(path)
    if fmt is None:
        raise SchemaError(
            f"cannot read table {path.name!r}: unknown file extension {''.join(path.suffixes) or '(none)'!r}; "
            f"accepted: {ACCEPTED}"
        )
    try:
        if fmt == "csv":
            frame = pd.read_csv(path)
        elif fmt == "tsv":
            frame = pd.read_csv(path, sep="\t")
        elif fmt == "parquet":
            frame = pd.read_parquet(path)
        elif fmt == "jsonl":
            frame = _read_json_lines(path)
        else:
            frame = _read_json(path)
    except pd.errors.EmptyDataError:
        raise SchemaError(f"table file {str(path)!r} is empty (no header, no rows)") from None
    except Exception as e:  # noqa: BLE001 - any reader failure becomes one clear message
        raise SchemaError(
            f"cannot read table file {str(path)!r} as {fmt.upper()}: {type(e).__name__}: {e}. "
            f"Check that the file is complete and that its extension matches its content; accepted: {ACCEPTED}"
        ) from e
    return Table(frame, path.resolve().parent)


def fit_schema(
    schema: Schema, frame: pd.DataFrame, ctx: DecodeContext | None = None, *, progress: bool = True
) -> Schema:
    """Let every modality's processor fill its options from the training table (options already set are kept)."""
    ctx = ctx or DecodeContext()
    schema.check_columns(frame)
    token = progress_enabled.set(bool(progress))
    try:
        for spec in schema:
            PROCESSORS.build(spec.kind).fit(spec, frame, ctx)
    finally:
        progress_enabled.reset(token)
    return schema


def decode_table(
    schema: Schema, frame: pd.DataFrame, ctx: DecodeContext | None = None, *, progress: bool = True
) -> dict[str, tuple[dict[str, np.ndarray], np.ndarray]]:
    """{modality: (arrays, present[N])} for every modality of the schema, in schema order."""
    ctx = ctx or DecodeContext()
    schema.check_columns(frame)
    token = progress_enabled.set(bool(progress))
    try:
        out: dict[str, Any] = {}
        for spec in schema:
            arrays, present = PROCESSORS.build(spec.kind).decode(spec, frame, ctx)
            out[spec.name] = ({k: np.ascontiguousarray(a) for k, a in arrays.items()}, np.ascontiguousarray(present))
    finally:
        progress_enabled.reset(token)
    return out
