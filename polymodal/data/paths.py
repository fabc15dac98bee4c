"""Which data path a training table takes: decoded once in memory, or streamed per batch (``stream.py``).

``stream="auto"`` streams when the decoded table would exceed ``stream_threshold()``: ``STREAM_BYTES`` (1 GiB)
or an eighth of the machine's memory, whichever is smaller. Why: the in-memory path holds the whole decoded table
for the length of training (and up to a second copy while ``decode_table`` stacks a modality), so 1 GiB decoded
peaks near 2-3 GiB with the model and the training process around it; below that it is the faster path (decoded
once, batches are slices), above it the streaming path's footprint, flat in the table's size, wins and the cost of
decoding every epoch is small next to training on that many rows. The decoded size is measured, not guessed: the
first ``ESTIMATE_ROWS`` rows of the fitting sample are decoded and their arrays' bytes extrapolated to every row.

Schema fitting (vocabularies, normalisation statistics, lengths) sees at most ``FIT_ROWS`` rows: a seeded sample
spread over the table (all rows of a smaller one); the label's classes (or target statistics) always come from
the whole label column, read alone.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import pandas as pd

from polymodal.data.kinds.base import DecodeContext
from polymodal.data.labels import encode_labels
from polymodal.data.schema import Schema, is_missing
from polymodal.data.stream import StreamDataset
from polymodal.data.shards import FrameSource, ParquetSource, RowSource, is_folder, is_shards, read_all
from polymodal.data.table import Table, decode_table, read_table

STREAM_BYTES = 2**30
FIT_ROWS = 50_000
ESTIMATE_ROWS = 32


def total_memory() -> int | None:
    """Physical memory in bytes (None where the platform does not say)."""
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return None


def stream_threshold() -> int:
    """The decoded size above which ``stream="auto"`` streams (see the module docstring)."""
    mem = total_memory()
    return min(STREAM_BYTES, mem // 8) if mem else STREAM_BYTES


def decoded_bytes_per_row(schema: Schema, frame: pd.DataFrame, base_dir) -> float:
    """Bytes of decoded arrays per row, measured on the first ``ESTIMATE_ROWS`` rows of ``frame`` (undecodable
    cells count as missing here: the real decode reports them)."""
    head = frame.iloc[:ESTIMATE_ROWS]
    if not len(head):
        return 0.0
    decoded = decode_table(schema, head, DecodeContext(base_dir=base_dir, on_error="missing"), progress=False)
    total = sum(a.nbytes for arrays, p in decoded.values() for a in arrays.values()) + \
        sum(np.asarray(p).nbytes for _, p in decoded.values())
    return total / len(head)


def choose(mode: str, n_rows: int, bytes_per_row: float | None) -> tuple[bool, str]:
    """(stream?, the sentence saying which path runs and why)."""
    est = None if bytes_per_row is None else bytes_per_row * n_rows
    size = "" if est is None else f"; decoded it would take ~{_mb(est)}"
    if mode == "on":
        return True, f"streaming {n_rows:,} rows, decoded per batch in DataLoader workers (stream='on'{size})"
    if mode == "off" or est is None:
        return False, f"in memory: {n_rows:,} rows decoded once (stream='off'{size})"
    limit = stream_threshold()
    if est > limit:
        return True, (f"streaming {n_rows:,} rows, decoded per batch in DataLoader workers (stream='auto': decoded "
                      f"the table would take ~{_mb(est)}, over the {_mb(limit)} limit)")
    return False, (f"in memory: {n_rows:,} rows decoded once (stream='auto': ~{_mb(est)} decoded, under the "
                   f"{_mb(limit)} limit for streaming)")


def _mb(n: float) -> str:
    return f"{n / 2**30:.2f} GiB" if n >= 2**30 else f"{n / 2**20:.0f} MiB"


def open_training(train: Any, mode: str | None) -> tuple[RowSource | None, Table, bool]:
    """(row source, the table to infer and fit the schema on, whether that table is a sample of the source).

    ``mode`` None or ``"off"``: no source, the table as ``read_table`` reads it (today's in-memory path). A folder
    of Parquet shards, or a Parquet file of more than ``FIT_ROWS`` rows, is read lazily (``ParquetSource``) and
    sampled; any other table is read whole and streams, if it does, from memory (``FrameSource``).
    """
    if mode in (None, "off"):
        return None, (read_all(ParquetSource(train)) if is_folder(train) else read_table(train)), False
    if is_shards(train):
        source = ParquetSource(train)
        if source.n_rows > FIT_ROWS:
            return source, Table(source.sample(FIT_ROWS), source.base_dir), True
        if is_folder(train):
            return source, read_all(source), False
    table = read_table(train)
    return FrameSource(table), table, False


def streamed(source: RowSource, schema: Schema, labels: pd.Series | None, ctx: DecodeContext,
             num_workers: int) -> StreamDataset:
    """The ``StreamDataset`` of a training source: its labelled rows (``labels``: the whole label column, in row
    order; None: every row) with their encoded targets; decode counts go to ``ctx.report``."""
    if labels is None:
        positions, target = np.arange(source.n_rows), None
    else:
        keep = ~labels.map(is_missing).to_numpy(dtype=bool)
        positions, target = np.flatnonzero(keep), encode_labels(schema, labels[keep])
    return StreamDataset(source, schema, positions, target, on_error=ctx.on_error, num_workers=num_workers,
                         report=ctx.report)
