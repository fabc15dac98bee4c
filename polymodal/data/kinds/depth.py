"""Depth / height-map processor -> ``pixels`` float32 [N, 1, H, W], standardised.

Options: ``size`` as for images, ``mean`` / ``std`` of the training values. A depth map is a single-channel image
file of any bit depth (8/16-bit PNG, 32-bit TIFF...), a ``.npy`` file, ``.npy`` bytes or a 2-D array; values keep
their units before standardisation (no bit-depth scaling).

A standardised value beyond ``_common.MAX_SCALED`` in magnitude (or not finite in float32) is a decode error
(``_common.check_scaled``); the fitted ``mean`` / ``std`` use only values finite in float32. Files go through
``_common.checked_file`` (regular files only, size-bounded) and image files through the image pixel limit.
"""

from __future__ import annotations

import io
import os
from typing import Any

import numpy as np
import pandas as pd

from polymodal.data.schema import ModalitySpec, is_missing
from polymodal.data.kinds._common import (
    CellError,
    check_finite,
    check_not_url,
    check_scaled,
    checked_file,
    fail,
    file_problem,
    float32_finite,
    most_common,
    rows_and_values,
    sample_cells,
    std_floor,
    to_numeric_array,
    track,
)
from polymodal.data.kinds.base import PROCESSORS, DecodeContext, Processor
from polymodal.data.kinds.image import MAX_DEFAULT_SIDE, WIDE_MODES, cap_size, check_size, open_cell, resize_float


def _depth_map(v: Any, ctx: DecodeContext) -> tuple[np.ndarray, str | None]:
    """A depth cell -> raw float32 H x W map (no scaling: the values keep their units), validated finite."""
    file = None
    if isinstance(v, (str, os.PathLike)) and os.fspath(v).strip().lower().endswith(".npy"):
        file = os.fspath(v)
        check_not_url(file)
        path = checked_file(ctx, file)
        try:
            arr = np.load(path, allow_pickle=False)
        except Exception as e:  # noqa: BLE001
            problem = file_problem(path, file, ctx)
            if problem is not None:
                raise problem from None
            raise CellError(f"cannot read the .npy file: {e}", file=file, cause="corrupt file") from e
        arr = to_numeric_array(arr, "depth map")
    elif isinstance(v, (bytes, bytearray, memoryview)) and bytes(v[:6]) == b"\x93NUMPY":
        try:
            arr = np.load(io.BytesIO(bytes(v)), allow_pickle=False)
        except Exception as e:  # noqa: BLE001
            raise CellError(f"cannot read the .npy bytes: {e}", cause="corrupt file") from e
        arr = to_numeric_array(arr, "depth map")
    else:
        obj, file = open_cell(v, ctx, load=True)
        if isinstance(obj, np.ndarray):
            arr = obj
        else:
            try:
                gray = obj if obj.mode in WIDE_MODES or obj.mode == "L" else obj.convert("L")
                arr = np.asarray(gray)
            except Exception as e:  # noqa: BLE001
                raise CellError(f"cannot convert the depth image: {e}", file=file, cause="corrupt image") from e
            finally:
                if obj is not v:
                    obj.close()
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if arr.ndim != 2:
        raise CellError(f"a depth map must be a 2-D (H x W) array, got shape {arr.shape}", file=file)
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise CellError(f"the depth map is empty (shape {arr.shape})", file=file)
    a = arr.astype(np.float32)
    try:
        check_finite(a, "depth map")
    except CellError as e:
        e.file = file
        raise
    return a, file


@PROCESSORS.register("depth")
class DepthProcessor(Processor):
    """Depth/height maps (any-bit-depth images, .npy, 2-D arrays) -> pixels float32 [N, 1, H, W] standardised."""

    kind = "depth"

    def fit(self, spec: ModalitySpec, frame: pd.DataFrame, ctx: DecodeContext) -> None:
        opts = spec.options
        if all(k in opts for k in ("size", "mean", "std")):
            return
        maps = []
        for _row, v in sample_cells(frame, spec.column):
            try:
                maps.append(_depth_map(v, ctx)[0])
            except CellError:
                continue  # reported when the column is decoded
        if "size" not in opts:
            opts["size"] = cap_size(*most_common([m.shape for m in maps])) if maps else [MAX_DEFAULT_SIDE] * 2
        h, w = check_size(spec)
        if "mean" not in opts or "std" not in opts:
            total, total_sq, count = 0.0, 0.0, 0
            for m in maps:
                m = resize_float(m, h, w).astype(np.float64)
                m = m[float32_finite(m)]
                total += float(m.sum())
                total_sq += float((m * m).sum())
                count += m.size
            mean = total / count if count else 0.0
            var = total_sq / count - mean * mean if count else 1.0
            opts.setdefault("mean", float(mean))
            opts.setdefault("std", std_floor(float(np.sqrt(max(var, 0.0)))))

    def decode(
        self, spec: ModalitySpec, frame: pd.DataFrame, ctx: DecodeContext
    ) -> tuple[dict[str, np.ndarray], np.ndarray]:
        h, w = check_size(spec)
        mean = np.float32(spec.options.get("mean", 0.0))
        inv_std = np.float32(1.0 / std_floor(float(spec.options.get("std", 1.0))))
        n, col = len(frame), spec.column
        pixels = np.zeros((n, 1, h, w), dtype=np.float32)
        present = np.zeros(n, dtype=bool)
        n_missing = 0
        for i, row, v in track(rows_and_values(frame, col), n, f"decoding depth maps ({spec.name})", ctx):
            if is_missing(v):
                n_missing += 1
                continue
            try:
                a, file = _depth_map(v, ctx)
                a = resize_float(a, h, w)
                with np.errstate(over="ignore", invalid="ignore"):
                    z = (a - mean) * inv_std
                try:
                    check_scaled(z, a, "depth map")
                except CellError as e:
                    e.file = file
                    raise
            except CellError as e:
                fail(ctx, row, col, e)
                continue
            pixels[i, 0] = z
            present[i] = True
        ctx.report.add_missing(col, n_missing)
        return {"pixels": pixels}, present
