"""Decoding for inference in chunks: ``predict``, ``evaluate`` and ``embed`` decode ``CHUNK_ROWS`` rows at a time,
so their memory is bounded by a chunk, not the table (a decoded 10-second clip at 16 kHz is 640 KB: 100,000 rows
would need 64 GB at once).

``decode_chunks`` reads the table as ``decode`` does (a DataFrame, a table file, a ``Table``), or lazily, row
group by row group, from a folder of Parquet shards or any ``RowSource`` (``shards.py``, rows indexed by global
row), and yields one ``Decoded`` per chunk, each decoded by ``decode`` itself: the outputs are those of decoding the
whole table at once.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from polymodal.data.decode import Decoded, Labels, decode
from polymodal.data.kinds.base import DecodeReport
from polymodal.data.schema import Schema, is_missing
from polymodal.data.shards import open_source
from polymodal.data.table import Table
from polymodal.errors import SchemaError

CHUNK_ROWS = 1024


def decode_chunks(
    schema: Schema,
    data: Any,
    *,
    chunk_rows: int | None = None,
    on_error: str = "raise",
    labels: Labels = "auto",
    names: Sequence[str] | None = None,
    base_dir: str | Path | None = None,
    report: DecodeReport | None = None,
) -> Iterator[Decoded]:
    """``decode(schema, chunk, ...)`` for consecutive chunks of ``chunk_rows`` rows (default ``CHUNK_ROWS``).

    Every chunk's report is merged into ``report`` (a chunk whose rows all lack a label, under
    ``on_error="missing"``, is counted there and skipped). Raises what ``decode`` raises: an empty table, no
    labelled row at all, a bad cell."""
    source = open_source(data)
    base = Path(base_dir) if base_dir is not None else source.base_dir
    if source.n_rows == 0:
        raise SchemaError("the table is empty: there are no rows to decode")
    report = report if report is not None else DecodeReport()
    use_labels = names is None and labels != "ignore" and schema.label is not None and schema.label in source.columns
    decoded_any = False
    for frame in source.chunks(chunk_rows or CHUNK_ROWS):
        if use_labels and on_error == "missing" and frame[schema.label].map(is_missing).all():
            report.dropped_rows["missing label"] = report.dropped_rows.get("missing label", 0) + len(frame)
            continue  # ``decode`` would call a chunk without labels an empty table
        chunk = decode(schema, Table(frame, base), on_error=on_error, labels=labels, names=names, progress=False)
        report.merge(chunk.report)
        decoded_any = True
        yield chunk
    if not decoded_any:
        raise SchemaError(f"none of the {source.n_rows} rows has a label in column {schema.label!r}: there is "
                          "nothing to score; fill in the labels (or call predict, which needs none)")


