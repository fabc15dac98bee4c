"""A source's schema: each column's kind (``polymodal.data`` inference), whether it names files, and the checks
between sources (same column name, incompatible kinds).

Kinds come from ``data/cells.py: infer_column``, the same inference ``fit`` uses, so a column the catalogue calls
``image`` is one ``fit`` reads as images. A column is a *file column* when its kind is read from files (image,
audio, depth, or a time series stored as ``.npy``) and its cells are paths: those cells are hashed and stored in
the content store. Every other column is *metadata*, kept as its values and queryable with ``--where``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pandas as pd

from polymodal.catalog.errors import CatalogError
from polymodal.catalog.store import RESERVED, RESERVED_PREFIX
from polymodal.data.cells import infer_column, is_missing, sample_column

FILE_KINDS = ("image", "audio", "depth", "timeseries")
STRING_KINDS = ("text", "tabular/categorical")  # both hold strings: one source's text may be another's category


def signature(spec: dict[str, Any]) -> str:
    """``kind`` or ``kind/as`` (``tabular/numeric``), plus ``+file`` for a file column: what must agree."""
    sig = spec["kind"] + (f"/{spec['as']}" if spec.get("as") else "")
    return sig + ("+file" if spec.get("file") else "")


def _first_row(series: pd.Series) -> Any:
    cells = sample_column(series, 1)
    return cells[0][0] if cells else None


def _is_file_column(source: str, col: str, kind: str, series: pd.Series) -> bool:
    if kind not in FILE_KINDS:
        return False
    cells = sample_column(series)
    paths = [(r, v) for r, v in cells if isinstance(v, (str, os.PathLike))]
    if kind == "timeseries":
        return bool(paths) and len(paths) == len(cells)
    others = [(r, v) for r, v in cells if not isinstance(v, (str, os.PathLike))]
    if others:
        r, v = others[0]
        raise CatalogError(
            f"source {source!r}, row {r!r}, column {col!r}: the cell holds {type(v).__name__} data, not a file path; "
            "the catalogue stores and hashes files: write the data to files (e.g. `polymodal datasets export`) and "
            "put their paths in the table"
        )
    return True


def source_schema(source: str, frame: pd.DataFrame, subject: str, base_dir: Path) -> dict[str, dict[str, Any]]:
    """``{column: {"kind", "as", "file", "summary"}}`` for every column but the subject; all-missing columns are
    left out (they carry nothing). Raises ``CatalogError`` for a missing subject column or a reserved name."""
    if subject not in frame.columns:
        raise CatalogError(
            f"source {source!r}: the subject column {subject!r} is not in the table; its columns are "
            f"{[str(c) for c in frame.columns]}. Pass the column that holds the subject id with --subject"
        )
    out: dict[str, dict[str, Any]] = {}
    for col in frame.columns:
        if col == subject:
            continue
        name = str(col)
        if name.startswith(RESERVED_PREFIX) or name in RESERVED:
            raise CatalogError(
                f"source {source!r}, column {name!r}: names starting with {RESERVED_PREFIX!r} and the names "
                f"{', '.join(RESERVED)} are the catalogue's own; rename the column in the table"
            )
        ev = infer_column(name, frame[col], base_dir).evidence
        if ev["kind"] is None:
            continue
        spec = {"kind": ev["kind"], "as": ev.get("as"), "summary": ev["summary"]}
        spec["file"] = _is_file_column(source, name, spec["kind"], frame[col])
        out[name] = spec
    return out


def merge_columns(
    source: str, new: dict[str, dict[str, Any]], known: dict[str, dict[str, Any]], frame: pd.DataFrame
) -> dict[str, dict[str, Any]]:
    """The catalogue's column table with ``source``'s columns added; a column whose kind disagrees with the kind
    another source registered is a ``CatalogError`` naming both sources, the column and a row of the new table."""
    merged = {k: dict(v, sources=list(v["sources"])) for k, v in known.items()}
    for col, spec in new.items():
        old = merged.get(col)
        if old is None:
            merged[col] = {"kind": spec["kind"], "as": spec["as"], "file": spec["file"], "sources": [source]}
            continue
        a, b = signature(old), signature(spec)
        strings = {a, b} <= set(STRING_KINDS)
        if a != b and not strings:
            row = _first_row(frame[col])
            raise CatalogError(
                f"source {source!r}, column {col!r} (e.g. row {row!r}): its cells are {b} ({spec['summary']}), but "
                f"source(s) {', '.join(map(repr, old['sources']))} registered {col!r} as {a}. One column name "
                "means one kind across the catalogue: rename the column in this table, or convert its values"
            )
        if strings and a != b:  # a string column that is free text anywhere is text everywhere
            merged[col].update(kind="text", **{"as": None})
        if source not in merged[col]["sources"]:
            merged[col]["sources"].append(source)
    return merged


def missing_mask(series: pd.Series) -> pd.Series:
    """True where a cell is missing (``data/cells.py``'s one rule: None, NaN, NA, blank string)."""
    return series.map(is_missing).astype(bool)
