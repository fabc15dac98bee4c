"""Cohorts: subjects chosen by modality presence (``has``) and metadata (``where``), exported as a training table.

A cohort has one row per subject (``engine.py: subjects``): for every catalogue column, the value of the
subject's first record that has it, so a subject whose image came from ``scanner_a`` and whose notes and age came
from ``ehr`` is one row with all three. File columns hold the path of the stored file (``files/...`` in the
content store), relative to the cohort file's folder (or absolute, ``paths="absolute"``), under the column's
original name, so ``polymodal fit cohort.parquet`` reads them as it reads any table.

Exporting registers the cohort in the catalogue (``cohorts/<id>.parquet``: for every row and column, the record
the value came from) and writes Parquet key-value metadata ``polymodal.cohort`` into the file: the catalogue's
path and version, the cohort id, the query, the counts (``runs.py`` reads it back when a run trains on it).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from polymodal import __version__
from polymodal.catalog.engine import View, q
from polymodal.catalog.errors import CatalogError
from polymodal.catalog.lock import writer_lock
from polymodal.catalog.runs import COHORT_KEY
from polymodal.catalog.store import commit, now, read_manifest, write_atomic
from polymodal.catalog.where import check_where
from polymodal.errors import unknown_message

SUBJECT_COLUMNS = ["subject", "n_records"]


def _has_condition(view: View, has: list[str]) -> str:
    kinds = view.kinds()
    parts = []
    for item in has:
        cols = kinds.get(item) or ([item] if item in view.columns else None)
        if cols is None:
            raise CatalogError(unknown_message("modality in --has (a kind or a column)", item,
                                               sorted({*kinds, *view.columns})))
        parts.append("(" + " OR ".join(f"{q(c)} IS NOT NULL" for c in cols) + ")")
    return " AND ".join(parts) or "TRUE"


def names(has: str | list[str] | tuple[str, ...] | None) -> list[str]:
    """``"image,text"`` or a list -> ``["image", "text"]``."""
    if has is None:
        return []
    items = has.split(",") if isinstance(has, str) else list(has)
    return [h.strip() for h in items if h and h.strip()]


def select(view: View, has: Any = None, where: str | None = None, *, provenance: bool = False) -> pd.DataFrame:
    """The cohort's rows from an open ``View``: ``subject``, ``n_records`` and every catalogue column (plus the
    ``pm_from_<i>`` provenance columns with ``provenance``), one row per subject, ordered by subject."""
    cond = _has_condition(view, names(has))
    if where is not None:
        sql, _ = check_where(view.con, where, [*SUBJECT_COLUMNS, *view.columns])
        cond = f"{sql} AND {cond}"
    cols = [*SUBJECT_COLUMNS, *view.columns]
    picked = ", ".join(q(c) for c in cols)
    if provenance:
        picked += "".join(f", pm_from_{i}" for i in range(len(view.columns)))
    try:  # `subjects` is stored in subject order, which a filter keeps (DuckDB's preserve_insertion_order)
        return view.con.sql(f"SELECT {picked} FROM subjects WHERE {cond}").to_arrow_table().to_pandas()
    except Exception as e:  # noqa: BLE001 - a type error in the user's condition (age > 'x') is theirs to fix
        if type(e).__module__.startswith(("duckdb", "_duckdb")):
            raise CatalogError(f"--where {where!r} cannot be evaluated: {str(e).splitlines()[0]}") from None
        raise


def count(root: str | os.PathLike, has: Any = None, where: str | None = None) -> int:
    """How many subjects the query selects."""
    with View(root) as view:
        return len(select(view, has, where))


def _training_frame(view: View, rows: pd.DataFrame, out: Path, paths: str, subject: str | None) -> pd.DataFrame:
    blobs = dict(view.con.execute("SELECT sha256, stored FROM blobs").fetchall())
    frame = pd.DataFrame(index=range(len(rows)))
    if subject:
        frame[subject] = rows["subject"].to_numpy()
    base = out.resolve().parent
    for c, spec in view.columns.items():
        values = rows[c]
        if values.isna().all() or c == subject:
            continue  # a column none of the cohort has (or the subject column itself) is left out
        if spec["file"]:
            def path(sha: Any) -> Any:
                if not isinstance(sha, str):
                    return None
                p = view.root / blobs[sha]
                return str(p) if paths == "absolute" else os.path.relpath(p, base)
            values = values.map(path)
        frame[c] = values.to_numpy()
    return frame


def export(root: str | os.PathLike, out: str | os.PathLike, has: Any = None, where: str | None = None, *,
           paths: str = "relative", subject: str | None = None, wait: float = 600.0) -> dict[str, Any]:
    """Write the cohort to ``out`` (Parquet) and register it in the catalogue; returns the cohort record (id,
    query, version, counts). ``subject`` names a column to hold the subject ids (default: none, so that ``fit``
    does not read the id as an input)."""
    out = Path(out)
    if out.suffix.lower() not in (".parquet", ".pq"):
        raise CatalogError(f"cannot write the cohort to {out.name!r}: a cohort is a Parquet file (.parquet), which "
                           "carries the cohort's provenance as metadata")
    if paths not in ("relative", "absolute"):
        raise CatalogError(f"paths must be 'relative' or 'absolute', got {paths!r}")
    has = names(has)
    with View(root) as view:
        rows = select(view, has, where, provenance=True)
        if rows.empty:
            raise CatalogError(f"the query selects no subject (has={has}, where={where!r}); nothing to export")
        frame = _training_frame(view, rows, out, paths, subject)
        prov = [pd.DataFrame({"row": range(len(rows)), "subject": rows["subject"], "column": c,
                              "record": rows[f"pm_from_{i}"]}) for i, c in enumerate(view.columns)]
        prov = pd.concat(prov, ignore_index=True).dropna(subset=["record"])
        root, version = view.root, view.version
    query = {"has": has, "where": where}
    ident = hashlib.sha256(json.dumps([str(root), version, query, rows["subject"].tolist()]).encode()).hexdigest()
    cohort = {"catalog": str(root), "catalog_version": version, "cohort": ident[:16], "query": query,
              "subjects": len(rows), "records": int(prov["record"].nunique()), "created": now(),
              "polymodal_version": __version__}
    rel = f"cohorts/{cohort['cohort']}.parquet"
    with writer_lock(root / ".lock", wait):
        manifest = read_manifest(root)
        (root / "cohorts").mkdir(exist_ok=True)
        prov.insert(0, "cohort", cohort["cohort"])
        pq.write_table(pa.Table.from_pandas(prov, preserve_index=False), root / rel)
        entry = manifest["cohorts"].get(cohort["cohort"], {})
        outs = sorted(set(entry.get("out", [])) | {str(out.resolve())})
        manifest["cohorts"][cohort["cohort"]] = {**cohort, "file": rel, "out": outs}
        commit(root, manifest)
    table = pa.Table.from_pandas(frame, preserve_index=False)
    meta = dict(table.schema.metadata or {})
    meta[COHORT_KEY.encode()] = json.dumps(cohort).encode()
    out.parent.mkdir(parents=True, exist_ok=True)
    sink = pa.BufferOutputStream()
    pq.write_table(table.replace_schema_metadata(meta), sink)
    write_atomic(out, sink.getvalue().to_pybytes())
    return {**cohort, "out": str(out), "columns": list(frame.columns)}
