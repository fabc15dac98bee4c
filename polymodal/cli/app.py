"""The ``polymodal`` command line: fit, evaluate, predict, demo, datasets, list, compare, robustness, explain."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

from polymodal.cli.tokens import REDUCER_HELP, TOKEN_BUDGET_HELP, apply_budget, budget_options
from polymodal.errors import PolymodalError

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Multimodal machine learning from a table of records.")
datasets_app = typer.Typer(no_args_is_help=True, help="Built-in real datasets.")
app.add_typer(datasets_app, name="datasets")
console = Console()


def _run(fn):
    """Turn polymodal's own errors into a one-paragraph message and exit code 2 (no traceback)."""
    try:
        return fn()
    except (PolymodalError, KeyError, FileNotFoundError) as e:
        msg = e.args[0] if isinstance(e, KeyError) and e.args else str(e)
        console.print(f"[bold red]error:[/] {msg}", highlight=False)
        raise typer.Exit(2) from None


def _parse_pairs(text: Optional[str], flag: str, example: str) -> dict[str, str] | None:
    """``"a=x,b=y"`` -> ``{"a": "x", "b": "y"}``; a malformed entry names the flag and the expected form."""
    if not text:
        return None
    out = {}
    for item in text.split(","):
        if "=" not in item:
            raise PolymodalError(f"{flag} expects {example} entries separated by commas, got {item!r}")
        key, value = item.split("=", 1)
        out[key.strip()] = value.strip()
    return out


def _parse_kinds(kinds: Optional[str]) -> dict[str, str] | None:
    return _parse_pairs(kinds, "--kinds", "column=kind")


def _parse_groups(group: Optional[str]) -> dict[str, list[str]] | None:
    pairs = _parse_pairs(group, "--group", "name=col1+col2")
    return None if pairs is None else {k: [c.strip() for c in v.split("+") if c.strip()] for k, v in pairs.items()}


def _write_table(frame, out: Path, *, other_as_csv: bool = True) -> None:
    """Write a DataFrame by file extension: .parquet/.pq, .jsonl/.ndjson, .csv (row index as ``row``). Any other
    extension is written as CSV, or refused when ``other_as_csv`` is False."""
    out.parent.mkdir(parents=True, exist_ok=True)
    suffix = out.suffix.lower()
    if suffix in (".parquet", ".pq"):
        frame.to_parquet(out)
    elif suffix in (".jsonl", ".ndjson"):
        frame.reset_index().to_json(out, orient="records", lines=True)
    elif suffix == ".csv" or other_as_csv:
        frame.to_csv(out, index_label="row")
    else:
        raise PolymodalError(f"cannot write {out.name!r}: use a .parquet, .jsonl or .csv file name")


def _split(s: Optional[str]) -> list[str] | None:
    return [x.strip() for x in s.split(",") if x.strip()] if s else None


@app.command()
def fit(
    train: Path = typer.Argument(..., help="Training table: .csv, .parquet or .jsonl"),
    label: str = typer.Option(..., "--label", "-l", help="Target column"),
    out: Path = typer.Option(..., "--out", "-o", help="Run directory to write (config, schema, weights, report)"),
    fusion: str = typer.Option("transformer", help="Fusion operator (see `polymodal list fusions`)"),
    validation: Optional[Path] = typer.Option(None, help="Validation table (default: hold out --val-fraction)"),
    kinds: Optional[str] = typer.Option(None, help="Override column kinds: col=image,col2=ignore,..."),
    group: Optional[str] = typer.Option(None, help="Group columns into one modality: vitals=hr+bp,scan=ct_path"),
    use: Optional[str] = typer.Option(None, help="Keep only these modalities (comma-separated)"),
    ignore: Optional[str] = typer.Option(None, help="Columns to ignore (comma-separated)"),
    task: Optional[str] = typer.Option(None, help="classify | regress (default: inferred from the label)"),
    epochs: int = typer.Option(40, help="Maximum epochs (early stopping on validation)"),
    batch_size: int = typer.Option(64),
    lr: float = typer.Option(2e-3),
    dim: int = typer.Option(64, help="Token / fused vector width"),
    modality_dropout: float = typer.Option(0.5, help="Per-sample probability of hiding each modality in training"),
    seed: int = typer.Option(0),
    on_error: str = typer.Option("raise", help="Undecodable values: raise | missing (counted and reported)"),
    token_budget: Optional[str] = typer.Option(None, help=TOKEN_BUDGET_HELP + " (train with it, too)"),
    reducer: Optional[str] = typer.Option(None, help=REDUCER_HELP),
    align: Optional[str] = typer.Option(None, help="Also align modalities (clip | siglip | symile | ...): classify and retrieve"),
    align_weight: float = typer.Option(1.0, help="Weight of the alignment objective in the loss"),
) -> None:
    """Train a model on a table and save it to --out."""
    from polymodal.recipes.fit import fit as fit_

    def go():
        model = fit_(
            train, label, fusion=fusion, validation=validation, kinds=_parse_kinds(kinds),
            modalities=_parse_groups(group), use=_split(use),
            ignore=_split(ignore) or (), task=task, out=out, epochs=epochs, batch_size=batch_size, lr=lr, dim=dim,
            modality_dropout=modality_dropout, seed=seed, on_error=on_error,
            **budget_options(token_budget, reducer),
            **({"align": align, "align_weight": align_weight} if align else {}),
        )
        info = model.info
        console.print(f"[green]saved[/] {out}  ({model!r})")
        console.print(
            f"trained {info['training']['epochs_run']} epochs in {info['train_s']:.1f}s; "
            f"best validation: {_fmt_best(info['training'])}; decode: {model.info['decode_report']['errors'] or 'no errors'}"
        )

    _run(go)


def _fmt_best(training: dict) -> str:
    for k, v in training.items():
        if k.startswith("best_val") and v is not None:
            return f"{k[5:]}={v:.4f} (epoch {training.get('best_epoch')})"
    return "n/a"


@app.command()
def evaluate(
    run: Path = typer.Argument(..., help="Run directory written by `polymodal fit`"),
    data: Path = typer.Argument(..., help="Labelled table"),
    out: Optional[Path] = typer.Option(None, help="Write the metrics JSON here"),
    subsets: bool = typer.Option(True, help="Also score every non-empty subset of modalities"),
    on_error: str = typer.Option("raise", help="raise | missing"),
    label: Optional[str] = typer.Option(None, help="Alignment runs: label column for class-level retrieval"),
    token_budget: Optional[str] = typer.Option(None, help=TOKEN_BUDGET_HELP),
    reducer: Optional[str] = typer.Option(None, help=REDUCER_HELP),
) -> None:
    """Metrics (accuracy, macro-F1, confusion matrix) plus accuracy for every subset of modalities; for an
    alignment run (`polymodal align`): R@1/5/10 and median rank in both directions, modality gap."""
    from polymodal.evaluate.report import metrics_table
    from polymodal.recipes.fit import load

    def go():
        from polymodal.recipes.align import is_align_run

        if is_align_run(run):
            from polymodal.cli.align import evaluate_align

            return evaluate_align(run, data, out, label, on_error)
        model = apply_budget(load(run), token_budget, reducer)
        res = model.evaluate(data, subsets=subsets, on_error=on_error)
        console.print(metrics_table(res, model.schema.task))
        if out:
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps(res, indent=2))
            console.print(f"[green]wrote[/] {out}")

    _run(go)


@app.command()
def predict(
    run: Path = typer.Argument(..., help="Run directory written by `polymodal fit`"),
    data: Path = typer.Argument(..., help="Table to predict"),
    out: Path = typer.Option(..., "--out", "-o", help="Output .csv / .parquet / .jsonl"),
    on_error: str = typer.Option("raise", help="raise | missing"),
) -> None:
    """Predict every row of a table; writes predictions (and class probabilities)."""
    from polymodal.recipes.fit import load

    def go():
        model = load(run)
        preds = model.predict(data, on_error=on_error)
        _write_table(preds, out)
        errs = preds.attrs.get("decode_report", {}).get("errors")
        console.print(f"[green]wrote[/] {len(preds)} predictions to {out}" + (f" (treated as missing: {errs})" if errs else ""))

    _run(go)


@app.command()
def demo(
    out: Path = typer.Option(Path("runs/demo"), help="Where to write results.json and results.md"),
    epochs: int = typer.Option(15, help="Epochs per model (cosine schedule; best validation epoch kept)"),
    quick: bool = typer.Option(False, help="A 1-minute smoke version on a subset (for tests)"),
) -> None:
    """The main job on the bundled real data: unimodal baselines and three fusions on av-digits."""
    from polymodal.experiments.demo import run_demo

    _run(lambda: run_demo(out, epochs=epochs, quick=quick, console=console))


@datasets_app.command("list")
def datasets_list() -> None:
    """List the built-in datasets."""
    from polymodal.datasets import DATASETS

    for name, d in DATASETS.items():
        console.print(f"[bold]{name}[/]: {d['description']}")


@datasets_app.command("export")
def datasets_export(
    name: str = typer.Argument(..., help="Dataset name, e.g. av-digits"),
    out_dir: Path = typer.Argument(..., help="Folder to write files + Parquet manifests into"),
    limit: Optional[int] = typer.Option(None, help="Export only a class-stratified subset of this many rows per split"),
) -> None:
    """Write a built-in dataset as ordinary files (PNG, WAV) plus Parquet manifests."""
    from polymodal.datasets import DATASETS

    def go():
        if name not in DATASETS:
            raise PolymodalError(f"unknown dataset {name!r}; available: {', '.join(DATASETS)}")
        paths = DATASETS[name]["export"](out_dir, limit=limit)
        for split, p in paths.items():
            console.print(f"[green]{split}[/]: {p}")

    _run(go)


@app.command("list")
def list_parts(what: str = typer.Argument(..., help="encoders | fusions | heads | reducers | datasets")) -> None:
    """List registered parts by name."""
    from polymodal.nets import multimodal as _nets  # noqa: F401  (registers everything)
    from polymodal.encoders.base import ENCODERS
    from polymodal.fusion.base import FUSIONS
    from polymodal.heads.task import HEADS
    from polymodal.tokens import REDUCERS

    def go():
        regs = {"encoders": ENCODERS, "fusions": FUSIONS, "heads": HEADS, "reducers": REDUCERS}
        if what == "datasets":
            return datasets_list()
        if what not in regs:
            raise PolymodalError(f"cannot list {what!r}; choose one of: {', '.join([*regs, 'datasets'])}")
        for name, doc in regs[what].describe().items():
            console.print(f"[bold]{name}[/]: {doc}")

    _run(go)


from polymodal.cli.align import register as _register_align  # noqa: E402  (align, embed, index, search, zero-shot)

_register_align(app)


from polymodal.cli.robustness import register as _register_robustness  # noqa: E402

_register_robustness(app)  # compare, robustness, explain


from polymodal.cli.tokens import register as _register_tokens  # noqa: E402

_register_tokens(app, _run, console)  # bench tokens


def main() -> None:  # pragma: no cover
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
