"""The one way to decode a table with a fitted schema (validation, test, new data, embedding, scoring).

``decode(schema, table)`` reads the table (a DataFrame, a file, or a ``Table`` that carries its base folder),
checks the columns, handles the label column by ``labels`` and decodes every modality (or ``names``) once,
under the ``on_error`` policy; it returns the frame actually decoded (rows without a label may be dropped,
counted), the dataset and the decode report.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import pandas as pd

from polymodal.data.dataset import DecodedDataset
from polymodal.data.kinds.base import DecodeContext, DecodeReport
from polymodal.data.labels import drop_missing_labels, encode_labels
from polymodal.data.schema import Schema
from polymodal.data.table import Table, decode_table, read_table
from polymodal.errors import SchemaError

Labels = Literal["require", "ignore", "auto"]


@dataclass
class Decoded:
    frame: pd.DataFrame  # the rows decoded, indexed like the input
    dataset: DecodedDataset
    report: DecodeReport

    def __iter__(self):  # frame, dataset, report = decode(...)
        return iter((self.frame, self.dataset, self.report))


def subschema(schema: Schema, names: Sequence[str] | None) -> Schema:
    """The schema restricted to ``names`` (no label): what an embedding of some modalities decodes."""
    if names is None:
        return schema
    unknown = [m for m in names if m not in schema.names]
    if unknown:
        raise SchemaError(f"unknown modalities {unknown}; this model encodes {schema.names}")
    return Schema({m: schema[m] for m in names}, label=None, task=schema.task)


def decode(
    schema: Schema,
    data: Any,
    *,
    on_error: str = "raise",
    labels: Labels = "auto",
    names: Sequence[str] | None = None,
    progress: bool = True,
    base_dir: str | Path | None = None,
) -> Decoded:
    """Decode ``data`` with the fitted ``schema``.

    ``labels``: ``require`` (the label column must be there; rows without a label are an error, or dropped and
    counted under ``on_error="missing"``), ``ignore``, or ``auto`` (used when the table has the column).
    ``names``: decode only these modalities (the label is then ignored). ``base_dir``: where relative file paths
    resolve (default: the table file's folder, or the current one for a DataFrame).
    """
    table = read_table(data)
    frame, base = table.frame, Path(base_dir) if base_dir is not None else table.base_dir
    if len(frame) == 0:
        raise SchemaError("the table is empty: there are no rows to decode")
    ctx = DecodeContext(base_dir=base, on_error=on_error)
    sub = subschema(schema, names)
    sub.check_columns(frame)
    target = None
    use_labels = names is None and labels != "ignore" and schema.label is not None
    if use_labels and labels == "auto":
        use_labels = schema.label in frame.columns
    if use_labels:
        if schema.label not in frame.columns:
            raise SchemaError(f"label column {schema.label!r} not found; the table has {list(frame.columns)}")
        n_rows = len(frame)
        frame = drop_missing_labels(frame, schema.label, ctx)
        if len(frame) == 0:
            raise SchemaError(f"none of the {n_rows} rows has a label in column {schema.label!r}: there is nothing "
                              "to score; fill in the labels (or call predict, which needs none)")
        target = encode_labels(schema, frame[schema.label])
    decoded = decode_table(sub, frame, ctx, progress=progress)
    return Decoded(frame, DecodedDataset(decoded, target), ctx.report)


__all__ = ["Decoded", "Table", "decode", "subschema"]
