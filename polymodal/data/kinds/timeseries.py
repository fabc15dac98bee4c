"""Time-series processor: arrays, nested lists, JSON lists or .npy / .csv files -> ``series`` float32 [N, T, C].

**Layout.** A cell is time-major, ``[T]`` or ``[T, C]``: the rows (the outer list) are time steps and the columns
(the inner lists) are channels, the natural way to write a series with pandas or pyarrow (one list of readings per
step). A cell may be a numpy array, a nested Python list, or what pyarrow returns for a Parquet ``list<list<float>>``
or fixed-size list column (an object array of float arrays); lengths may differ between rows. A CSV file holds one
column per channel.

Options (fitted unless the user set them):

* ``layout``: ``"time_major"`` (the default) or ``"channels_first"`` (``[C, T]`` cells, transposed when read).
  When it is not set, fitting refuses a column that looks channel-first (every training series has the same
  number of rows and more columns than rows, such as ``(3, 500)`` in every row) with a ``SchemaError`` saying how to
  transpose it, and otherwise records ``"time_major"``;
* ``length``: the longest training series, capped at 1024; longer series are cropped (the start is kept),
  shorter ones zero-padded after standardisation; ``length`` [N] holds the real steps;
* ``channels``: from the training data (the most common); another channel count later is a decode error;
* ``mean`` / ``std``: per-channel lists over the training values (std floored at 1e-6).

A cell may also be a JSON list string such as ``"[1.0, 2.5, 3.0]"`` (how lists come back from a CSV table).

**Values too large to use.** A standardised value ``(x - mean) / std`` beyond ``_common.MAX_SCALED`` (1e6) in
magnitude, or not finite in float32, makes the row's series a decode error naming the value (missing, counted as
``bad value``, under ``on_error='missing'``); training series holding values not finite in float32 are left out
of the fitted statistics. Series files go through ``_common.checked_file`` (regular files only, size-bounded).

**Several columns** (``groups={"motion": ["ax", "ay", "az"]}``): each column holds its channel(s) of the series
(``[T]``, or ``[T, Ck]`` for several) and a row's series stacks them in the order given, so they must have the same
length within a row. A row empty in every column is missing; a row empty in only some is a decode error.
"""

from __future__ import annotations

import io
import json
import os
import warnings
from typing import Any

import numpy as np
import pandas as pd

from polymodal.errors import SchemaError
from polymodal.data.schema import ModalitySpec, is_missing
from polymodal.data.kinds._common import (
    MAX_SCALED,
    CellError,
    check_finite,
    check_not_url,
    check_scaled,
    checked_file,
    describe,
    fail,
    file_problem,
    float32_finite,
    most_common,
    std_floor,
    to_numeric_array,
)
from polymodal.data.kinds.base import PROCESSORS, DecodeContext, Processor

LAYOUTS = ("time_major", "channels_first")
MAX_DEFAULT_LENGTH = 1024
FIT_MAX_FILES = 2000  # file-based series: look at this many training files at most when fitting


def _read_csv(source: Any, file: str | None = None) -> np.ndarray:
    """A numeric CSV, with or without a header row; one column per channel."""
    try:
        return np.loadtxt(source, delimiter=",", ndmin=2, dtype=np.float64)
    except ValueError as first:
        if hasattr(source, "seek"):
            source.seek(0)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)  # "input contained no data": reported below
                arr = np.loadtxt(source, delimiter=",", ndmin=2, dtype=np.float64, skiprows=1)
        except ValueError as e:
            raise CellError(
                f"the CSV series file holds values that are not numbers ({e})", file=file, cause="corrupt file"
            ) from None
        if arr.size == 0:  # one line only, and it is not numbers (a header with no data, or text)
            raise CellError(
                f"the CSV series file holds no numbers: its only line is not numbers ({first})",
                file=file,
                cause="corrupt file",
            )
        return arr


def _series(v: Any, ctx: DecodeContext) -> tuple[np.ndarray, str | None]:
    """A cell -> float64 2-D array as stored ([T] becomes [T, 1]; validated: non-empty, finite) and its file."""
    file = None
    if isinstance(v, (str, os.PathLike)):
        s = os.fspath(v).strip()
        if s.startswith("["):
            try:
                arr = to_numeric_array(json.loads(s), "series")
            except json.JSONDecodeError as e:
                raise CellError(f"cannot parse the cell as a JSON list of numbers: {e}") from e
        else:
            file = s
            check_not_url(s)
            low = s.lower()
            if not low.endswith((".npy", ".csv")):
                raise CellError(
                    "expected a [T] or [T, C] array, a JSON list, or a path to a .npy/.csv file, "
                    f"got the string {s!r:.80}"
                )
            path = checked_file(ctx, s)  # a regular file, not too large, inside ctx.root
            try:
                arr = np.load(path, allow_pickle=False) if low.endswith(".npy") else _read_csv(path, s)
            except CellError:
                raise
            except Exception as e:  # noqa: BLE001 - every library error becomes a DecodeError
                problem = file_problem(path, s, ctx)
                if problem is not None:
                    raise problem from None
                raise CellError(f"cannot read the series file: {e}", file=s, cause="corrupt file") from e
            try:
                arr = to_numeric_array(arr, "series file")
            except CellError as e:
                e.file = s
                raise
    elif isinstance(v, (np.ndarray, list, tuple)):
        arr = to_numeric_array(v, "series")
    elif isinstance(v, (bytes, bytearray)) and bytes(v[:6]) == b"\x93NUMPY":
        try:
            arr = to_numeric_array(np.load(io.BytesIO(bytes(v)), allow_pickle=False), "series")
        except CellError:
            raise
        except Exception as e:  # noqa: BLE001
            raise CellError(f"cannot read the .npy bytes: {e}", cause="corrupt file") from e
    else:
        raise CellError(f"expected a [T] or [T, C] array/list or a path to a .npy/.csv file, got {describe(v)}")
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2:
        raise CellError(f"a series must be 1-D [T] or 2-D [T, C], got shape {arr.shape}", file=file)
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise CellError(f"the series is empty (shape {arr.shape})", file=file)
    arr = arr.astype(np.float64, copy=False)
    try:
        check_finite(arr, "series")
    except CellError as e:
        e.file = file
        raise
    return arr, file


class _ColumnError(Exception):
    """A ``CellError`` in one column of a (possibly grouped) series row."""

    def __init__(self, column: str, err: CellError):
        super().__init__(err.problem)
        self.column, self.err = column, err


def _row(
    columns: list[str], cells: tuple[Any, ...], ctx: DecodeContext, layout: str
) -> tuple[np.ndarray, list[tuple[int, int]], str | None]:
    """One row's cells -> (float64 [T, C] series, the cells' shapes as stored, a file for errors).

    Raises ``_ColumnError`` naming the column at fault.
    """
    parts, shapes, file = [], [], None
    for col, v in zip(columns, cells):
        try:
            arr, f = _series(v, ctx)
        except CellError as e:
            raise _ColumnError(col, e) from (e.__cause__ or None)
        shapes.append(arr.shape)
        parts.append(arr.T if layout == "channels_first" else arr)
        file = file or f
    if len(parts) == 1:
        return parts[0], shapes, file
    lengths = [a.shape[0] for a in parts]
    if len(set(lengths)) > 1:
        odd = next(c for c, n in zip(columns, lengths) if n != lengths[0])
        raise _ColumnError(odd, CellError(
            "the grouped channels have different lengths in this row: "
            + ", ".join(f"{c}={n}" for c, n in zip(columns, lengths)),
            hint="crop or pad each row's per-channel series to one length (a grouped series has one time axis)",
        ))
    return np.concatenate(parts, axis=1), shapes, file


def _layout(spec: ModalitySpec) -> str:
    layout = spec.options.get("layout", "time_major")
    if layout not in LAYOUTS:
        raise SchemaError(
            f"modality {spec.name!r}: option 'layout' must be one of {', '.join(map(repr, LAYOUTS))}, got {layout!r}"
        )
    return layout


def _check_time_major(spec: ModalitySpec, shapes: list[tuple[int, int]]) -> None:
    """Refuse a column whose every series has the same number of rows and more columns than rows."""
    shapes = [sh for sh in shapes if sh[1] > 1]  # 1-D cells say nothing about the layout
    if not shapes or len({sh[0] for sh in shapes}) != 1 or not all(a < b for a, b in shapes):
        return
    a, b = shapes[0]
    col = spec.columns[0]
    raise SchemaError(
        f"modality {spec.name!r}: every training series in column(s) {spec.columns} has {a} rows and more columns "
        f"than rows (e.g. shape ({a}, {b})), so it looks channel-first ({a} channels over {b} steps), but a series "
        f"is read time-major, [T, C]: rows = time steps, columns = channels. Transpose the cells to [T, C], e.g. "
        f"df[{col!r}] = df[{col!r}].map(lambda a: np.stack(list(a)).T, na_action='ignore'), or, "
        "with a hand-built Schema, set the modality's option layout='channels_first' (layout='time_major' keeps "
        "them as they are)"
    )


def _int_option(spec: ModalitySpec, key: str) -> int:
    try:
        value = int(spec.options[key])
        assert value >= 1
    except (KeyError, TypeError, ValueError, AssertionError):
        raise SchemaError(
            f"modality {spec.name!r}: option {key!r} must be a positive int, got {spec.options.get(key)!r}; "
            "fit the schema on a training table first"
        ) from None
    return value


@PROCESSORS.register("timeseries")
class TimeseriesProcessor(Processor):
    """Time series ([T] / [T, C] arrays or nested lists, .npy/.csv files; one column or several stacked as channels)
    -> series float32 [N, T, C] standardised, length int64 [N]."""

    kind = "timeseries"

    def fit(self, spec: ModalitySpec, frame: pd.DataFrame, ctx: DecodeContext) -> None:
        opts = spec.options
        if all(k in opts for k in ("length", "channels", "mean", "std")):
            return
        layout = _layout(spec)
        arrays, shapes = [], []
        n_files = 0
        for cells in zip(*(frame[c].tolist() for c in spec.columns)):
            if any(is_missing(v) for v in cells):
                continue
            is_file = any(isinstance(v, (str, os.PathLike)) and not os.fspath(v).strip().startswith("[") for v in cells)
            if is_file:
                if n_files >= FIT_MAX_FILES:
                    continue
                n_files += 1
            try:
                arr, cell_shapes, _ = _row(spec.columns, cells, ctx, layout)
            except _ColumnError:
                continue  # reported when the column is decoded
            if not float32_finite(arr).all():
                continue  # refused when the column is decoded; it would swamp the statistics
            arrays.append(arr)
            shapes.extend(cell_shapes)
        if "layout" not in opts:
            _check_time_major(spec, shapes)
            opts["layout"] = layout
        if "channels" not in opts:
            opts["channels"] = int(most_common([a.shape[1] for a in arrays])) if arrays else len(spec.columns)
        channels = _int_option(spec, "channels")
        arrays = [a for a in arrays if a.shape[1] == channels]
        if "length" not in opts:
            opts["length"] = int(min(max((a.shape[0] for a in arrays), default=1), MAX_DEFAULT_LENGTH))
        if "mean" not in opts or "std" not in opts:
            if arrays:
                allv = np.concatenate(arrays, axis=0)
                mean, std = allv.mean(axis=0), allv.std(axis=0)
            else:
                mean, std = np.zeros(channels), np.ones(channels)
            opts.setdefault("mean", [float(m) for m in mean])
            opts.setdefault("std", [std_floor(float(s)) for s in std])

    def decode(
        self, spec: ModalitySpec, frame: pd.DataFrame, ctx: DecodeContext
    ) -> tuple[dict[str, np.ndarray], np.ndarray]:
        length, channels = _int_option(spec, "length"), _int_option(spec, "channels")
        layout = _layout(spec)
        mean = np.asarray(spec.options.get("mean", [0.0] * channels), dtype=np.float64).reshape(-1)
        std = np.asarray(spec.options.get("std", [1.0] * channels), dtype=np.float64).reshape(-1)
        if mean.shape != (channels,) or std.shape != (channels,):
            raise SchemaError(
                f"modality {spec.name!r}: options mean/std must list one value per channel ({channels}), "
                f"got {spec.options.get('mean')!r} / {spec.options.get('std')!r}"
            )
        std = np.maximum(std, 1e-6)
        n, cols = len(frame), list(spec.columns)
        series = np.zeros((n, length, channels), dtype=np.float32)
        lengths = np.zeros(n, dtype=np.int64)
        present = np.zeros(n, dtype=bool)
        n_missing = 0
        rows = zip(range(n), frame.index.tolist(), *(frame[c].tolist() for c in cols))
        for i, row, *cells in rows:
            empty = [c for c, v in zip(cols, cells) if is_missing(v)]
            if len(empty) == len(cols):
                n_missing += 1
                continue
            try:
                if empty:
                    held = [c for c in cols if c not in empty]
                    raise _ColumnError(empty[0], CellError(
                        f"the grouped series is empty in column(s) {empty} but not in {held}",
                        hint="a grouped series needs every channel in a row: fill the empty channels, or empty "
                        "the row in every column of the group to mark the series missing",
                    ))
                arr, shapes, file = _row(cols, tuple(cells), ctx, layout)
                if arr.shape[1] != channels:
                    raise _ColumnError(cols[0], _channel_error(arr, channels, layout, file))
                k = min(arr.shape[0], length)
                with np.errstate(over="ignore", invalid="ignore"):
                    z = (arr[:k] - mean) / std
                try:
                    check_scaled(z, arr[:k], "series")
                except CellError as e:
                    e.file = file
                    raise _ColumnError(_culprit(cols, shapes, layout, z), e) from None
            except _ColumnError as e:
                fail(ctx, row, e.column, e.err)
                continue
            series[i, :k] = z
            lengths[i] = k
            present[i] = True
        for c in cols:
            ctx.report.add_missing(c, n_missing)
        return {"series": series, "length": lengths}, present


def _culprit(cols: list[str], shapes: list[tuple[int, int]], layout: str, z: np.ndarray) -> str:
    """The column holding the first too-large standardised value (a grouped series stacks its columns' channels)."""
    if len(cols) == 1:
        return cols[0]
    with np.errstate(invalid="ignore"):
        c = int(np.argwhere(~(np.abs(z) <= MAX_SCALED))[0, 1])
    ends = np.cumsum([sh[0] if layout == "channels_first" else sh[1] for sh in shapes])
    return cols[min(int(np.searchsorted(ends, c, side="right")), len(cols) - 1)]


def _channel_error(arr: np.ndarray, channels: int, layout: str, file: str | None) -> CellError:
    hint = None
    if arr.shape[0] == channels:
        flip = "channels_first" if layout == "time_major" else "time_major"
        hint = (
            f"the series looks transposed ({arr.shape[0]} x {arr.shape[1]} read as [T, C]); a series is "
            f"time-major, rows = time steps and columns = channels: transpose it to [T, C], or set the "
            f"modality's option layout={flip!r}"
        )
    return CellError(
        f"expected {channels} channel(s) (as in the training data), got {arr.shape[1]} (series shape {arr.shape})",
        file=file,
        hint=hint,
    )
