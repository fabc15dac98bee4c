"""Helpers shared by the per-kind processors: error policy, path resolution, sampling, progress bars."""

from __future__ import annotations

import contextvars
import math
import os
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pandas as pd

from polymodal.errors import DecodeError
from polymodal.data.schema import dense_array, is_missing
from polymodal.data.kinds.base import BAD_VALUE, DecodeContext

T = TypeVar("T")

PROGRESS_MIN_ROWS = 200  # below this a progress bar is only noise
FIT_SAMPLE = 256  # how many training cells the file-based kinds look at to infer their options

# Set by ``table.decode_table(..., progress=False)``; processors read it through ``track``.
progress_enabled: contextvars.ContextVar[bool] = contextvars.ContextVar("polymodal_progress", default=True)


class CellError(Exception):
    """Raised inside a processor for one undecodable cell; turned into ``DecodeError`` (or a report entry).

    ``cause`` is the category the decode report counts it under (a singular noun phrase: ``"absent file"``,
    ``"corrupt image"``, ``"truncated audio file"``; default ``"bad value"``).
    """

    def __init__(self, problem: str, file: str | None = None, hint: str | None = None, cause: str = BAD_VALUE):
        super().__init__(problem)
        self.problem, self.file, self.hint, self.cause = problem, file, hint, cause


def fail(ctx: DecodeContext, row: Any, column: str, err: CellError) -> None:
    """Apply the error policy: raise ``DecodeError`` (``on_error='raise'``) or count the value as missing."""
    if ctx.on_error == "raise":
        raise DecodeError(row, column, err.problem, file=err.file, hint=err.hint) from (err.__cause__ or None)
    ctx.report.add_error(row, column, err.problem, err.file, cause=err.cause)


def rows_and_values(frame: pd.DataFrame, column: str) -> Iterator[tuple[int, Any, Any]]:
    """(position, index label, cell) for every row, without per-row pandas overhead."""
    return zip(range(len(frame)), frame.index.tolist(), frame[column].tolist())


def track(items: Iterable[T], total: int, description: str, ctx: DecodeContext | None = None) -> Iterable[T]:
    """A Rich progress bar over rows, shown only for long tables and when progress is enabled."""
    enabled = total >= PROGRESS_MIN_ROWS and progress_enabled.get()
    if not enabled:
        return items
    from rich.console import Console
    from rich.progress import track as rich_track

    return rich_track(items, description=description, total=total, transient=True, console=Console(stderr=True))


def sample_cells(frame: pd.DataFrame, column: str, k: int = FIT_SAMPLE, seed: int = 0) -> list[tuple[Any, Any]]:
    """Up to ``k`` non-missing (row label, cell) pairs, spread over the table with a fixed seed."""
    cells = [(r, v) for r, v in zip(frame.index.tolist(), frame[column].tolist()) if not is_missing(v)]
    if len(cells) <= k:
        return cells
    pick = np.sort(np.random.default_rng(seed).choice(len(cells), size=k, replace=False))
    return [cells[i] for i in pick]


def most_common(values: Sequence[T]) -> T:
    """The most frequent value; ties go to the one seen first."""
    return Counter(values).most_common(1)[0][0]


def resolve(ctx: DecodeContext, cell: str | os.PathLike) -> Path:
    """A cell's file path; relative paths resolve against the table's folder (``ctx.base_dir``)."""
    s = os.fspath(cell).strip()
    if s.startswith("file://"):
        s = s[len("file://") :]
    p = Path(s).expanduser()
    return p if p.is_absolute() else ctx.base_dir / p


def check_not_url(cell: str) -> None:
    low = cell.strip().lower()
    if low.startswith(("http://", "https://", "s3://", "gs://")):
        raise CellError(
            f"{cell!r} is a URL; polymodal reads local files only and never downloads",
            file=cell,
            hint="download the files and put their local paths (absolute, or relative to the table's folder) "
            "in the column",
        )


def file_problem(path: Path, cell: str, ctx: DecodeContext) -> CellError | None:
    """A clear error for the usual file-system problems (missing file, directory, empty file), else None."""
    try:
        if not path.exists():
            return CellError(
                f"file does not exist: looked for {str(path)!r} (relative paths resolve against the table's "
                f"folder {str(ctx.base_dir.resolve())!r})",
                file=cell,
                hint="check the path; make it absolute or relative to the table file's folder, or pass "
                "on_error='missing' (CLI: --on-error missing) to treat missing files as missing values",
                cause="absent file",
            )
        if path.is_dir():
            return CellError(f"{str(path)!r} is a directory, not a file", file=cell, cause="unreadable file")
        if path.stat().st_size == 0:
            return CellError("file is empty (0 bytes)", file=cell, cause="empty file")
    except OSError as e:  # permission problems and the like
        return CellError(f"cannot access {str(path)!r}: {e}", file=cell, cause="unreadable file")
    return None


def describe(v: Any) -> str:
    """'int (e.g. 5)' for error messages."""
    r = repr(v)
    if len(r) > 60:
        r = r[:57] + "..."
    return f"{type(v).__name__} (value {r})"


def to_numeric_array(v: Any, what: str) -> np.ndarray:
    """np.asarray for list/array cells, with a clear error for ragged or non-numeric content.

    Nested cells are stacked (``schema.dense_array``): nested lists, lists of arrays, and the object arrays of
    arrays that pyarrow returns for Parquet ``list<list<...>>`` and fixed-size list columns.
    """
    try:
        arr = dense_array(v)
    except (ValueError, TypeError) as e:
        raise CellError(f"cannot read the {what} as an array: {e}") from e
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
        raise CellError(
            f"the {what} holds values of type {arr.dtype} (ragged lists or non-numbers), expected numbers"
        )
    return arr


def check_finite(arr: np.ndarray, what: str) -> None:
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        n_nan = int(np.isnan(arr).sum())
        n_inf = int(np.isinf(arr).sum())
        raise CellError(
            f"the {what} contains non-finite values ({n_nan} NaN, {n_inf} inf)",
            hint="fill or remove the NaN/inf values (e.g. interpolate), or pass on_error='missing' "
            "(CLI: --on-error missing) to treat such values as missing",
        )


def std_floor(x: float) -> float:
    return float(max(x, 1e-6)) if math.isfinite(x) else 1.0
