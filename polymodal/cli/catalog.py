"""``polymodal catalog add / query / show / sources``: the multimodal data catalogue (``polymodal/catalog``).

``add`` registers a table as records of a source (schema, provenance, content hashes, de-duplication);
``query`` selects subjects by modality presence (``--has``) and metadata (``--where``) and, with ``--out``,
exports them as a training table that records its cohort; ``show --subject`` lists one subject's records with
their provenance and the runs that trained on them; ``sources`` lists the sources with schema and counts.
``--json`` prints the full answer as JSON for scripts.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

import typer

from polymodal.cli import common as c

JSON_HELP = "Print the full answer as JSON"


def _json(data: Any) -> None:
    c.raw(json.dumps(data, indent=1, default=str))


@c.guarded
def add(
    catalog: Path = typer.Argument(..., help="Catalogue folder (created if absent)"),
    table: Path = typer.Argument(..., help="Table to add: .csv, .parquet or .jsonl (relative paths: its folder)"),
    source: str = typer.Option(..., "--source", help="Source name, e.g. scanner_a"),
    subject: str = typer.Option(..., "--subject", help="Column holding the subject id (patient, product, sensor)"),
    on_error: Optional[str] = typer.Option(
        None, help="Rows without a subject, missing / unreadable files, non-numbers: raise (default) | missing "
                   "(skipped or recorded as missing, counted)"),
    wait: Optional[float] = typer.Option(None, help="Seconds to wait for another writer's lock (default 600)"),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Add a table's rows as records of a source: schema, provenance, sha256 of each file, de-duplication."""
    from polymodal.catalog import add as add_

    summary = add_(catalog, table, source=source, subject=subject,
                   **c.given(on_error=on_error, wait=wait))
    if as_json:
        return _json(summary)
    if summary.get("unchanged"):
        return c.say(f"unchanged: {summary['note']} (catalogue version {summary['version']})")
    c.done("added", f"{summary['records']} records of {source!r} to {catalog} (batch {summary['batch']}, "
                    f"catalogue version {summary['version']}) in {summary['seconds']:.2f}s")
    c.say(f"files: {summary['file_refs']} referenced, {summary['new_blobs']} new, {summary['duplicate_refs']} "
          f"already stored (de-duplicated), {summary['files_hashed']} hashed")
    problems = {k: summary[k] for k in ("skipped_rows", "missing_files", "bad_values") if summary[k]}
    if problems:
        c.say("treated as missing (--on-error missing): "
              + ", ".join(f"{v} {k.replace('_', ' ')}" for k, v in problems.items()))


@c.guarded
def query(
    catalog: Path = typer.Argument(..., help="Catalogue folder"),
    has: Optional[str] = typer.Option(None, "--has", help="Modalities every subject must have: kinds or columns, "
                                                          "e.g. image,text"),
    where: Optional[str] = typer.Option(None, "--where", help="SQL condition on metadata columns, e.g. \"age > 60\""),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Write the cohort as a training table (.parquet)"),
    paths: Optional[str] = typer.Option(None, help="File paths in --out: relative (to the file, default) | absolute"),
    subject_column: Optional[str] = typer.Option(None, help="Also write the subject ids in this column of --out"),
    show: int = typer.Option(10, help="Rows to print without --out"),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Select subjects by modality presence and metadata; with --out, export them as a training table."""
    from polymodal.catalog import View, export, select

    if out is not None:
        cohort = export(catalog, out, has, where, **c.given(paths=paths, subject=subject_column))
        if as_json:
            return _json(cohort)
        c.done("wrote", f"{out}: cohort {cohort['cohort']}, {cohort['subjects']} subjects from {cohort['records']} "
                        f"records (catalogue version {cohort['catalog_version']}); columns "
                        + ", ".join(cohort["columns"]))
        return None
    with View(catalog) as view:
        rows = select(view, has, where)
        version, files = view.version, [col for col, spec in view.columns.items() if spec["file"]]
    if as_json:
        return _json({"version": version, "subjects": len(rows), "rows": json.loads(rows.to_json(orient="records"))})
    c.say(f"{len(rows)} subjects (catalogue version {version})")
    if len(rows) and show > 0:
        head = rows[[col for col in rows.columns if col != "sources"][:8]].head(show).astype(object)
        head = head.where(head.notna(), None)
        for col in set(files) & set(head.columns):  # a file column holds the content hash: shortened
            head[col] = head[col].map(lambda sha: f"sha256:{sha[:12]}" if isinstance(sha, str) else None)
        c.print_table("cohort (first rows; files by content hash)", list(head.columns), head.itertuples(index=False))


@c.guarded
def show(
    catalog: Path = typer.Argument(..., help="Catalogue folder"),
    subject: str = typer.Option(..., "--subject", help="Subject id"),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Every record of one subject with its provenance, and the runs that trained on its records."""
    from polymodal.catalog import subject as subject_

    info = subject_(catalog, subject)
    if as_json:
        return _json(info)
    if not info["records"]:
        c.fail(f"subject {subject!r} has no record in {catalog} (catalogue version {info['version']})")
    has = ", ".join(k for k, v in info["modalities"].items() if v) or "none"
    c.say(f"subject {subject}: {len(info['records'])} records; modalities: {has} (catalogue version {info['version']})")
    for r in info["records"]:
        c.say(f"- record {r['record']}  source {r['source']}  {r['table']} row {r['row']}  added {r['added_at']} "
              f"(polymodal {r['polymodal_version']})")
        for k, v in r["values"].items():
            c.say(f"    {k} = {v!r}")
        for f in r["files"]:
            where = f"stored {f['stored']}" if f["sha256"] else f"{f['status']}: {f['problem']}"
            c.say(f"    {f['column']}: {f['path']}  sha256 {(f['sha256'] or '-')[:16]}  {where}")
            for o in f["origins"]:
                c.say(f"      same content: source {o['source']} subject {o['subject']} {o['table']} row {o['row']}")
    for run in info["runs"]:
        c.say(f"run {run['run']}: cohort {run['cohort']} (catalogue version {run['catalog_version']}, query "
              f"{json.dumps(run['query'])})")
    if not info["runs"]:
        c.say("runs: none has trained on this subject's records")


@c.guarded
def sources(
    catalog: Path = typer.Argument(..., help="Catalogue folder"),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """The catalogue's sources with their schema (column kinds) and counts."""
    from polymodal.catalog import sources as sources_

    info = sources_(catalog)
    if as_json:
        return _json(info)
    c.say(f"{catalog}: version {info['version']}, {info['records']} records of {info['subjects']} subjects, "
          f"{info['blobs']} stored files for {info['file_refs']} file references, {info['cohorts']} cohorts, "
          f"{info['runs']} runs")
    c.print_table("sources", ["source", "subject column", "records", "subjects", "batches", "columns"],
                  [(s["name"], s["subject"], s["records"], s["subjects"], s["batches"],
                    ", ".join(f"{k}: {v}" for k, v in s["columns"].items())) for s in info["sources"]])
