"""``polymodal index build`` / ``index info`` / ``search``: a persistent cross-modal search index (LanceDB on
disk) built with a trained embedding model, and nearest-row queries by text, image or audio."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from polymodal.cli import common as c


@c.guarded
def build(
    run: Path = typer.Argument(..., help="Run directory with a shared embedding space"),
    data: Path = typer.Argument(..., help="Table to index"),
    index: Path = typer.Option(..., "--index", "-i", help="Index folder (created if absent)"),
    id_column: Optional[str] = typer.Option(None, "--id", help="Column with unique row ids (default: content keys)"),
    metadata: Optional[str] = typer.Option(None, help="Metadata columns to store (default: every scalar column)"),
    prune: bool = typer.Option(True, help="Remove rows no longer in the table"),
    ann_threshold: int = typer.Option(50_000, help="Build an ANN index from this many rows (exact search below)"),
    on_error: str = typer.Option("raise", help=c.ON_ERROR_HELP),
    wait: float = typer.Option(0.0, help="Seconds to wait for another build holding the index (0: fail at once)"),
) -> None:
    """Build or update an index: only new or changed rows are embedded; each write is atomic; one build at a time
    (a second one fails, or waits --wait seconds, naming the holder's pid)."""
    from polymodal.index import Index

    idx = Index.build(run, data, index, id_column=id_column, metadata=c.names(metadata), prune=prune,
                      ann_threshold=ann_threshold, on_error=on_error, lock_wait=wait)
    b = idx.last_build
    if b.get("duplicates_removed"):
        c.note(f"repaired {b['duplicates_removed']} duplicate row(s) left by an earlier unlocked writer")
    if b.get("decode", {}).get("errors"):
        c.note(f"decode: {b['decode_summary']}")
    if b.get("metadata_as_text"):
        c.note(f"metadata stored as text (mixed types): {', '.join(b['metadata_as_text'])}")
    missing = (f"; {b['missing_files']} row(s) skipped, file missing: {b['missing_examples'][0]['file']}"
               if b["missing_files"] else "")
    c.done("index", f"{index}: {b['total']} rows ({b['inserted']} added, {b['updated']} updated, "
                    f"{b['unchanged']} unchanged, {b['deleted']} removed) in {b['seconds']:.1f}s"
                    + missing + ("; ANN index built" if b["ann_built"] else ""))


@c.guarded
def info(index: Path = typer.Argument(..., help="Index folder")) -> None:
    """Rows, vectors, metadata columns and the model of an index."""
    from polymodal.index import Index

    idx = Index(index)
    c.out.print_json(json.dumps({"rows": len(idx), "version": idx.store.version, **idx.meta}, default=str))


@c.guarded
def search(
    index: Path = typer.Argument(..., help="Index folder built by `polymodal index build`"),
    text: Optional[str] = typer.Option(None, help="Query text"),
    image: Optional[Path] = typer.Option(None, help="Query image file"),
    audio: Optional[Path] = typer.Option(None, help="Query audio file"),
    modality: Optional[str] = typer.Option(None, help="Query modality name (when the model has several of a kind)"),
    target: Optional[str] = typer.Option(None, help="Stored vectors to search: a modality name or 'fused'"),
    top_k: int = typer.Option(10, "--top-k", "-k"),
    where: Optional[str] = typer.Option(None, help="SQL filter on metadata, e.g. \"split = 'test'\""),
    exact: Optional[bool] = typer.Option(None, "--exact/--ann", help="Force exact or ANN search (default: by size)"),
    as_json: bool = typer.Option(False, "--json", help="Print the results as JSON lines"),
) -> None:
    """Nearest rows of an index to a text / image / audio query."""
    from polymodal.errors import PolymodalError
    from polymodal.index import Index

    for p in (image, audio):
        if p is not None and not p.exists():
            raise PolymodalError(f"query file {str(p)!r} does not exist")
    res = Index(index).search(
        text=text, image=None if image is None else str(image.resolve()),
        audio=None if audio is None else str(audio.resolve()), modality=modality, target=target, top_k=top_k,
        where=where, exact=exact,
    )
    if as_json:
        for rec in res.to_dict(orient="records"):
            c.raw(json.dumps(rec, default=str))
        return
    c.print_table(f"top {len(res)}", [str(col) for col in res.columns], res.itertuples(index=False))
