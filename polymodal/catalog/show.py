"""What the catalogue holds: its sources (schema, counts) and every record of one subject with its provenance
and the runs that trained on it."""

from __future__ import annotations

import math
import os
from typing import Any

from polymodal.catalog.engine import View

ORIGINS_SHOWN = 10  # the other registrations of a file listed by `show` (all are counted)


def _clean(v: Any) -> Any:
    if isinstance(v, float) and math.isnan(v):
        return None
    if hasattr(v, "tolist"):
        return v.tolist()
    return v


def sources(root: str | os.PathLike) -> dict[str, Any]:
    """``{"catalog", "version", "records", "subjects", "blobs", "file_refs", "sources": [{name, subject, records,
    subjects, batches, columns: {column: kind}}], "columns": {column: {kind, as, file, sources}}}``."""
    with View(root) as v:
        per = {r["pm_source"]: r for r in v.fetch(
            "SELECT pm_source, count(*) AS records, count(DISTINCT pm_subject) AS subjects FROM records "
            "GROUP BY pm_source")}
        total = v.fetch("SELECT count(*) AS records, count(DISTINCT pm_subject) AS subjects FROM records")[0]
        refs = v.fetch("SELECT count(*) AS n, count(*) FILTER (WHERE status <> 'ok') AS bad FROM refs")[0]
        out = []
        for name, s in v.manifest["sources"].items():
            cols = {c: s_["kind"] + (f" ({s_['as']})" if s_.get("as") else "") + (" file" if s_["file"] else "")
                    for c, s_ in s["columns"].items()}
            out.append({"name": name, "subject": s["subject"], "records": per.get(name, {}).get("records", 0),
                        "subjects": per.get(name, {}).get("subjects", 0), "batches": len(s["batches"]),
                        "columns": cols})
        return {"catalog": str(v.root), "version": v.version, "records": total["records"],
                "subjects": total["subjects"], "blobs": v.manifest["blobs"], "file_refs": refs["n"],
                "missing_files": refs["bad"], "sources": out, "columns": v.columns,
                "cohorts": len(v.manifest["cohorts"]), "runs": len(v.manifest["runs"])}


def subject(root: str | os.PathLike, subject_id: str) -> dict[str, Any]:
    """Every record of ``subject_id``: source, original table and row, time added, polymodal version, metadata
    values, files (as written, resolved, sha256, where stored, every other registration of the same content);
    which modalities the subject has; and the cohorts and runs that used its records."""
    with View(root) as v:
        recs = v.fetch("SELECT * FROM records WHERE pm_subject = ? ORDER BY pm_seq", [str(subject_id)])
        ids = [r["pm_record"] for r in recs]
        files = v.fetch(
            "SELECT r.*, b.stored, (SELECT count(*) FROM refs o WHERE o.sha256 = r.sha256) AS registrations "
            "FROM refs r LEFT JOIN blobs b USING (sha256) WHERE r.pm_record IN (SELECT unnest(?)) "
            "ORDER BY r.pm_record, r.\"column\"", [ids]) if ids else []
        shas = sorted({f["sha256"] for f in files if f["sha256"]})
        origins: dict[str, list[dict[str, Any]]] = {}
        if shas:
            for o in v.fetch(
                    "SELECT o.sha256, o.\"column\", o.path, r.pm_record AS record, r.pm_source AS source, "
                    "r.pm_subject AS subject, r.pm_table AS \"table\", r.pm_row AS \"row\" "
                    "FROM refs o JOIN records r USING (pm_record) WHERE o.sha256 IN (SELECT unnest(?)) "
                    "ORDER BY r.pm_seq", [shas]):
                origins.setdefault(o.pop("sha256"), []).append(o)
        by_record: dict[str, list[dict[str, Any]]] = {}
        for f in files:
            f["origins"] = [o for o in origins.get(f["sha256"], []) if o["record"] != f["pm_record"]][:ORIGINS_SHOWN]
            by_record.setdefault(f.pop("pm_record"), []).append(f)
        out_records = []
        for r in recs:
            values = {c: _clean(r[c]) for c, s in v.columns.items()
                      if c in r and not s["file"] and _clean(r[c]) is not None}
            out_records.append({
                "record": r["pm_record"], "source": r["pm_source"], "table": r["pm_table"], "row": r["pm_row"],
                "added_at": r["pm_added"], "polymodal_version": r["pm_version"], "values": values,
                "files": by_record.get(r["pm_record"], [])})
        kinds = v.kinds()
        has = {k: any(f["status"] == "ok" and v.columns[f["column"]]["kind"] == k for fs in by_record.values()
                      for f in fs) or any(c in rec["values"] for rec in out_records for c in cols)
               for k, cols in kinds.items()}
        cohorts = sorted(r[0] for r in v.con.execute(
            "SELECT DISTINCT cohort FROM cohort_records WHERE record IN (SELECT unnest(?))", [ids]).fetchall()) \
            if ids else []
        runs = [{**run, "query": v.manifest["cohorts"].get(run["cohort"], {}).get("query")}
                for run in v.manifest["runs"] if run["cohort"] in cohorts]
        return {"catalog": str(v.root), "version": v.version, "subject": str(subject_id), "records": out_records,
                "modalities": has, "cohorts": cohorts, "runs": runs}
