"""CLI commands for the shared embedding space: align, embed, index build/info, search, zero-shot, and the
retrieval branch of ``evaluate`` (registered on the main app by ``register``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from polymodal.errors import PolymodalError

index_app = typer.Typer(no_args_is_help=True, help="Persistent cross-modal search index (LanceDB on disk).")


def _cli():
    from polymodal.cli import app as cli

    return cli


def _write_frame(frame, out: Path) -> None:
    _cli()._write_table(frame, out, other_as_csv=False)


def _encoders(text: Optional[str]) -> dict[str, str]:
    return _cli()._parse_pairs(text, "--encoders", "modality=encoder") or {}


def align(
    train: Path = typer.Argument(..., help="Table of paired records: .csv, .parquet or .jsonl (no label needed)"),
    out: Path = typer.Option(..., "--out", "-o", help="Run directory to write"),
    modalities: Optional[str] = typer.Option(None, help="Modalities to align, comma-separated (default: all)"),
    objective: str = typer.Option("clip", help="clip | siglip | symile | pairwise | anchor"),
    label: Optional[str] = typer.Option(None, help="Optional label column: not an input, used for class-level evaluation"),
    validation: Optional[Path] = typer.Option(None, help="Validation table (default: hold out --val-fraction)"),
    kinds: Optional[str] = typer.Option(None, help="Override column kinds: col=image,col2=ignore,..."),
    group: Optional[str] = typer.Option(None, help="Group columns into one modality: vitals=hr+bp"),
    ignore: Optional[str] = typer.Option(None, help="Columns to ignore (comma-separated)"),
    encoders: Optional[str] = typer.Option(None, help="Encoder per modality: image=efficientnet_lite0,text=minilm"),
    epochs: int = typer.Option(30),
    batch_size: int = typer.Option(128, help="Contrastive batch (more negatives per step)"),
    lr: float = typer.Option(2e-3),
    dim: int = typer.Option(64, help="Encoder token width"),
    embed_dim: int = typer.Option(64, help="Width of the shared space"),
    uniformity_weight: float = typer.Option(0.0, help="Alignment + uniformity regulariser weight (shrinks the gap)"),
    val_fraction: float = typer.Option(0.1),
    seed: int = typer.Option(0),
    on_error: str = typer.Option("raise", help="raise | missing"),
) -> None:
    """Align modalities in one shared embedding space (contrastive training on paired rows)."""
    cli = _cli()

    def go():
        from polymodal.recipes.align import align as align_

        model = align_(
            train, modalities=cli._split(modalities), objective=objective, label=label, validation=validation,
            kinds=cli._parse_kinds(kinds), group=cli._parse_groups(group), ignore=cli._split(ignore) or (), out=out,
            encoders=_encoders(encoders), epochs=epochs, batch_size=batch_size, lr=lr, dim=dim, embed_dim=embed_dim,
            uniformity_weight=uniformity_weight, val_fraction=val_fraction, seed=seed, on_error=on_error,
        )
        tr = model.info["training"]
        best = tr.get("best_val_loss")
        best_txt = "n/a" if best is None else f"{best:.4f} (epoch {tr.get('best_epoch')})"
        cli.console.print(f"[green]saved[/] {out}  ({model!r})")
        cli.console.print(
            f"trained {tr['epochs_run']} epochs in {model.info['train_s']:.1f}s; "
            f"best validation loss: {best_txt}"
        )

    cli._run(go)


def embed(
    run: Path = typer.Argument(..., help="Run directory (align, or fit with an alignment objective)"),
    data: Path = typer.Argument(..., help="Table to embed"),
    out: Path = typer.Option(..., "--out", "-o", help="Output .parquet / .jsonl / .csv"),
    on_error: str = typer.Option("raise", help="raise | missing"),
) -> None:
    """Per-modality vectors in the shared space plus a fused vector, one row per input row."""
    cli = _cli()

    def go():
        from polymodal.index import load_run

        model = load_run(run)
        frame = model.embed(data, on_error=on_error)
        _write_frame(frame, out)
        cli.console.print(f"[green]wrote[/] {len(frame)} rows x {list(frame.columns)} to {out}")

    cli._run(go)


@index_app.command("build")
def index_build(
    run: Path = typer.Argument(..., help="Run directory with a shared embedding space"),
    data: Path = typer.Argument(..., help="Table to index"),
    index: Path = typer.Option(..., "--index", "-i", help="Index folder (created if absent)"),
    id_column: Optional[str] = typer.Option(None, "--id", help="Column with unique row ids (default: content keys)"),
    metadata: Optional[str] = typer.Option(None, help="Metadata columns to store (default: every scalar column)"),
    prune: bool = typer.Option(True, help="Remove rows no longer in the table"),
    ann_threshold: int = typer.Option(50_000, help="Build an ANN index from this many rows (exact search below)"),
    on_error: str = typer.Option("raise", help="raise | missing"),
) -> None:
    """Build or update an index: only new or changed rows are embedded; each write is atomic."""
    cli = _cli()

    def go():
        from polymodal.index import Index

        idx = Index.build(run, data, index, id_column=id_column, metadata=cli._split(metadata), prune=prune,
                          ann_threshold=ann_threshold, on_error=on_error)
        b = idx.last_build
        cli.console.print(
            f"[green]index[/] {index}: {b['total']} rows ({b['inserted']} added, {b['updated']} updated, "
            f"{b['unchanged']} unchanged, {b['deleted']} removed) in {b['seconds']:.1f}s"
            + (f"; {b['missing_files']} row(s) skipped, file missing: {b['missing_examples'][0]['file']}" if b["missing_files"] else "")
            + ("; ANN index built" if b["ann_built"] else "")
        )

    cli._run(go)


@index_app.command("info")
def index_info(index: Path = typer.Argument(..., help="Index folder")) -> None:
    """Rows, vectors, metadata columns and the model of an index."""
    cli = _cli()

    def go():
        from polymodal.index import Index

        idx = Index(index)
        meta = idx.meta
        cli.console.print_json(json.dumps({"rows": len(idx), "version": idx.store.version, **meta}, default=str))

    cli._run(go)


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
    cli = _cli()

    def go():
        from rich.table import Table

        from polymodal.index import Index

        for p in (image, audio):
            if p is not None and not p.exists():
                raise PolymodalError(f"query file {str(p)!r} does not exist")
        idx = Index(index)
        res = idx.search(text=text, image=None if image is None else str(image.resolve()),
                         audio=None if audio is None else str(audio.resolve()), modality=modality,
                         target=target, top_k=top_k, where=where, exact=exact)
        if as_json:
            for rec in res.to_dict(orient="records"):
                print(json.dumps(rec, default=str))
            return
        table = Table(title=f"top {len(res)}")
        for c in res.columns:
            table.add_column(str(c))
        for rec in res.itertuples(index=False):
            table.add_row(*[f"{v:.4f}" if isinstance(v, float) else str(v) for v in rec])
        cli.console.print(table)

    cli._run(go)


def zero_shot(
    run: Path = typer.Argument(..., help="Run directory with a shared embedding space"),
    data: Path = typer.Argument(..., help="Table to classify"),
    labels: Optional[str] = typer.Option(None, help="Class names, comma-separated (through the text tower)"),
    templates: str = typer.Option("{}", help="Prompt templates separated by '|', e.g. 'a photo of a {}.|a {}'"),
    support: Optional[Path] = typer.Option(None, help="Labelled examples for prototype classification (no text needed)"),
    label: Optional[str] = typer.Option(None, help="Label column of --support"),
    modality: Optional[str] = typer.Option(None, help="Modality to classify (default: the first non-text one)"),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Write predictions here (.csv/.parquet/.jsonl)"),
    on_error: str = typer.Option("raise", help="raise | missing"),
) -> None:
    """Classify without training: label names through the text tower, or class prototypes from --support."""
    cli = _cli()

    def go():
        from polymodal.index import load_run

        model = load_run(run)
        if (labels is None) == (support is None):
            raise PolymodalError("give either --labels a,b,c (zero-shot through text) or --support FILE --label COL")
        if support is not None:
            if not label:
                raise PolymodalError("--support needs --label naming its label column")
            preds = model.prototype_classify(support, label, data, modality=modality, on_error=on_error)
        else:
            preds = model.zero_shot(data, cli._split(labels), templates=[t for t in templates.split("|") if t],
                                    modality=modality, on_error=on_error)
        if out:
            _write_frame(preds, out)
            cli.console.print(f"[green]wrote[/] {len(preds)} predictions to {out}")
        counts = preds["prediction"].value_counts().to_dict()
        cli.console.print(f"{len(preds)} rows of {preds.attrs.get('modality')!r}: {counts}")

    cli._run(go)


def evaluate_align(run: Path, data: Path, out: Optional[Path], label: Optional[str], on_error: str) -> None:
    """The retrieval branch of ``polymodal evaluate`` (called for alignment runs)."""
    cli = _cli()
    from rich.table import Table

    from polymodal.index import load_run

    model = load_run(run)
    res = model.evaluate(data, label=label, on_error=on_error)
    table = Table(title=f"retrieval on {res['n']} rows" + (f" (class = {res['label']})" if res["label"] else ""))
    for c in ("direction", "level", "R@1", "R@5", "R@10", "median rank"):
        table.add_column(c)
    for direction, r in res["retrieval"].items():
        for level, s in r.items():
            table.add_row(direction, level, *(f"{s[k]:.3f}" for k in ("R@1", "R@5", "R@10")), f"{s['median_rank']:g}")
    cli.console.print(table)
    gaps = res["modality_gap"]
    for pair, after in gaps["after"].items():
        before = gaps.get("before", {}).get(pair)
        cli.console.print(f"modality gap {pair}: {after:.3f}" + ("" if before is None else f" (before alignment: {before:.3f})"))
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(res, indent=2, default=str))
        cli.console.print(f"[green]wrote[/] {out}")


def register(app: typer.Typer) -> None:
    app.command()(align)
    app.command()(embed)
    app.command()(search)
    app.command("zero-shot")(zero_shot)
    app.add_typer(index_app, name="index")
