"""Time-series processor: [T] / [T, C] arrays or lists, or .npy / .csv files -> ``series`` float32 [N, T, C].

Options (fitted unless the user set them):

* ``length``: the longest training series, capped at 1024; longer series are cropped (the start is kept),
  shorter ones zero-padded after standardisation; ``length`` [N] holds the real steps;
* ``channels``: from the training data (the most common); another channel count later is a decode error;
* ``mean`` / ``std``: per-channel lists over the training values (std floored at 1e-6).

A cell may also be a JSON list string such as ``"[1.0, 2.5, 3.0]"`` (how lists come back from a CSV table).
"""

from __future__ import annotations

import io
import json
import os
from typing import Any

import numpy as np
import pandas as pd

from polymodal.errors import SchemaError
from polymodal.data.schema import ModalitySpec, is_missing
from polymodal.data.kinds._common import (
    CellError,
    check_finite,
    check_not_url,
    describe,
    fail,
    file_problem,
    most_common,
    resolve,
    rows_and_values,
    std_floor,
    to_numeric_array,
)
from polymodal.data.kinds.base import PROCESSORS, DecodeContext, Processor

MAX_DEFAULT_LENGTH = 1024
FIT_MAX_FILES = 2000  # file-based series: look at this many training files at most when fitting


def _read_csv(source: Any) -> np.ndarray:
    """A numeric CSV, with or without a header row; one column per channel."""
    try:
        return np.loadtxt(source, delimiter=",", ndmin=2, dtype=np.float64)
    except ValueError:
        if hasattr(source, "seek"):
            source.seek(0)
        return np.loadtxt(source, delimiter=",", ndmin=2, dtype=np.float64, skiprows=1)


def _series(v: Any, ctx: DecodeContext) -> tuple[np.ndarray, str | None]:
    """A cell -> float64 [T, C] (validated: non-empty, finite) and the file name for errors."""
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
            path = resolve(ctx, s)
            try:
                arr = np.load(path, allow_pickle=False) if low.endswith(".npy") else _read_csv(path)
            except Exception as e:  # noqa: BLE001 - every library error becomes a DecodeError
                problem = file_problem(path, s, ctx)
                if problem is not None:
                    raise problem from None
                raise CellError(f"cannot read the series file: {e}", file=s) from e
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
            raise CellError(f"cannot read the .npy bytes: {e}") from e
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
    """Time series ([T] / [T, C] arrays, .npy/.csv files) -> series float32 [N, T, C] standardised, length int64 [N]."""

    kind = "timeseries"

    def fit(self, spec: ModalitySpec, frame: pd.DataFrame, ctx: DecodeContext) -> None:
        opts = spec.options
        if all(k in opts for k in ("length", "channels", "mean", "std")):
            return
        arrays = []
        n_files = 0
        for v in frame[spec.column].tolist():
            if is_missing(v):
                continue
            is_file = isinstance(v, (str, os.PathLike)) and not os.fspath(v).strip().startswith("[")
            if is_file:
                if n_files >= FIT_MAX_FILES:
                    continue
                n_files += 1
            try:
                arrays.append(_series(v, ctx)[0])
            except CellError:
                continue  # reported when the column is decoded
        if "channels" not in opts:
            opts["channels"] = int(most_common([a.shape[1] for a in arrays])) if arrays else 1
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
        mean = np.asarray(spec.options.get("mean", [0.0] * channels), dtype=np.float64).reshape(-1)
        std = np.asarray(spec.options.get("std", [1.0] * channels), dtype=np.float64).reshape(-1)
        if mean.shape != (channels,) or std.shape != (channels,):
            raise SchemaError(
                f"modality {spec.name!r}: options mean/std must list one value per channel ({channels}), "
                f"got {spec.options.get('mean')!r} / {spec.options.get('std')!r}"
            )
        std = np.maximum(std, 1e-6)
        n, col = len(frame), spec.column
        series = np.zeros((n, length, channels), dtype=np.float32)
        lengths = np.zeros(n, dtype=np.int64)
        present = np.zeros(n, dtype=bool)
        n_missing = 0
        for i, row, v in rows_and_values(frame, col):
            if is_missing(v):
                n_missing += 1
                continue
            try:
                arr, file = _series(v, ctx)
                if arr.shape[1] != channels:
                    hint = None
                    if arr.shape[0] == channels:
                        hint = (
                            f"the series looks channel-first ({arr.shape[0]} x {arr.shape[1]}); "
                            "transpose it to [T, C]"
                        )
                    raise CellError(
                        f"expected {channels} channel(s) (as in the training data), got {arr.shape[1]} "
                        f"(series shape {arr.shape})",
                        file=file,
                        hint=hint,
                    )
            except CellError as e:
                fail(ctx, row, col, e)
                continue
            k = min(arr.shape[0], length)
            series[i, :k] = (arr[:k] - mean) / std
            lengths[i] = k
            present[i] = True
        ctx.report.add_missing(col, n_missing)
        return {"series": series, "length": lengths}, present
