"""Row sources for the streaming path: a folder of Parquet shards (or one Parquet file) read lazily, or a frame.

A source numbers its rows by **position**: 0-based over the shards in file-name order, then row groups, then rows
(the *global row*). It knows its row count and its *units* (the row groups; for a frame, blocks of
``FRAME_UNIT_ROWS``) from the Parquet footers alone, and ``read(positions)`` returns just those rows as a
DataFrame indexed by global row, reading only the row groups they fall in and only the columns asked for (pyarrow).
Recently read row groups stay in a small per-process cache bounded by bytes (``CACHE_BYTES``), so the batches of
one shuffle window (``stream.py``) read each row group once. Nothing but the footers is read when a source opens.

A source is pickled into every DataLoader worker: open file handles and the cache are dropped on the way and
reopened lazily there.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from polymodal.data.table import Table, read_table
from polymodal.errors import SchemaError

PARQUET = (".parquet", ".pq")
FRAME_UNIT_ROWS = 4096  # a frame has no row groups: locality units of this many rows
CACHE_BYTES = 64 * 2**20  # per process: recently read row groups (raw cells), least recently used evicted first


class RowSource:
    """Rows by global position: ``n_rows``, ``columns``, ``base_dir`` (where relative file paths resolve),
    ``unit_starts`` (first global row of each unit, plus ``n_rows`` at the end), ``read(positions, columns)``."""

    n_rows: int
    columns: list[str]
    base_dir: Path
    unit_starts: np.ndarray

    def read(self, positions: np.ndarray, columns: Sequence[str] | None = None) -> pd.DataFrame:
        raise NotImplementedError

    def where(self, position: int) -> str:
        """Which file holds a global row (for error messages)."""
        return "the table"

    def reopen(self) -> None:
        """Forget open files and cached reads (a forked worker must not share its parent's file handles)."""

    def identity(self) -> str:
        """A string that changes when the rows do (file names, sizes and modification times; a frame's content)."""
        raise NotImplementedError

    def column(self, name: str) -> pd.Series:
        """One whole column (e.g. the label), indexed by global row: read unit by unit."""
        parts = [self.read(np.arange(a, b), [name])[name] for a, b in zip(self.unit_starts[:-1], self.unit_starts[1:])]
        return pd.concat(parts) if parts else pd.Series([], dtype=object, name=name)

    def sample(self, k: int, seed: int = 0) -> pd.DataFrame:
        """Up to ``k`` rows spread over the table (all of them when it has no more), in row order."""
        if self.n_rows <= k:
            return self.read(np.arange(self.n_rows))
        pick = np.sort(np.random.default_rng(seed).choice(self.n_rows, size=k, replace=False))
        return self.read(pick)

    def chunks(self, rows: int) -> Iterator[pd.DataFrame]:
        """Consecutive frames of ``rows`` rows (the last one shorter), in row order: what inference reads."""
        for a in range(0, self.n_rows, rows):
            yield self.read(np.arange(a, min(a + rows, self.n_rows)))


class FrameSource(RowSource):
    """A DataFrame (or any table ``read_table`` reads) as a row source: positions are ``iloc`` positions and the
    frame's own index labels name the rows (as the in-memory path names them)."""

    def __init__(self, table: Table) -> None:
        self.frame, self.base_dir = table.frame, Path(table.base_dir)
        self.n_rows = len(self.frame)
        self.columns = list(self.frame.columns)
        self.unit_starts = np.append(np.arange(0, self.n_rows, FRAME_UNIT_ROWS), self.n_rows).astype(np.int64)

    def identity(self) -> str:
        import hashlib

        digest = pd.util.hash_pandas_object(self.frame.astype(str), index=True).to_numpy()
        return f"frame:{self.n_rows}:{hashlib.blake2b(digest.tobytes(), digest_size=16).hexdigest()}:{self.columns}"

    def read(self, positions: np.ndarray, columns: Sequence[str] | None = None) -> pd.DataFrame:
        frame = self.frame if columns is None else self.frame[list(columns)]
        return frame.iloc[np.asarray(positions, dtype=np.int64)]


class ParquetSource(RowSource):
    """A folder of Parquet shards (``*.parquet`` / ``*.pq``, sorted by name, not recursive) or one Parquet file.

    Every shard must have the same columns; relative file paths in the cells resolve against the folder (or the
    file's folder). Rows are indexed by global row.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        import pyarrow.parquet as pq

        path = Path(path).expanduser()
        if path.is_dir():
            files = sorted(p for p in path.iterdir() if p.suffix.lower() in PARQUET and p.is_file())
            if not files:
                raise SchemaError(f"folder {str(path)!r} holds no Parquet shards (*.parquet, *.pq); pass a folder of "
                                  "Parquet files or a table file")
            self.base_dir = path.resolve()
        else:
            files = [path]
            self.base_dir = path.resolve().parent
        self.files = [str(f.resolve()) for f in files]
        starts, unit_file, unit_group = [0], [], []
        columns: list[str] | None = None
        for k, f in enumerate(self.files):
            read_table_check(f)
            try:
                meta = pq.ParquetFile(f).metadata
            except Exception as e:  # noqa: BLE001 - any footer problem is one clear message naming the shard
                raise SchemaError(f"cannot read Parquet shard {f!r}: {type(e).__name__}: {e}") from None
            names = [meta.schema.column(i).path.split(".")[0] for i in range(meta.num_columns)]
            names = list(dict.fromkeys(n for n in names if not n.startswith("__index_level_")))
            if columns is None:
                columns = names
            elif set(names) != set(columns):
                raise SchemaError(
                    f"Parquet shard {f!r} has columns {names}, but {self.files[0]!r} has {columns}: every shard of "
                    "a table must have the same columns"
                )
            for g in range(meta.num_row_groups):
                n = meta.row_group(g).num_rows
                if n:
                    starts.append(starts[-1] + n)
                    unit_file.append(k)
                    unit_group.append(g)
        self.columns = columns or []
        self.unit_starts = np.asarray(starts, dtype=np.int64)
        self.unit_file = np.asarray(unit_file, dtype=np.int64)
        self.unit_group = np.asarray(unit_group, dtype=np.int64)
        self.n_rows = int(self.unit_starts[-1])
        self._files: dict[int, Any] = {}
        self._cache: OrderedDict[tuple[int, tuple[str, ...]], Any] = OrderedDict()
        self._cache_bytes = 0

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state.update(_files={}, _cache=OrderedDict(), _cache_bytes=0)  # reopened lazily in the worker
        return state

    def identity(self) -> str:
        stats = [(f, os.stat(f).st_size, os.stat(f).st_mtime_ns) for f in self.files]
        return f"parquet:{self.n_rows}:{stats}"

    def reopen(self) -> None:
        self._files, self._cache, self._cache_bytes = {}, OrderedDict(), 0

    def where(self, position: int) -> str:
        u = int(np.searchsorted(self.unit_starts, position, side="right")) - 1
        return f"Parquet shard {self.files[self.unit_file[u]]!r}, row group {int(self.unit_group[u])}"

    def _unit(self, u: int, columns: tuple[str, ...]):
        key = (u, columns)
        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]
        import pyarrow.parquet as pq

        k = int(self.unit_file[u])
        if k not in self._files:
            self._files[k] = pq.ParquetFile(self.files[k])
        table = self._files[k].read_row_group(int(self.unit_group[u]), columns=list(columns))
        self._cache[key] = table
        self._cache_bytes += table.nbytes
        while self._cache_bytes > CACHE_BYTES and len(self._cache) > 1:
            _, old = self._cache.popitem(last=False)
            self._cache_bytes -= old.nbytes
        return table

    def read(self, positions: np.ndarray, columns: Sequence[str] | None = None) -> pd.DataFrame:
        import pyarrow as pa

        positions = np.asarray(positions, dtype=np.int64)
        cols = tuple(self.columns if columns is None else columns)
        unknown = [c for c in cols if c not in self.columns]
        if unknown:
            raise SchemaError(f"columns {unknown} not found in the Parquet shards; they have {self.columns}")
        if len(positions) and (positions.min() < 0 or positions.max() >= self.n_rows):
            raise IndexError(f"row positions outside 0..{self.n_rows - 1}")
        units = np.searchsorted(self.unit_starts, positions, side="right") - 1
        order = np.argsort(units, kind="stable")
        pieces, at = [], 0
        for u in np.unique(units):
            n = int(np.count_nonzero(units == u))
            local = positions[order[at : at + n]] - self.unit_starts[u]
            pieces.append(self._unit(int(u), cols).take(pa.array(local)))
            at += n
        if not pieces:
            return pd.DataFrame({c: [] for c in cols}, index=pd.Index([], dtype=np.int64))
        frame = pa.concat_tables(pieces).to_pandas()
        frame.index = pd.Index(positions[order], dtype=np.int64)
        inverse = np.empty(len(order), dtype=np.int64)
        inverse[order] = np.arange(len(order))
        return frame.iloc[inverse]  # the rows in the order asked for


def read_table_check(path: str) -> None:
    """The checks ``read_table`` makes on a Parquet file (regular file, ``PAR1`` magic), without reading it."""
    from polymodal.data.table import _sniff, _stat_table

    _stat_table(Path(path))
    _sniff(Path(path), "parquet")


def is_shards(data: Any) -> bool:
    """A path to a folder (of Parquet shards) or to a Parquet file."""
    if not isinstance(data, (str, os.PathLike)):
        return False
    p = Path(data).expanduser()
    return p.is_dir() or (p.is_file() and p.suffix.lower() in PARQUET)


def is_folder(data: Any) -> bool:
    """A path to a folder (of Parquet shards)."""
    return isinstance(data, (str, os.PathLike)) and Path(data).expanduser().is_dir()


def open_source(data: Any) -> RowSource:
    """A ``ParquetSource`` for a folder of shards (read lazily), else a ``FrameSource`` over ``read_table`` (a
    source passes through)."""
    if isinstance(data, RowSource):
        return data
    if is_folder(data):
        return ParquetSource(data)
    return FrameSource(read_table(data))


def read_all(source: RowSource) -> Table:
    """The whole table in memory (the in-memory path on a folder of shards): as ``read_table`` gives it."""
    if isinstance(source, FrameSource):
        return Table(source.frame, source.base_dir)
    return Table(source.read(np.arange(source.n_rows)), source.base_dir)
