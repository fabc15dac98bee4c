"""``polymodal align`` / ``embed`` / ``zero-shot``: train a shared embedding space, embed a table with it, classify
without training (label names through the text tower, or class prototypes from a few labelled rows).

``align`` takes its configuration in layers like ``fit``: ``--preset`` < ``--config`` < explicit flags < ``--set``;
its ``--out`` is a run folder, refused when it is ``-`` or a non-empty folder without ``--overwrite``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer

from polymodal.cli import common as c
from polymodal.cli.common import auto_report


@c.guarded
def align(
    train: Path = typer.Argument(..., help="Table of paired records: .csv, .parquet or .jsonl (no label needed)"),
    out: Path = typer.Option(..., "--out", "-o", help="Run directory to write"),
    preset: Optional[str] = c.preset_option(),
    config: Optional[Path] = c.config_option(),
    sets: Optional[list[str]] = c.set_option(),
    use: Optional[str] = typer.Option(
        None, "--use", "--modalities", help="Modalities to align, comma-separated (default: all)",
    ),
    objective: Optional[str] = typer.Option(None, help="clip | siglip | symile | pairwise | anchor (default clip)"),
    label: Optional[str] = typer.Option(
        None, help="Optional label column: not an input, used for class-level evaluation",
    ),
    validation: Optional[Path] = typer.Option(None, help="Validation table (default: hold out --val-fraction)"),
    kinds: Optional[str] = typer.Option(None, help="Override column kinds: col=image,col2=ignore,..."),
    group: Optional[str] = typer.Option(
        None, "--group", "--groups", help="Group columns into one modality: vitals=hr+bp",
    ),
    ignore: Optional[str] = typer.Option(None, help="Columns to ignore (comma-separated)"),
    encoders: Optional[str] = typer.Option(
        None, help="Encoder per modality or kind: image=efficientnet_lite0,text=minilm",
    ),
    dim: Optional[int] = typer.Option(None, help="Encoder token width (default 64)"),
    embed_dim: Optional[int] = typer.Option(
        None, help="Width of the shared space (default 64; with --lock, the locked tower's width)",
    ),
    lock: Optional[str] = typer.Option(
        None, help="Keep this frozen tower's own space as the shared space: auto (the text tower, when every "
                   "modality is a frozen tower) | none | a modality (default auto)",
    ),
    uniformity_weight: Optional[float] = typer.Option(
        None, help="Alignment + uniformity regulariser weight (shrinks the gap) (default 0)",
    ),
    epochs: Optional[int] = typer.Option(None, help="Maximum epochs, early stopping on validation (default 40)"),
    batch_size: Optional[int] = typer.Option(None, help="Contrastive batch (more negatives per step) (default 128)"),
    lr: Optional[float] = typer.Option(None, help="Peak learning rate (default 0.002)"),
    patience: Optional[int] = typer.Option(
        None, help="Epochs without validation improvement before stopping (default 5)",
    ),
    val_fraction: Optional[float] = typer.Option(None, help="Rows held out for early stopping (default 0.1)"),
    seed: Optional[int] = typer.Option(None, help="(default 0)"),
    on_error: str = typer.Option("raise", help=c.ON_ERROR_HELP),
    time_limit: Optional[float] = c.time_limit_option(),
    threads: Optional[int] = c.threads_option(),
    overwrite: bool = c.overwrite_option(),
) -> None:
    """Align modalities in one shared embedding space (contrastive training on paired rows)."""
    from polymodal.recipes.align import align as align_

    shared = c.given(objective=objective, embed_dim=embed_dim, lock=lock, uniformity_weight=uniformity_weight)
    flags = c.given(
        encoders=c.encoder_flag(encoders), dim=dim, align=shared or None, epochs=epochs, batch_size=batch_size,
        lr=lr, patience=patience, val_fraction=val_fraction, seed=seed, max_minutes=c.minutes(time_limit),
    )
    options = c.layered(flags, sets)
    if isinstance(options.get("align"), str):  # --set align=siglip
        options["align"] = {"objective": options["align"]}
    table_flags = dict(kinds=c.kinds(kinds), groups=c.groups(group), use=c.names(use), ignore=c.names(ignore) or ())
    objective_ = _objective(options, preset, config)
    c.check_run_out(out, overwrite)
    c.set_threads(threads)
    with c.training(), c.run_folder(out):
        model = align_(train, objective=objective_, label=label, validation=validation, out=out, preset=preset,
                       config=config, on_error=on_error, **table_flags, **options)
    tr = model.info["training"]
    best = tr.get("best_val_loss")
    best_txt = "n/a" if best is None else f"{best:.4f} (epoch {tr.get('best_epoch')})"
    c.done("saved", f"{out}  ({model!r})")
    c.say(f"trained {tr['epochs_run']} epochs in {model.info['train_s']:.1f}s; best validation loss: {best_txt}")
    note = c.decode_note(model.info.get("decode_report"))
    if note:
        c.say(note)
    auto_report([out], out / "report.html")
    c.stop_if_interrupted(tr, out)


def _objective(options: dict[str, Any], preset: Optional[str], config: Optional[Path]) -> Any:
    """The objective argument of ``pm.align``: its default would override the objective a preset or config file
    names, so pass the one the layers give (``--objective`` / ``--set align.objective`` win; else ``clip``)."""
    from polymodal.config import load_preset, merge, read_file

    base: dict[str, Any] = {}
    if preset is not None:
        base = merge(base, load_preset(preset))
    if config is not None:
        base = merge(base, read_file(config))
    spec = merge(base, options).get("align")
    if isinstance(spec, str):
        return spec
    if isinstance(spec, dict) and spec.get("objective") is not None:
        return spec["objective"]
    return "clip"


@c.guarded
def embed(
    run: Path = typer.Argument(..., help="Run directory (align, or fit with an alignment objective)"),
    data: Path = typer.Argument(..., help="Table to embed"),
    out: Path = typer.Option(..., "--out", "-o", help="Output .parquet / .jsonl / .csv"),
    on_error: str = typer.Option("raise", help=c.ON_ERROR_HELP),
) -> None:
    """Per-modality vectors in the shared space plus a fused vector, one row per input row."""
    from polymodal.index import load_run

    frame = load_run(run).embed(data, on_error=on_error)
    c.write_table(frame, out, other_as_csv=False)
    c.done("wrote", f"{len(frame)} rows x {list(frame.columns)} to {out}")
    note = c.decode_note(frame.attrs.get("decode_report"))
    if note:  # under --on-error missing: counted and printed, as everywhere
        c.note(note)


@c.guarded
def zero_shot(
    run: Path = typer.Argument(..., help="Run directory with a shared embedding space"),
    data: Path = typer.Argument(..., help="Table to classify"),
    labels: Optional[str] = typer.Option(None, help="Class names, comma-separated (through the text tower)"),
    templates: str = typer.Option("{}", help="Prompt templates separated by '|', e.g. 'a photo of a {}.|a {}'"),
    support: Optional[Path] = typer.Option(
        None, help="Labelled examples for prototype classification (no text needed)",
    ),
    label: Optional[str] = typer.Option(None, help="Label column of --support"),
    modality: Optional[str] = typer.Option(None, help="Modality to classify (default: the first non-text one)"),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Write predictions here (.csv/.parquet/.jsonl)"),
    on_error: str = typer.Option("raise", help=c.ON_ERROR_HELP),
) -> None:
    """Classify without training: label names through the text tower, or class prototypes from --support."""
    from polymodal.errors import PolymodalError
    from polymodal.index import load_run

    if (labels is None) == (support is None):
        raise PolymodalError("give either --labels a,b,c (zero-shot through text) or --support FILE --label COL")
    if support is not None and not label:
        raise PolymodalError("--support needs --label naming its label column")
    model = load_run(run)
    if support is not None:
        preds = model.prototype_classify(support, label, data, modality=modality, on_error=on_error)
    else:
        preds = model.zero_shot(data, c.names(labels) or [], templates=[t for t in templates.split("|") if t],
                                modality=modality, on_error=on_error)
    if out:
        c.write_table(preds, out, other_as_csv=False)
        c.done("wrote", f"{len(preds)} predictions to {out}")
    counts = preds["prediction"].value_counts().to_dict()
    c.say(f"{len(preds)} rows of {preds.attrs.get('modality')!r}: {counts}")
