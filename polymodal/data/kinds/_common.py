"""Helpers shared by the per-kind processors: error policy, path resolution, sampling, progress bars.

**Which files a cell may name.** A path cell is resolved against the table's folder (``DecodeContext.base_dir``)
when relative; an absolute path, or one that climbs out with ``../``, is read as well: the table is trusted like
any file the user opens. To confine reads (a server decoding untrusted tables), set ``DecodeContext.root``: every
path must then resolve, symlinks followed, inside that folder, else the cell is a decode error ``outside the
allowed root``. Whatever the root, ``checked_file`` accepts only **regular files** (after following symlinks): a
FIFO, a device such as ``/dev/zero``, a socket or a directory is refused with ``not a regular file`` before
anything opens it (opening a FIFO would block forever), a symlink loop is reported as one, and a file larger
than ``MAX_CELL_BYTES`` (256 MiB; change the module constant to allow more) is refused unread.

**Values too large to use.** Numbers are checked *after* the processor's standardisation, on what the encoder
will see (``check_scaled``): a standardised value must be finite in float32 and at most ``MAX_SCALED`` (1e6)
in magnitude, i.e. within a million training standard deviations of the training mean. scikit-learn's
``check_array`` refuses NaN/inf and values too large for the dtype; polymodal goes further because a finite but
huge float32 (1e25) overflows inside the network (squares in a LayerNorm or an attention softmax) and comes back
as NaN probabilities. This covers tabular numeric features, time series and depth maps (standardised) and
audio waves (as they are). A value beyond the bound is a decode error naming row, column and value, or a missing
value counted as ``bad value`` under ``on_error='missing'``.
"""

from __future__ import annotations

import contextvars
import errno
import math
import os
import stat
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
MAX_CELL_BYTES = 256 * 2**20  # the largest file one cell may name (bytes); larger files are refused unread
MAX_SCALED = 1e6  # the largest |standardised value| a processor hands to an encoder (see the module docstring)
_FLOAT32_MAX = float(np.finfo(np.float32).max)

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
    try:
        p = Path(s).expanduser()
    except RuntimeError:  # '~nouser/...': no such home directory, so the path is taken literally (and is absent)
        p = Path(s)
    return p if p.is_absolute() else ctx.base_dir / p


def _file_kind(mode: int) -> str:
    for test, name in ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "not a plain file"


def checked_file(ctx: DecodeContext, cell: str | os.PathLike) -> Path:
    """A path cell -> the resolved path of a regular file that may be read, else ``CellError``.

    Refuses (before anything opens the file): a path outside ``ctx.root`` when one is set, a symlink loop, an
    absent or empty file, anything that is not a regular file after following symlinks (FIFO, device, socket,
    directory) and a file larger than ``MAX_CELL_BYTES``.
    """
    name = os.fspath(cell)
    path = resolve(ctx, cell)
    if ctx.root is not None:
        try:
            real = Path(os.path.realpath(path))
        except (OSError, RuntimeError, ValueError):
            real = path.absolute()
        if not real.is_relative_to(ctx.root):
            raise CellError(
                f"{name!r} resolves to {str(real)!r}, outside the allowed root {str(ctx.root)!r}",
                file=name,
                hint="only files inside the allowed root folder can be read; move the file there or use a path "
                "relative to the table's folder",
                cause="forbidden path",
            )
    try:
        st = os.stat(path)  # follows symlinks
    except ValueError as e:  # "embedded null byte": no file can have that name
        raise CellError(f"{name!r} is not a valid path: {e}", file=name, cause="absent file") from None
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise CellError(f"{str(path)!r} is a symlink loop", file=name, cause="unreadable file") from None
        problem = file_problem(path, name, ctx)
        raise (problem or CellError(f"cannot access {str(path)!r}: {e}", file=name, cause="unreadable file")) from None
    if not stat.S_ISREG(st.st_mode):
        raise CellError(
            f"{str(path)!r} is not a regular file ({_file_kind(st.st_mode)})",
            file=name,
            hint="point the cell at a regular file; FIFOs, devices, sockets and directories are never read",
            cause="unreadable file",
        )
    if st.st_size == 0:
        raise CellError("file is empty (0 bytes)", file=name, cause="empty file")
    if st.st_size > MAX_CELL_BYTES:
        raise CellError(
            f"the file is {st.st_size:,} bytes, over the limit of {MAX_CELL_BYTES:,} bytes per cell",
            file=name,
            hint="shrink the file, or raise polymodal.data.kinds._common.MAX_CELL_BYTES",
            cause="file too large",
        )
    return path


def check_scaled(z: np.ndarray, raw: np.ndarray, what: str, *, standardised: bool = True) -> None:
    """Refuse standardised values ``z`` that are not finite in float32 or exceed ``MAX_SCALED`` in magnitude.

    ``raw`` holds the same values before scaling (same shape), for the message. ``standardised=False`` for
    values the encoder sees as they are (audio waves).
    """
    with np.errstate(invalid="ignore", over="ignore"):
        bad = ~(np.abs(z) <= MAX_SCALED)
    if bad.any():
        k = int(np.flatnonzero(bad.reshape(-1))[0])
        value = float(raw.reshape(-1)[k])
        scale = (f"{float(z.reshape(-1)[k]):.3g} training standard deviations from the training mean; "
                 if standardised else "")
        raise CellError(
            f"the {what} holds {int(bad.sum())} value(s) too large to use, e.g. {value:.6g} "
            f"({scale}the limit is {MAX_SCALED:g} in magnitude)",
            hint="such a value overflows inside the network; fix it (a unit or parsing error?), clip it, or "
            "pass on_error='missing' (CLI: --on-error missing) to treat it as missing",
        )


def float32_finite(arr: np.ndarray) -> np.ndarray:
    """Elementwise: finite and representable in float32 (what fitting statistics may use)."""
    with np.errstate(invalid="ignore"):
        return np.isfinite(arr) & (np.abs(arr) <= _FLOAT32_MAX)


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
    if np.issubdtype(arr.dtype, np.complexfloating):  # casting to real would drop the imaginary part silently
        raise CellError(f"the {what} holds complex numbers ({arr.dtype}), expected real numbers")
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
