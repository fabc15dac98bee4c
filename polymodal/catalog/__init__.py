"""A multimodal data catalogue on embedded DuckDB: sources, subjects, provenance, de-duplication, cohorts.

    from polymodal import catalog
    catalog.add("cat", "images.parquet", source="scanner_a", subject="patient_id")
    catalog.export("cat", "cohort.parquet", has="image,text", where="age > 60")
    catalog.subject("cat", "P123")      # every record of P123, with provenance and the runs that used it
    catalog.sources("cat")

The layout and the guarantees are described in ``store.py`` (files, atomic commit), ``files.py`` (hashing,
de-duplication), ``engine.py`` (the DuckDB view), ``where.py`` (the checked condition) and ``docs/catalog.md``.
Names are resolved on first use, so importing the package (as ``recipes`` does) loads neither DuckDB nor pyarrow.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {"add": "ingest", "export": "cohort", "select": "cohort", "count": "cohort", "View": "engine",
         "subject": "show", "sources": "show", "record_run": "runs", "cohort_from_attrs": "runs", "cohort_of": "runs",
         "CatalogError": "errors", "CatalogLockedError": "errors"}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
