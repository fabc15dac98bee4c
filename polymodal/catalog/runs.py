"""Cohorts in runs: read the cohort a training table records, and register a run in the catalogue it came from.

A cohort file (``catalog query --out``) carries Parquet key-value metadata under ``polymodal.cohort``: the
catalogue's path and version, the cohort id and its query. ``data/table.py: read_table`` exposes a Parquet file's
``polymodal.*`` metadata as ``frame.attrs["parquet_metadata"]``; ``recipes/steps.py`` puts the cohort into the run
report (``report.json: cohort``; ``cohort_of`` also reads a Parquet path directly, for a table fit samples
or streams) and ``Estimator.save`` calls ``record_run``, which appends the run folder to
the catalogue's ``runs`` (under the writer lock), so ``catalog show --subject`` lists the runs that used a
subject's records. This module imports no DuckDB: training pays nothing for it.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import Any

from polymodal.catalog.errors import CatalogError
from polymodal.catalog.lock import writer_lock
from polymodal.catalog.store import commit, now, read_manifest
from polymodal.data.table import parquet_metadata

COHORT_KEY = "polymodal.cohort"


def cohort_from_attrs(attrs: dict[str, Any]) -> dict[str, Any] | None:
    """The cohort a table read by ``read_table`` records (its ``frame.attrs``), or None."""
    raw = (attrs.get("parquet_metadata") or {}).get(COHORT_KEY)
    if not raw:
        return None
    try:
        cohort = json.loads(raw)
    except (TypeError, ValueError):
        return None
    return cohort if isinstance(cohort, dict) and "cohort" in cohort and "catalog" in cohort else None


def cohort_of(train: Any, frame: Any = None) -> dict[str, Any] | None:
    """The cohort a training table records: from ``frame.attrs`` (``read_table``), else, for a Parquet file path
    (a table read lazily in shards or sampled has no attrs), from the file's own metadata."""
    cohort = cohort_from_attrs(getattr(frame, "attrs", None) or {})
    if cohort is None and isinstance(train, (str, os.PathLike)) and Path(train).suffix.lower() in (".parquet", ".pq"):
        try:
            cohort = cohort_from_attrs({"parquet_metadata": parquet_metadata(train)})
        except (OSError, ValueError):  # pyarrow's errors for an unreadable file are both; read_table reported it
            return None
    return cohort


def record_run(cohort: dict[str, Any], run: str | os.PathLike, *, wait: float = 60.0) -> bool:
    """Register the run folder ``run`` as trained on ``cohort`` in the cohort's catalogue; False (with a warning)
    when that catalogue or its cohort is gone: the run itself records the cohort either way."""
    root = Path(cohort["catalog"])
    try:
        with writer_lock(root / ".lock", wait):
            manifest = read_manifest(root)
            if cohort["cohort"] not in manifest["cohorts"]:
                raise CatalogError(f"the catalogue {str(root)!r} has no cohort {cohort['cohort']!r}")
            entry = {"run": str(Path(run).resolve()), "cohort": cohort["cohort"],
                     "catalog_version": cohort.get("catalog_version"), "at": now()}
            manifest["runs"] = [r for r in manifest["runs"]
                                if (r["run"], r["cohort"]) != (entry["run"], entry["cohort"])] + [entry]
            commit(root, manifest)
        return True
    except (CatalogError, OSError) as e:
        warnings.warn(f"the run records cohort {cohort.get('cohort')!r}, but it could not be registered in its "
                      f"catalogue: {e}", stacklevel=2)
        return False
