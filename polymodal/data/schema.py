"""Schema: which table columns form which modality, inferred from the data and overridable.

A ``ModalitySpec`` names one modality, its kind, the column(s) it reads and its options. Options hold both the
user's preprocessing choices (e.g. ``image_size``) and what is learned from the training table at fit time
(e.g. the text vocabulary, tabular normalisation statistics); they are plain JSON so a saved model never
needs pickle.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from polymodal.data.cells import (  # noqa: F401 - re-exported: processors and callers import them from here
    ARRAY_EXT,
    AUDIO_EXT,
    DEPTH_HINT,
    IMAGE_EXT,
    SAMPLE_CELLS,
    ColumnEvidence,
    _is_missing,
    dense_array,
    infer_column,
    infer_kind,
    is_missing,
    json_numeric_list,
    sample_column,
)
from polymodal.errors import SchemaError

KINDS = ("image", "audio", "text", "tabular", "timeseries", "depth")
GROUPABLE = ("tabular", "timeseries")  # kinds whose modality may read several columns


@dataclass
class ModalitySpec:
    name: str
    kind: str
    columns: list[str]
    options: dict[str, Any] = field(default_factory=dict)
    # column -> how its kind was decided (``infer_column``): sampled / agree / disagree counts, the disagreeing rows,
    # ``as`` ("numeric" / "categorical") for a tabular column, and a one-line ``summary``. Plain JSON, never read by
    # a processor unless it chooses to (a tabular column inferred numeric despite stray strings says ``as: numeric``).
    evidence: dict[str, dict[str, Any]] = field(default_factory=dict)

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


def schema_lines(schema: "Schema") -> list[str]:
    """One compact line per modality: ``name -> kind <- columns`` plus the columns whose sample had disagreements."""
    lines = []
    for s in schema:
        line = f"{s.name} -> {s.kind} <- {', '.join(map(str, s.columns))}"
        notes = []
        for c in s.columns:
            ev = s.evidence.get(c) or {}
            if ev.get("disagree") or ev.get("by_content_rows"):
                notes.append(f"{c}: {ev['summary']}" if len(s.columns) > 1 else ev["summary"])
        if notes:
            line += "  [" + "; ".join(notes) + "]"
        lines.append(line)
    return lines


def infer_schema(
    frame: pd.DataFrame,
    label: str | None,
    *,
    kinds: Mapping[str, str] | None = None,
    groups: Mapping[str, Sequence[str]] | None = None,
    ignore: Sequence[str] = (),
    task: str | None = None,
    base_dir: str | os.PathLike | None = None,
) -> Schema:
    """Map a table's columns to modalities.

    * ``kinds`` overrides the inferred kind per column (``"ignore"`` drops the column);
    * ``groups`` groups columns into named modalities explicitly: ``{"vitals": ["hr", "bp"], "scan": ["ct_path"]}``;
      several ``tabular`` columns form one tabular modality, several ``timeseries`` columns (one series per channel,
      the same length in a row) one multichannel series with the channels in the order given;
    * every other tabular column joins one modality named ``tabular``; every other column is its own modality,
      named after the column.

    Kinds come from the majority of a sample of each column (``infer_column``; file paths without a known extension
    are sniffed relative to ``base_dir``); every spec records per column how its kind was decided in ``evidence``.
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

    evidence: dict[str, dict[str, Any]] = {}

    def kind_of(col: str) -> str | None:
        if kinds.get(col):
            evidence[col] = {"kind": kinds[col], "summary": f"{kinds[col]}: set by kinds="}
            return kinds[col]
        found = infer_column(col, frame[col], base_dir)
        evidence[col] = found.evidence
        return found.kind

    specs: dict[str, ModalitySpec] = {}
    grouped: set[str] = set()
    for name, cols in (groups or {}).items():
        if not str(name) or "." in str(name):
            raise SchemaError(f"modality name {name!r} in groups= must be non-empty and without '.' (it names the "
                              "modality's encoder and its output columns); e.g. {str(name).replace('.', '_')!r}")
        cols = [cols] if isinstance(cols, str) else list(cols)
        for c in cols:
            if c not in frame.columns:
                raise SchemaError(f"modality {name!r} names column {c!r}, which the table lacks")
        col_kinds = {kind_of(c) for c in cols}
        col_kinds.discard(None)
        if len(col_kinds) != 1:
            raise SchemaError(f"modality {name!r} mixes column kinds {sorted(col_kinds)}; group only same-kind columns")
        specs[name] = ModalitySpec(name, col_kinds.pop(), cols, evidence={c: evidence[c] for c in cols})
        grouped.update(cols)

    tabular_cols: list[str] = []
    for col in frame.columns:
        if col in skip or col in grouped:
            continue
        kind = kind_of(col)
        if kind is None:
            continue  # an all-missing column carries no information; reported by the caller via schema diff
        if kind == "tabular":
            tabular_cols.append(col)
        else:
            # a modality name keys the net's modules: '.' (a column such as 'img.path') becomes '_'
            name = _unique_name(str(col).replace(".", "_") or "column", specs)
            specs[name] = ModalitySpec(name, kind, [col], evidence={col: evidence[col]})
    if tabular_cols:
        name = _unique_name("tabular", specs)
        specs[name] = ModalitySpec(name, "tabular", tabular_cols, evidence={c: evidence[c] for c in tabular_cols})
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
