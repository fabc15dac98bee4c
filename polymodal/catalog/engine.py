"""The catalogue as DuckDB tables: ``records``, ``refs``, ``blobs`` and the per-subject view ``subjects``.

``View(root)`` reads the committed manifest once and loads the Parquet files it names into an in-memory DuckDB
connection (``read_parquet(..., union_by_name=true)``: sources with different columns line up by name, absent
columns are NULL). Then it switches DuckDB's file access off and locks the configuration: queries, the user's
``--where`` included, see a consistent snapshot (one manifest version, whatever a concurrent ``add`` commits) and
can reach nothing outside it.

``subjects`` has one row per subject: ``subject``, ``n_records``, ``sources`` (the list), and per catalogue column
the value of the subject's first record (in the order records were added) where it is not missing; for a file
column that value is the content hash (NULL where the file was missing). ``pm_from_<i>`` names the record each
value came from (its provenance, used by a cohort). ``cohort_records`` lists, per exported cohort, the record
behind each value of each row.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from polymodal.catalog.store import batch_files, read_manifest

EMPTY = {
    "records": "pm_record VARCHAR, pm_subject VARCHAR, pm_source VARCHAR, pm_batch VARCHAR, pm_row BIGINT, "
               "pm_table VARCHAR, pm_added VARCHAR, pm_version VARCHAR, pm_seq BIGINT",
    "refs": "pm_record VARCHAR, \"column\" VARCHAR, path VARCHAR, resolved VARCHAR, size BIGINT, mtime_ns BIGINT, "
            "sha256 VARCHAR, status VARCHAR, problem VARCHAR",
    "blobs": "sha256 VARCHAR, size BIGINT, stored VARCHAR, ext VARCHAR, first_record VARCHAR",
}
COHORT_COLUMNS = "cohort VARCHAR, \"row\" BIGINT, subject VARCHAR, \"column\" VARCHAR, record VARCHAR"


def q(name: str) -> str:
    """A SQL identifier, quoted (a column may be called anything, ``"`` included)."""
    return '"' + str(name).replace('"', '""') + '"'


class View:
    """A read-only snapshot of the catalogue at ``root``: ``con`` (DuckDB), ``manifest``, ``columns``."""

    def __init__(self, root: str | os.PathLike) -> None:
        import duckdb

        self.root = Path(root).resolve()
        self.manifest = read_manifest(self.root)
        self.version = int(self.manifest["version"])
        self.columns: dict[str, dict[str, Any]] = self.manifest["columns"]
        self.con = duckdb.connect(":memory:")
        for table, schema in EMPTY.items():
            files = [str(self.root / f) for f in batch_files(self.manifest, table)]
            if files:
                self.con.execute(f"CREATE TABLE {table} AS SELECT * FROM read_parquet(?, union_by_name=true)", [files])
            else:
                self.con.execute(f"CREATE TABLE {table} ({schema})")
        cohorts = [str(self.root / c["file"]) for c in self.manifest["cohorts"].values()]
        self.con.execute(f"CREATE TABLE cohort_records ({COHORT_COLUMNS})")
        if cohorts:
            self.con.execute("INSERT INTO cohort_records BY NAME SELECT * FROM read_parquet(?, union_by_name=true)",
                             [cohorts])
        for c in self.columns:  # a column a source registered but no committed row holds (cannot happen by add)
            if c not in self.record_columns():
                self.con.execute(f"ALTER TABLE records ADD COLUMN {q(c)} VARCHAR")
        self._subjects()
        self.con.execute("SET preserve_insertion_order = true")  # a filter over `subjects` keeps subject order
        self.con.execute("SET enable_external_access = false")
        self.con.execute("SET lock_configuration = true")

    def record_columns(self) -> list[str]:
        return [r[0] for r in self.con.execute("DESCRIBE records").fetchall()]

    def _subjects(self) -> None:
        parts = ["pm_subject AS subject", "count(*) AS n_records", "list_sort(list(DISTINCT pm_source)) AS sources"]
        for i, c in enumerate(self.columns):
            parts.append(f"arg_min({q(c)}, pm_seq) FILTER (WHERE {q(c)} IS NOT NULL) AS {q(c)}")
            parts.append(f"arg_min(pm_record, pm_seq) FILTER (WHERE {q(c)} IS NOT NULL) AS pm_from_{i}")
        self.con.execute(f"CREATE TABLE subjects AS SELECT {', '.join(parts)} FROM records GROUP BY pm_subject "
                         "ORDER BY subject")

    def kinds(self) -> dict[str, list[str]]:
        """{kind: [columns of that kind]}, in catalogue order."""
        out: dict[str, list[str]] = {}
        for c, spec in self.columns.items():
            out.setdefault(spec["kind"], []).append(c)
        return out

    def fetch(self, sql: str, params: list[Any] | None = None) -> list[dict[str, Any]]:
        cur = self.con.execute(sql, params or [])
        names = [d[0] for d in cur.description]
        return [dict(zip(names, row)) for row in cur.fetchall()]

    def close(self) -> None:
        self.con.close()

    def __enter__(self) -> "View":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
