"""The label column: missing labels (error or counted drop), class vocabulary, target encoding."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import torch

from polymodal.errors import DecodeError
from polymodal.data.kinds.base import DecodeContext
from polymodal.data.schema import Schema, is_missing


def _plain(v: Any) -> Any:
    """numpy scalars -> Python; integral floats -> int (CSV and Parquet disagree on 3 vs 3.0)."""
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, float) and v.is_integer():
        return int(v)
    return v


def drop_missing_labels(frame: pd.DataFrame, label: str, ctx: DecodeContext) -> pd.DataFrame:
    """Rows without a label cannot be learned from or scored: error (default) or drop them, counted."""
    missing = frame[label].map(is_missing)
    if not missing.any():
        return frame
    rows = list(frame.index[missing])
    if ctx.on_error == "raise":
        raise DecodeError(
            rows[0],
            label,
            f"the label is missing ({len(rows)} row(s) without a label: {rows[:10]}{' ...' if len(rows) > 10 else ''})",
            hint="fill in the labels, remove those rows, or pass on_error='missing' to drop them (they are counted)",
        )
    ctx.report.dropped_rows["missing label"] = ctx.report.dropped_rows.get("missing label", 0) + len(rows)
    return frame[~missing]


def fit_labels(schema: Schema, labels: pd.Series) -> None:
    """Learn the class vocabulary (classification) or the target's mean/std (regression)."""
    if schema.task == "classify":
        values = sorted({_plain(v) for v in labels}, key=lambda v: (str(type(v)), v))
        if len(values) < 2:
            raise DecodeError(
                labels.index[0], schema.label, f"only one class ({values[0]!r}) in the training labels",
                hint="a classifier needs at least two classes; check the label column",
            )
        schema.classes = values
    else:
        y = pd.to_numeric(labels, errors="coerce").to_numpy(dtype=float)
        if not np.isfinite(y).all():
            bad = labels.index[~np.isfinite(y)][0]
            raise DecodeError(bad, schema.label, "a regression target is not a finite number")
        schema.target_stats = {"mean": float(y.mean()), "std": float(max(y.std(), 1e-8))}


def encode_labels(schema: Schema, labels: pd.Series) -> np.ndarray:
    """Class indices (int64) or standardised targets (float32); unseen classes name the row."""
    if schema.task == "classify":
        lookup = {v: i for i, v in enumerate(schema.classes or [])}
        out = np.empty(len(labels), dtype=np.int64)
        for j, (row, v) in enumerate(zip(labels.index, labels.tolist())):
            key = _plain(v)
            if key not in lookup:
                raise DecodeError(
                    row, schema.label, f"label {v!r} was not seen in training (known classes: {schema.classes})",
                    hint="remove rows with new classes, or retrain with them",
                )
            out[j] = lookup[key]
        return out
    stats = schema.target_stats or {"mean": 0.0, "std": 1.0}
    y = pd.to_numeric(labels, errors="coerce").to_numpy(dtype=np.float32)
    if not np.isfinite(y).all():
        bad = labels.index[~np.isfinite(y)][0]
        raise DecodeError(bad, schema.label, "a regression target is not a finite number")
    return ((y - stats["mean"]) / stats["std"]).astype(np.float32)


def unscale_target(schema: Schema, values: Any) -> Any:
    """A standardised regression target (or prediction) back on the label's own scale, flattened to ``[N]``."""
    stats = schema.target_stats or {"mean": 0.0, "std": 1.0}
    flat = values.float().reshape(-1) if isinstance(values, torch.Tensor) else np.asarray(values).reshape(-1)
    return flat * stats["std"] + stats["mean"]


def decode_predictions(schema: Schema, outputs: np.ndarray) -> list[Any]:
    if schema.task == "classify":
        return [schema.classes[i] for i in outputs.argmax(-1)]
    return unscale_target(schema, outputs).tolist()
