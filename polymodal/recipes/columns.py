"""Which columns become which inputs, beyond what the values say: the kinds the requested encoders imply, the
label kept out of the inputs, and a note when an unlabelled alignment table has a column that looks like a label.
``steps.prepare`` calls these around ``data.schema.infer_schema``."""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from polymodal.config.model import ConfigError, ModelConfig
from polymodal.data.schema import Schema, infer_kind, is_missing
from polymodal.encoders import ENCODERS
from polymodal.errors import SchemaError

LABEL_LIKE_MAX = 20  # at most this many distinct values (and each seen at least twice on average) looks like a label
_NOTED: set[str] = set()  # notes already printed in this process: each is said once


def _group_columns(groups: Mapping[str, Sequence[str] | str] | None) -> set[str]:
    return {c for cols in (groups or {}).values() for c in ([cols] if isinstance(cols, str) else cols)}


def check_label_not_grouped(label: str | None, groups: Mapping[str, Sequence[str] | str] | None) -> None:
    """The label is never an input: a ``groups`` entry that lists it is refused (it would leak the answer)."""
    if label is None:
        return
    for name, cols in (groups or {}).items():
        if label in ([cols] if isinstance(cols, str) else cols):
            raise SchemaError(f"groups[{name!r}] lists the label column {label!r}: the label is never an input. "
                              f"Remove it from the group")


def kinds_from_encoders(
    frame: pd.DataFrame,
    label: str | None,
    cfg: ModelConfig,
    *,
    kinds: Mapping[str, str] | None,
    groups: Mapping[str, Sequence[str] | str] | None,
    ignore: Sequence[str],
) -> tuple[dict[str, str], dict[str, dict[str, Any]]]:
    """``(kinds, inferred)``: the user's ``kinds`` plus, for each ``encoders`` key that names a column of strings
    which would otherwise be tabular (few distinct values) while its encoder reads another kind, that kind
    (``encoders={"name": "minilm"}`` makes ``name`` a text modality). ``inferred`` says what was decided and why,
    for the run's info. The user's ``kinds`` / ``groups`` / ``ignore`` always win."""
    out = dict(kinds or {})
    inferred: dict[str, dict[str, Any]] = {}
    taken = set(out) | set(ignore) | _group_columns(groups) | set(groups or {}) | {label}
    for key, comp in cfg.encoders.items():
        if key in taken or key not in frame.columns or comp.name not in ENCODERS:
            continue
        accepts = ENCODERS.get(comp.name).kind
        if not accepts or "tabular" in accepts or infer_kind(key, frame[key]) != "tabular":
            continue
        first = next((v for v in frame[key] if not is_missing(v)), None)
        kind = accepts[0] if len(accepts) == 1 else ("text" if "text" in accepts else None)
        if not isinstance(first, str) or kind is None:
            continue  # numbers, or an encoder of several kinds: nets.build names the kinds= fix instead
        out[key] = kind
        inferred[key] = {"kind": kind, "instead_of": "tabular", "encoder": comp.name,
                         "why": f"encoders[{key!r}] = {comp.name!r} reads {' / '.join(accepts)}"}
    return out, inferred


def check_encoder_keys(schema: Schema, frame: pd.DataFrame, cfg: ModelConfig) -> None:
    """An ``encoders`` key naming a column that is no input at all (ignored, or without any value) says so;
    the other unknown keys are ``nets.build.encoder_components``' to explain."""
    kinds = {s.kind for s in schema}
    used = {c for s in schema for c in s.columns}
    for key in cfg.encoders:
        if key in schema.names or key in kinds or key == schema.label or key in used or key not in frame.columns:
            continue
        raise ConfigError(f"encoders names column {key!r}, which is not an input: it is ignored (ignore= / "
                          f"kinds={{{key!r}: 'ignore'}}) or has no values. Inputs: {', '.join(schema.names)}")


def label_like_columns(schema: Schema, frame: pd.DataFrame, groups: Mapping[str, Any] | None,
                       kinds: Mapping[str, str] | None) -> dict[str, int]:
    """Columns the inference folded into a tabular input that look like a label: 2 to ``LABEL_LIKE_MAX``
    distinct values, each seen at least twice on average (not the user's own ``groups`` / ``kinds``)."""
    out = {}
    for spec in schema:
        if spec.kind != "tabular" or spec.name in (groups or {}):
            continue
        for col in spec.columns:
            if col in (kinds or {}):
                continue
            values = frame[col][~frame[col].map(is_missing)]
            n = int(values.nunique())
            if 2 <= n <= LABEL_LIKE_MAX and 2 * n <= len(values):
                out[col] = n
    return out


def note_label_like(schema: Schema, frame: pd.DataFrame, groups: Mapping[str, Any] | None,
                    kinds: Mapping[str, str] | None) -> str | None:
    """One stderr line (each distinct note once per process) when an unlabelled alignment would align a
    label-like column as an input: which columns became which input modalities, and how to keep one out."""
    suspects = label_like_columns(schema, frame, groups, kinds)
    if not suspects:
        return None
    inputs = "; ".join(f"{s.name} ({'' if s.name == s.kind else s.kind + ': '}{_columns(s.columns)})" for s in schema)
    cols = ", ".join(f"{c!r} ({n} distinct values)" for c, n in suspects.items())
    first = next(iter(suspects))
    what = "a label" if len(suspects) == 1 else "labels"
    line = (f"polymodal: aligning input modalities {inputs}. {cols} may be {what}: keep a column out of the "
            f"inputs with label={first!r} (kept for class-level evaluation) or "
            f"ignore=[{first!r}] (CLI --label {first} / --ignore {first}), or pick the inputs with use=[...] (--use)")
    if line not in _NOTED:
        _NOTED.add(line)
        print(line, file=sys.stderr)
    return line


def _columns(cols: Sequence[str], k: int = 4) -> str:
    shown = ", ".join(map(str, cols[:k]))
    return shown if len(cols) <= k else f"{shown}, ... ({len(cols)} columns)"
