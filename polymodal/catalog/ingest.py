"""``add``: register one table as a batch of records of a source, with provenance, hashes and de-duplication.

One ``add`` is one batch. Under the writer lock it reads the committed manifest, checks the table's columns
against the kinds other sources registered, hashes every referenced file (each distinct file once), copies the
contents not yet stored into the content store, writes ``records/``, ``refs/`` and ``blobs/`` Parquet files under
the batch's fresh id, and commits the new manifest by one rename (``store.py``). Killed at any point before that
rename, the catalogue is as it was.
"""

from __future__ import annotations

import os
import re
import secrets
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from polymodal import __version__
from polymodal.catalog.columns import merge_columns, missing_mask, source_schema
from polymodal.catalog.errors import CatalogError
from polymodal.catalog.files import FileInfo, Hasher, remove_unstored, resolve, same_bytes, sha256_file, store_blob
from polymodal.catalog.lock import writer_lock
from polymodal.catalog.store import batch_files, commit, now, read_manifest, remove_orphans
from polymodal.data.table import read_table

ON_ERROR = ("raise", "missing")
SOURCE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
MISSING_HINT = "fix the table, or pass on_error='missing' (CLI: --on-error missing) to record it as missing, counted"


def _subjects(series: pd.Series) -> pd.Series:
    """Subject ids as strings; integral floats (``123.0`` from a CSV with gaps) as ``123``."""
    if pd.api.types.is_float_dtype(series.dtype):
        v = series.to_numpy()
        ok = ~np.isnan(v)
        if np.all(v[ok] == np.round(v[ok])):
            return series.astype("Int64").astype("string").astype(object).where(ok, None)
    miss = missing_mask(series)
    return series.map(lambda v: str(v).strip()).where(~miss, None)


def _known(root: Path, manifest: dict[str, Any]) -> tuple[dict[str, str], dict[tuple[str, int, int], str]]:
    """({sha256: stored path}, hash cache {(resolved, size, mtime_ns): sha256}) from the committed batches."""
    blobs: dict[str, str] = {}
    for f in batch_files(manifest, "blobs"):
        t = pq.read_table(root / f, columns=["sha256", "stored"])
        blobs.update(zip(t.column("sha256").to_pylist(), t.column("stored").to_pylist()))
    cache: dict[tuple[str, int, int], str] = {}
    for f in batch_files(manifest, "refs"):
        t = pq.read_table(root / f, columns=["resolved", "size", "mtime_ns", "sha256"]).to_pandas()
        t = t[t["sha256"].notna()]
        cache.update(zip(zip(t["resolved"], t["size"].astype(int), t["mtime_ns"].astype(int)), t["sha256"]))
    return blobs, cache


def _write(root: Path, rel: str, frame: pd.DataFrame) -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), path)


def _metadata(source: str, col: str, spec: dict[str, Any], series: pd.Series, on_error: str,
              counts: dict[str, int]) -> pd.Series:
    """A metadata column as stored: numbers as numbers (a stray string is an error or, under ``missing``, a
    counted missing value), strings as strings, anything else as read."""
    if spec["kind"] == "tabular" and spec.get("as") == "numeric":
        values = pd.to_numeric(series, errors="coerce")
        bad = values.isna() & ~missing_mask(series)
        if bad.any():
            row = series.index[np.flatnonzero(bad.to_numpy())[0]]
            if on_error == "raise":
                raise CatalogError(f"source {source!r}, row {row!r}, column {col!r}: {series[row]!r} is not a number "
                                   f"(the column is numeric); {MISSING_HINT}")
            counts["bad_values"] += int(bad.sum())
        return values
    if spec["kind"] in ("text", "tabular"):
        miss = missing_mask(series)
        return series.map(str).where(~miss, None)
    return series


def _file_column(source: str, col: str, series: pd.Series, base_dir: Path, hasher: Hasher, on_error: str,
                 counts: dict[str, int]) -> dict[int, FileInfo]:
    """{row position: FileInfo} for the non-missing cells of a file column; a bad file raises or is counted."""
    out: dict[int, FileInfo] = {}
    by_cell: dict[str, FileInfo] = {}
    miss = missing_mask(series).to_numpy()
    for i, cell in enumerate(series.tolist()):
        if miss[i]:
            continue
        key = os.fspath(cell)
        info = by_cell.get(key)
        if info is None:
            info = by_cell[key] = hasher.info(resolve(cell, base_dir))
        if info.status != "ok":
            if on_error == "raise":
                raise CatalogError(f"source {source!r}, row {series.index[i]!r}, column {col!r}, file "
                                   f"{info.resolved!r}: {info.problem}; {MISSING_HINT}")
            counts["missing_files"] += 1
        out[i] = info
    return out


def add(root: str | os.PathLike, table: str | os.PathLike, *, source: str, subject: str, on_error: str = "raise",
        wait: float = 600.0) -> dict[str, Any]:
    """Add the rows of ``table`` (CSV / Parquet / JSONL; relative file paths resolve against its folder) to the
    catalogue at ``root`` (created if absent) as records of ``source``, linked by the ``subject`` column.

    ``on_error``: ``raise`` (default) stops at the first row without a subject, missing or unreadable file or
    non-number in a numeric column, naming source, row, column and file; ``missing`` skips rows without a subject
    and records the other problems as missing values, all counted in the summary. Adding the same table to the
    same source again changes nothing. Returns the summary: records, files, new blobs, duplicates, counts, version.
    """
    t0 = time.perf_counter()
    if on_error not in ON_ERROR:
        raise CatalogError(f"on_error must be one of {', '.join(ON_ERROR)}, got {on_error!r}")
    if not isinstance(source, str) or not SOURCE_NAME.match(source):
        raise CatalogError(f"source name {source!r}: use letters, digits, '_', '.' and '-' (up to 100), e.g. "
                           "'scanner_a'")
    if not isinstance(table, (str, os.PathLike)):
        raise CatalogError("add takes a table file (CSV, Parquet or JSONL): provenance names the file and row")
    frame, base_dir = read_table(table)
    table_file = str(Path(table).expanduser().resolve())
    schema = source_schema(source, frame, subject, base_dir)
    counts = {"skipped_rows": 0, "missing_files": 0, "bad_values": 0}
    subjects = _subjects(frame[subject])
    no_subject = subjects.isna().to_numpy()
    if no_subject.any():
        if on_error == "raise":
            row = frame.index[np.flatnonzero(no_subject)[0]]
            raise CatalogError(f"source {source!r}, row {row!r}, column {subject!r}: the subject id is missing; "
                               f"{MISSING_HINT} (rows without a subject are then skipped)")
        counts["skipped_rows"] = int(no_subject.sum())
    keep = np.flatnonzero(~no_subject)
    table_sha = sha256_file(table_file)
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    with writer_lock(root / ".lock", wait):
        manifest = read_manifest(root, must_exist=False)
        remove_orphans(root, manifest)
        old = manifest["sources"].get(source)
        if old is not None and old["subject"] != subject:
            raise CatalogError(f"source {source!r} links records by column {old['subject']!r}; this add names "
                               f"{subject!r}. Use --subject {old['subject']} or another source name")
        for b in manifest["batches"]:
            if b["source"] == source and b["table_sha256"] == table_sha:
                return {"source": source, "batch": b["id"], "records": 0, "unchanged": True,
                        "version": manifest["version"], "note": f"this table was already added as batch {b['id']}"}
        columns = merge_columns(source, schema, manifest["columns"], frame)
        blobs, cache = _known(root, manifest)
        remove_unstored(root, set(blobs.values()))
        hasher = Hasher(cache)
        index = len(manifest["batches"])
        batch = f"{index:06d}-{secrets.token_hex(4)}"
        added = now()
        rec = pd.DataFrame({
            "pm_record": [f"{batch}:{i}" for i in keep], "pm_subject": subjects.to_numpy()[keep],
            "pm_source": source, "pm_batch": batch, "pm_row": keep.astype(np.int64), "pm_table": table_file,
            "pm_added": added, "pm_version": __version__, "pm_seq": (np.int64(index) << 32) + keep.astype(np.int64),
        })
        refs, new_blobs = [], []
        dup_refs = 0
        for col, spec in schema.items():
            series = frame[col]
            if not spec["file"]:
                rec[col] = _metadata(source, col, spec, series, on_error, counts).to_numpy()[keep]
                continue
            infos = _file_column(source, col, series, base_dir, hasher, on_error, counts)
            shas: list[str | None] = [None] * len(frame)
            for i, info in infos.items():
                if no_subject[i]:
                    continue
                if info.status == "ok":
                    if info.sha256 in blobs:
                        dup_refs += 1
                        if info.resolved in hasher.fresh:  # hashed now: check the bytes before merging
                            same_bytes(root, blobs[info.sha256], info)
                            hasher.fresh.discard(info.resolved)
                    else:
                        row = store_blob(root, info)
                        blobs[info.sha256] = row["stored"]
                        new_blobs.append({**row, "first_record": f"{batch}:{i}"})
                    shas[i] = info.sha256
                refs.append({"pm_record": f"{batch}:{i}", "column": col, "path": os.fspath(series.iat[i]),
                             "resolved": info.resolved, "size": info.size, "mtime_ns": info.mtime_ns,
                             "sha256": info.sha256, "status": info.status, "problem": info.problem})
            rec[col] = [shas[i] for i in keep]
        files = {"records": f"records/{batch}.parquet", "refs": f"refs/{batch}.parquet",
                 "blobs": f"blobs/{batch}.parquet" if new_blobs else None}
        _write(root, files["records"], rec)
        ref_cols = ["pm_record", "column", "path", "resolved", "size", "mtime_ns", "sha256", "status", "problem"]
        _write(root, files["refs"], pd.DataFrame(refs, columns=ref_cols).astype({"size": "Int64", "mtime_ns": "Int64"}))
        if new_blobs:
            _write(root, files["blobs"], pd.DataFrame(new_blobs))
        summary = {"source": source, "batch": batch, "table": table_file, "table_sha256": table_sha,
                   "records": len(keep), "file_refs": len(refs), "new_blobs": len(new_blobs),
                   "duplicate_refs": dup_refs, "files_hashed": hasher.hashed, **counts}
        manifest["batches"].append({"id": batch, "index": index, "source": source, "table": table_file,
                                    "table_sha256": table_sha, "added_at": added, "polymodal_version": __version__,
                                    "on_error": on_error, "records": len(keep), "files": files,
                                    "report": {k: summary[k] for k in ("file_refs", "new_blobs", "duplicate_refs",
                                                                       *counts)}})
        src = old or {"subject": subject, "columns": {}, "records": 0, "batches": []}
        src["columns"].update({c: {k: s[k] for k in ("kind", "as", "file")} for c, s in schema.items()})
        src["records"] += len(keep)
        src["batches"].append(batch)
        manifest["sources"][source] = src
        manifest["columns"] = columns
        manifest["blobs"] += len(new_blobs)
        manifest["version"] += 1
        commit(root, manifest)
    summary.update(version=manifest["version"], seconds=round(time.perf_counter() - t0, 3))
    return summary
