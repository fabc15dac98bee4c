"""``polymodal pretrain`` / ``generate``: masked any-to-any pre-training on an unlabelled table, and a modality
predicted from the others by the pre-trained run.

``pretrain`` takes ``fit``'s configuration layers (``--preset`` < ``--config`` < flags < ``--set``) and its table
flags; every column is an input (leave a label out with ``--ignore``). ``generate`` writes one file per row.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from polymodal.cli import common as c


def _budget(text: Optional[str]) -> dict[str, int] | None:
    """``image=64,audio=32`` -> ``{"image": 64, "audio": 32}`` (visible tokens per modality)."""
    from polymodal.errors import PolymodalError

    found = c.pairs(text, "--budget", "modality=tokens")
    if found is None:
        return None
    try:
        return {k: int(v) for k, v in found.items()}
    except ValueError:
        raise PolymodalError(f"--budget expects modality=tokens with whole numbers (image=64,audio=32), got {text!r}")


@c.guarded
def pretrain(
    train: Path = typer.Argument(..., help="Unlabelled table: .csv, .parquet or .jsonl"),
    out: Path = typer.Option(..., "--out", "-o", help="Run directory to write (config, schema, weights, report)"),
    mask_ratio: Optional[float] = typer.Option(None, help="Fraction of each row's tokens hidden (default 0.75)"),
    budget: Optional[str] = typer.Option(None, help="At most this many visible tokens per modality: image=64,audio=32"),
    alpha: Optional[float] = typer.Option(None, help="Dirichlet concentration of the visible budget split (default 1)"),
    masking: Optional[str] = typer.Option(None, help="crossmodal (MultiMAE) | permodal (each modality alone)"),
    hide_modality: Optional[float] = typer.Option(
        None, help="Probability a row hides one modality whole, predicted from the others (default 0)",
    ),
    preset: Optional[str] = c.preset_option(),
    config: Optional[Path] = c.config_option(),
    sets: Optional[list[str]] = c.set_option(),
    fusion: Optional[str] = typer.Option(None, help="Fusion that returns tokens (default transformer)"),
    encoders: Optional[str] = typer.Option(None, help="Encoder per modality or kind: image=image_conv"),
    dim: Optional[int] = typer.Option(None, help="Token width (default 64)"),
    epochs: Optional[int] = typer.Option(None, help="Maximum epochs, early stopping on validation (default 40)"),
    batch_size: Optional[int] = typer.Option(None, help="(default 64)"),
    lr: Optional[float] = typer.Option(None, help="Peak learning rate (default 0.002)"),
    patience: Optional[int] = typer.Option(None, help="Epochs without validation improvement (default 8)"),
    val_fraction: Optional[float] = typer.Option(None, help="Rows held out for early stopping (default 0.1)"),
    seed: Optional[int] = typer.Option(None, help="(default 0)"),
    kinds: Optional[str] = typer.Option(None, help="Override column kinds: col=image,col2=ignore,..."),
    use: Optional[str] = typer.Option(None, help="Keep only these modalities (comma-separated)"),
    ignore: Optional[str] = typer.Option(None, help="Columns to ignore, e.g. a label (comma-separated)"),
    on_error: str = typer.Option("raise", help=c.ON_ERROR_HELP),
    resume: bool = typer.Option(False, "--resume", help="Continue an interrupted pre-training in --out"),
    time_limit: Optional[float] = c.time_limit_option(),
    threads: Optional[int] = c.threads_option(),
    overwrite: bool = c.overwrite_option(),
) -> None:
    """Pre-train encoders and fusion on an unlabelled table by masked any-to-any modelling (no label)."""
    from polymodal.pretrain.recipe import pretrain as pretrain_

    flags = c.given(fusion=fusion, encoders=c.encoder_flag(encoders), dim=dim, epochs=epochs, batch_size=batch_size,
                    lr=lr, patience=patience, val_fraction=val_fraction, seed=seed, max_minutes=c.minutes(time_limit))
    options = c.layered(flags, sets)
    masks = c.given(mask_ratio=mask_ratio, alpha=alpha, hide_modality=hide_modality, masking=masking,
                    budget=_budget(budget))
    if not resume:
        c.check_run_out(out, overwrite)
    c.set_threads(threads)
    with c.training():
        model = pretrain_(train, out=out, preset=preset, config=config, on_error=on_error, kinds=c.kinds(kinds),
                          use=c.names(use), ignore=c.names(ignore) or (), resume=resume, **masks, **options)
    info = model.info
    c.done("saved", f"{out}  ({model!r})")
    best = info["training"].get("best_val_loss")
    last = (info["training"].get("history") or [{}])[-1]
    per = ", ".join(f"{k[9:]}={v:.4f}" for k, v in last.items() if k.startswith("val_loss_"))
    c.say(f"trained {info['training']['epochs_run']} epochs in {info['train_s']:.1f}s; best validation loss: "
          + (f"{best:.4f} (epoch {info['training'].get('best_epoch')}); last epoch per modality: {per or 'n/a'}"
             if best is not None else "n/a (no validation rows)"))
    c.stop_if_interrupted(info["training"], out)


@c.guarded
def generate(
    run: Path = typer.Argument(..., help="Run directory written by `polymodal pretrain`"),
    data: Path = typer.Argument(..., help="Rows to predict from (the target's column may be missing)"),
    target: str = typer.Option(..., "--target", "-t", help="Modality to predict from the others"),
    out: Path = typer.Option(..., "--out", "-o", help="Folder for the files (PNG / WAV / .npy), one per row"),
    on_error: str = typer.Option("raise", help=c.ON_ERROR_HELP),
    threads: Optional[int] = c.threads_option(),
) -> None:
    """Predict every token of --target from the other modalities and write it as files: PNG for images, WAV for
    audio (inverse mel), .npy otherwise; lists the files in <out>/index.csv."""
    from polymodal.pretrain.run import PretrainedModel

    c.set_threads(threads)
    model = PretrainedModel.load(run)
    paths = model.generate(data, target, out, on_error=on_error)
    paths.to_csv(out / "index.csv", index_label="row")
    c.done("wrote", f"{len(paths)} file(s) to {out} (index: {out / 'index.csv'})")
