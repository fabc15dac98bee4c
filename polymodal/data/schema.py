"""Schema: which table columns form which modality, inferred from the data and overridable.

A ``ModalitySpec`` names one modality, its kind, the column(s) it reads and its options. Options hold both the
user's preprocessing choices (e.g. ``image_size``) and what is learned from the training table at fit time
(e.g. the text vocabulary, tabular normalisation statistics); they are plain JSON so a saved model never
needs pickle.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from polymodal.errors import SchemaError

KINDS = ("image", "audio", "text", "tabular", "timeseries", "depth")
IMAGE_EXT = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")
AUDIO_EXT = (".wav", ".flac", ".ogg", ".mp3", ".aiff", ".aif")
ARRAY_EXT = (".npy",)
DEPTH_HINT = re.compile(r"(depth|height|dsm|elevation|disparity)", re.I)
GROUPABLE = ("tabular", "timeseries")  # kinds whose modality may read several columns


@dataclass
class ModalitySpec:
    name: str
    kind: str
    columns: list[str]
    options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise SchemaError(f"modality {self.name!r}: unknown kind {self.kind!r}; choose one of {', '.join(KINDS)}")
        if not self.columns:
            raise SchemaError(f"modality {self.name!r} has no columns")
        if self.kind not in GROUPABLE and len(self.columns) != 1:
            raise SchemaError(
                f"modality {self.name!r} of kind {self.kind!r} reads exactly one column, got {self.columns}; "
                "only 'tabular' (features) and 'timeseries' (per-channel series, stacked in the order given) group "
                "several columns"
            )

    @property
    def column(self) -> str:
        return self.columns[0]


@dataclass
class Schema:
    """Ordered modalities plus the label column and the task (``classify`` or ``regress``)."""

    modalities: dict[str, ModalitySpec]
    label: str | None = None
    task: str = "classify"
    classes: list[Any] | None = None  # label vocabulary (classification), filled at fit time
    target_stats: dict[str, float] | None = None  # regression: mean/std used to standardise the target

    def __iter__(self):
        return iter(self.modalities.values())

    def __getitem__(self, name: str) -> ModalitySpec:
        return self.modalities[name]

    @property
    def names(self) -> list[str]:
        return list(self.modalities)

    def to_dict(self) -> dict[str, Any]:
        return {
            "modalities": [asdict(s) for s in self.modalities.values()],
            "label": self.label,
            "task": self.task,
            "classes": self.classes,
            "target_stats": self.target_stats,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Schema":
        mods = {m["name"]: ModalitySpec(**m) for m in d["modalities"]}
        return cls(
            mods,
            label=d.get("label"),
            task=d.get("task", "classify"),
            classes=d.get("classes"),
            target_stats=d.get("target_stats"),
        )

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, default=_json_default)

    def check_columns(self, frame: pd.DataFrame) -> None:
        """Fail early, naming every column the schema needs that the table lacks."""
        missing = [c for s in self for c in s.columns if c not in frame.columns]
        if missing:
            raise SchemaError(
                f"the table lacks column(s) {missing} that the model reads; it has {list(frame.columns)}. "
                "Rename the columns or pass a table with the same columns as at training time."
            )


def _json_default(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def _first_values(series: pd.Series, k: int = 50) -> list[Any]:
    vals = []
    for v in series:
        if _is_missing(v):
            continue
        vals.append(v)
        if len(vals) >= k:
            break
    return vals


def _is_missing(v: Any) -> bool:
    if v is None:
        return True
    if isinstance(v, float) and np.isnan(v):
        return True
    if isinstance(v, str) and v.strip() == "":
        return True
    if v is pd.NA or v is pd.NaT:
        return True
    return False


def is_missing(v: Any) -> bool:
    """The one rule for 'this cell is missing': None, NaN, NA, or an empty/blank string."""
    return _is_missing(v)


def _bytes_kind(b: bytes) -> str | None:
    if b[:8] == b"\x89PNG\r\n\x1a\n" or b[:3] == b"\xff\xd8\xff" or b[:6] in (b"GIF87a", b"GIF89a") or b[:2] == b"BM":
        return "image"
    if b[:4] in (b"RIFF", b"fLaC", b"OggS") or b[:3] == b"ID3":
        return "audio"
    return None


def dense_array(v: Any) -> np.ndarray:
    """``np.asarray`` that also stacks nested cells whose inner items are arrays.

    Parquet ``list<list<float>>`` (and fixed-size list) cells come back from pyarrow as object arrays of float
    arrays; nested Python lists and lists of arrays work too. Raises ``ValueError`` naming the inner lengths when
    the nesting is ragged. Objects that are not numbers (None, strings mixed with numbers) stay an object array.
    """
    try:
        arr = np.asarray(v)
    except ValueError as e:
        if "inhomogeneous" in str(e):
            raise ValueError("ragged nested lists (inner lists of different lengths)") from None
        raise
    if arr.dtype != object or arr.ndim == 0 or arr.size == 0:
        return arr
    items = list(arr.ravel())
    first = items[0]
    if isinstance(first, np.ndarray) and first.ndim and first.dtype != object and all(
        isinstance(x, np.ndarray) and x.dtype != object and x.shape == first.shape for x in items
    ):
        return np.concatenate(items).reshape(arr.shape + first.shape)  # the common case, pyarrow's cells
    if not all(isinstance(x, (list, tuple, np.ndarray)) for x in items):
        return arr  # scalars of mixed types: the caller reports the non-numbers
    if not all(isinstance(x, np.ndarray) and x.dtype != object for x in items):
        items = [dense_array(x) for x in items]
    shapes = sorted({x.shape for x in items})
    if len(shapes) > 1:
        raise ValueError(f"ragged nested lists (inner lists of different shapes: {', '.join(map(str, shapes[:4]))})")
    return np.stack(items).reshape(arr.shape + shapes[0])


def infer_kind(column: str, series: pd.Series) -> str | None:
    """Guess a column's modality kind from its values; ``None`` when it cannot be used (all missing)."""
    vals = _first_values(series)
    if not vals:
        return None
    v = vals[0]
    if isinstance(v, (bytes, bytearray)):
        kind = _bytes_kind(bytes(v))
        if kind is None:
            raise SchemaError(
                f"column {column!r} holds bytes that are neither a known image (PNG/JPEG/GIF/BMP) nor audio "
                "(WAV/FLAC/OGG/MP3); pass kinds={column!r: '<kind>'} or drop the column"
            )
        return "depth" if kind == "image" and DEPTH_HINT.search(column) else kind
    if isinstance(v, Mapping) and "array" in v and "sampling_rate" in v:
        return "audio"  # the Hugging Face datasets convention: {"array": wave, "sampling_rate": sr}
    if isinstance(v, (list, tuple, np.ndarray)):
        try:
            arr = dense_array(v)
        except ValueError:
            return "timeseries"  # ragged lists: the decoder names the row and the problem
        if arr.ndim == 3 and arr.shape[-1] in (1, 3, 4) and arr.shape[0] > 4 and arr.shape[1] > 4:
            return "image"  # H x W x C pixel array
        return "depth" if arr.ndim == 2 and DEPTH_HINT.search(column) else "timeseries"
    if isinstance(v, str):
        low = [s.lower() for s in vals if isinstance(s, str)]
        if all(s.endswith(IMAGE_EXT) for s in low):
            return "depth" if DEPTH_HINT.search(column) else "image"
        if all(s.endswith(AUDIO_EXT) for s in low):
            return "audio"
        if all(s.endswith(ARRAY_EXT) for s in low):
            return "depth" if DEPTH_HINT.search(column) else "timeseries"
        # Strings: few distinct short values -> categorical feature; otherwise free text.
        non_missing = series[~series.map(_is_missing)]
        n_unique = non_missing.nunique()
        mean_words = float(np.mean([len(s.split()) for s in vals]))
        if mean_words <= 3 and n_unique <= max(20, 0.05 * len(non_missing)):
            return "tabular"
        return "text"
    if isinstance(v, (bool, int, float, np.number, np.bool_)):
        return "tabular"
    raise SchemaError(
        f"column {column!r} holds values of unsupported type {type(v).__name__} (e.g. {v!r:.60}); "
        f"supported: file paths or bytes (image/audio), strings (text/categorical), numbers, arrays (time series). "
        f"Convert the column, or drop it with ignore=[{column!r}]"
    )


def infer_schema(
    frame: pd.DataFrame,
    label: str | None,
    *,
    kinds: Mapping[str, str] | None = None,
    groups: Mapping[str, Sequence[str]] | None = None,
    ignore: Sequence[str] = (),
    task: str | None = None,
) -> Schema:
    """Map a table's columns to modalities.

    * ``kinds`` overrides the inferred kind per column (``"ignore"`` drops the column);
    * ``groups`` groups columns into named modalities explicitly: ``{"vitals": ["hr", "bp"], "scan": ["ct_path"]}``;
      several ``tabular`` columns form one tabular modality, several ``timeseries`` columns (one series per channel,
      the same length in a row) one multichannel series with the channels in the order given;
    * every other tabular column joins one modality named ``tabular``; every other column is its own modality,
      named after the column.
    """
    if len(frame) == 0:
        raise SchemaError("the table is empty: no rows to learn from")
    if label is not None and label not in frame.columns:
        raise SchemaError(f"label column {label!r} not found; the table has columns {list(frame.columns)}")
    kinds = dict(kinds or {})
    for col in kinds:
        if col not in frame.columns:
            raise SchemaError(f"kinds names column {col!r}, which the table lacks; it has {list(frame.columns)}")
        if kinds[col] not in KINDS + ("ignore",):
            raise SchemaError(f"kinds[{col!r}] = {kinds[col]!r}; choose one of {', '.join(KINDS + ('ignore',))}")
    skip = set(ignore) | ({label} if label else set()) | {c for c, k in kinds.items() if k == "ignore"}

    specs: dict[str, ModalitySpec] = {}
    grouped: set[str] = set()
    for name, cols in (groups or {}).items():
        cols = [cols] if isinstance(cols, str) else list(cols)
        for c in cols:
            if c not in frame.columns:
                raise SchemaError(f"modality {name!r} names column {c!r}, which the table lacks")
        col_kinds = {kinds.get(c) or infer_kind(c, frame[c]) for c in cols}
        col_kinds.discard(None)
        if len(col_kinds) != 1:
            raise SchemaError(f"modality {name!r} mixes column kinds {sorted(col_kinds)}; group only same-kind columns")
        specs[name] = ModalitySpec(name, col_kinds.pop(), cols)
        grouped.update(cols)

    tabular_cols: list[str] = []
    for col in frame.columns:
        if col in skip or col in grouped:
            continue
        kind = kinds.get(col) or infer_kind(col, frame[col])
        if kind is None:
            continue  # an all-missing column carries no information; reported by the caller via schema diff
        if kind == "tabular":
            tabular_cols.append(col)
        else:
            name = _unique_name(str(col), specs)
            specs[name] = ModalitySpec(name, kind, [col])
    if tabular_cols:
        specs[_unique_name("tabular", specs)] = ModalitySpec("tabular", "tabular", tabular_cols)
    if not specs:
        raise SchemaError(
            f"no usable input columns besides the label {label!r}: the table has {list(frame.columns)}"
        )

    if task is None:
        task = "classify" if label is None else infer_task(frame[label])
    if task not in ("classify", "regress"):
        raise SchemaError(f"task must be 'classify' or 'regress', got {task!r}")
    return Schema(specs, label=label, task=task)


def infer_task(labels: pd.Series) -> str:
    """Floats with many distinct values -> regression; anything else -> classification."""
    vals = labels[~labels.map(_is_missing)]
    if pd.api.types.is_float_dtype(vals) and vals.nunique() > max(20, 0.2 * len(vals)):
        return "regress"
    return "classify"


def _unique_name(name: str, taken: Mapping[str, Any]) -> str:
    if name not in taken:
        return name
    i = 2
    while f"{name}_{i}" in taken:
        i += 1
    return f"{name}_{i}"
