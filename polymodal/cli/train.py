"""``polymodal fit`` / ``evaluate`` / ``predict``: train a supervised model on a table, score it, predict with it.

``fit`` takes its configuration in layers, later wins: ``--preset`` < ``--config`` < explicit flags < ``--set``.
Every config flag defaults to None, so only the flags given override the preset / config file. ``--out`` is a
run folder: ``-`` is refused, and so is an existing non-empty folder unless ``--overwrite`` (checked before the
table is read). ``predict --out -`` writes CSV to stdout (its notes then go to stderr).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer

from polymodal.cli import common as c
from polymodal.cli.common import auto_report, beside


@c.guarded
def fit(
    train: Path = typer.Argument(..., help="Training table: .csv, .parquet or .jsonl, or a folder of Parquet shards"),
    label: str = typer.Option(..., "--label", "-l", help="Target column"),
    out: Path = typer.Option(..., "--out", "-o", help="Run directory to write (config, schema, weights, report)"),
    preset: Optional[str] = c.preset_option(),
    config: Optional[Path] = c.config_option(),
    sets: Optional[list[str]] = c.set_option(),
    fusion: Optional[str] = typer.Option(
        None, help="Fusion operator, see `polymodal list fusions` (default transformer)",
    ),
    encoders: Optional[str] = typer.Option(
        None, help="Encoder per modality or kind: image=efficientnet_lite0,text=minilm",
    ),
    dim: Optional[int] = typer.Option(None, help="Token / fused vector width (default 64)"),
    modality_dropout: Optional[float] = typer.Option(
        None, help="Per-sample probability of hiding each modality in training (default 0.5)",
    ),
    aux_weight: Optional[float] = typer.Option(None, help="Weight of the unimodal auxiliary losses (default 1.0)"),
    token_budget: Optional[str] = typer.Option(None, help=c.TOKEN_BUDGET_HELP + " (train with it, too)"),
    reducer: Optional[str] = typer.Option(None, help=c.REDUCER_HELP),
    align: Optional[str] = typer.Option(
        None, help="Also align modalities (clip | siglip | symile | ...): classify and retrieve",
    ),
    align_weight: Optional[float] = typer.Option(
        None, help="Weight of the alignment objective in the loss (default 1.0)",
    ),
    epochs: Optional[int] = typer.Option(None, help="Maximum epochs, early stopping on validation (default 40)"),
    batch_size: Optional[int] = typer.Option(None, help="(default 64)"),
    lr: Optional[float] = typer.Option(None, help="Peak learning rate (default 0.002)"),
    patience: Optional[int] = typer.Option(
        None, help="Epochs without validation improvement before stopping (default 8)",
    ),
    val_fraction: Optional[float] = typer.Option(
        None, help="Rows held out for early stopping without --validation (default 0.1)",
    ),
    seed: Optional[int] = typer.Option(None, help="(default 0)"),
    validation: Optional[Path] = typer.Option(None, help="Validation table (default: hold out --val-fraction)"),
    kinds: Optional[str] = typer.Option(None, help="Override column kinds: col=image,col2=ignore,..."),
    group: Optional[str] = typer.Option(
        None, "--group", "--groups", help="Group columns into one modality: vitals=hr+bp,scan=ct_path",
    ),
    use: Optional[str] = typer.Option(None, help="Keep only these modalities (comma-separated)"),
    ignore: Optional[str] = typer.Option(None, help="Columns to ignore (comma-separated)"),
    task: Optional[str] = typer.Option(None, help="classify | regress (default: inferred from the label)"),
    on_error: str = typer.Option("raise", help=c.ON_ERROR_HELP),
    stream: Optional[str] = typer.Option(
        None, help="Data path: on (decode per batch in DataLoader workers; for tables larger than memory) | off "
        "(decode once, in memory) | auto (by decoded size, see docs/scale.md) (default auto)",
    ),
    num_workers: Optional[int] = typer.Option(
        None, help="DataLoader workers decoding batches when streaming (default 2; 0: in the training process)",
    ),
    time_limit: Optional[float] = c.time_limit_option(),
    threads: Optional[int] = c.threads_option(),
    overwrite: bool = c.overwrite_option(),
    devices: Optional[int] = typer.Option(
        None, help="Processes (CPU) or GPUs per node; > 1 trains with DDP (default 1)",
    ),
    num_nodes: Optional[int] = typer.Option(None, help="Machines (started by torchrun / SLURM, see docs/scale.md)"),
    strategy: Optional[str] = typer.Option(None, help="auto | ddp | fsdp (GPU only) (default auto)"),
    precision: Optional[str] = typer.Option(None, help="32-true | bf16-mixed | 16-mixed (GPU) (default 32-true)"),
    checkpoint_every: Optional[int] = typer.Option(
        None, help="Crash-safe checkpoint every N steps and at each epoch end, 0: epoch ends only (default 100)",
    ),
    resume: bool = typer.Option(False, "--resume", help="Continue the interrupted run in --out from its checkpoint"),
    ray_address: Optional[str] = typer.Option(None, help="Train on Ray Train workers: local | auto | ADDRESS"),
    workers: Optional[int] = typer.Option(None, help="Ray Train workers (with --ray-address; default 1)"),
    init: Optional[Path] = typer.Option(
        None, help="Start from this run's weights (`polymodal pretrain --out`): encoders, and the fusion if the same",
    ),
    freeze: Optional[str] = typer.Option(
        None, help="Keep these parts fixed (with --init): encoders | fusion | encoders,fusion (a linear probe)",
    ),
) -> None:
    """Train a model on a table and save it to --out."""
    import contextlib

    from polymodal.recipes.fit import fit as fit_
    from polymodal.train.distributed import is_rank_zero

    alignment = c.given(objective=align, weight=align_weight)
    flags = c.given(
        fusion=fusion, encoders=c.encoder_flag(encoders), dim=dim, modality_dropout=modality_dropout,
        aux_weight=aux_weight, tokens=c.tokens_flag(token_budget, reducer), align=alignment or None, epochs=epochs,
        batch_size=batch_size, lr=lr, patience=patience, val_fraction=val_fraction, seed=seed,
        max_minutes=c.minutes(time_limit), stream=stream, num_workers=num_workers, devices=devices,
        num_nodes=num_nodes, strategy=strategy,
        precision=precision, checkpoint_every_n_steps=checkpoint_every,
    )
    options = c.layered(flags, sets)  # the recipe checks names, options and --out before reading the table
    table_flags = dict(kinds=c.kinds(kinds), groups=c.groups(group), use=c.names(use), ignore=c.names(ignore) or ())
    if align is None and align_weight is not None:
        _check_align_weight(options, preset, config)
    rank_zero = is_rank_zero()  # the other ranks of a DDP run re-run this command: they only train
    if rank_zero:
        c.check_run_out(out, overwrite or resume)
    c.set_threads(threads)
    # a resumed run keeps the best-weights checkpoint the interrupted one wrote
    with c.training(), c.run_folder(out) if rank_zero and not resume else contextlib.nullcontext():
        model = fit_(train, label, validation=validation, task=task, out=out, preset=preset, config=config,
                     on_error=on_error, resume=resume, ray_address=ray_address, workers=workers, init=init,
                     freeze=freeze,
                     progress=rank_zero, **table_flags, **options)
    if not rank_zero:
        return
    info = model.info
    c.done("saved", f"{out}  ({model!r})")
    c.say(
        f"trained {info['training']['epochs_run']} epochs in {info['train_s']:.1f}s; "
        f"best validation: {_fmt_best(info['training'])}; {c.decode_note(info['decode_report']) or 'decode: no errors'}"
    )
    auto_report([out], out / "report.html")
    c.stop_if_interrupted(info["training"], out)


def _check_align_weight(options: dict[str, Any], preset: Optional[str], config: Optional[Path]) -> None:
    """``--align-weight`` alone re-weights an alignment the preset / config sets; it never turns one on."""
    from polymodal.config import ConfigError, resolve

    rest = dict(options)
    weight = dict(rest.pop("align", None) or {})
    weight.pop("weight", None)
    if weight:
        rest["align"] = weight
    cfg, _ = resolve(rest, preset=preset, config=config)
    if cfg.align is None:
        raise ConfigError("--align-weight weighs an alignment objective: give one with --align clip (or siglip, ...)")


def _fmt_best(training: dict) -> str:
    for k, v in training.items():
        if k.startswith("best_val") and v is not None:
            return f"{k[5:]}={v:.4f} (epoch {training.get('best_epoch')})"
    return "n/a"


@c.guarded
def evaluate(
    run: Path = typer.Argument(..., help="Run directory written by `polymodal fit` or `polymodal align`"),
    data: Path = typer.Argument(..., help="Labelled table"),
    out: Optional[Path] = typer.Option(None, help="Write the metrics JSON here"),
    subsets: bool = typer.Option(True, help="Also score every non-empty subset of modalities"),
    on_error: str = typer.Option("raise", help=c.ON_ERROR_HELP),
    label: Optional[str] = typer.Option(None, help="Alignment runs: label column for class-level retrieval"),
    token_budget: Optional[str] = typer.Option(None, help=c.TOKEN_BUDGET_HELP),
    reducer: Optional[str] = typer.Option(None, help=c.REDUCER_HELP),
    threads: Optional[int] = c.threads_option(),
) -> None:
    """Metrics (accuracy, macro-F1, confusion matrix) plus accuracy for every subset of modalities; for an
    alignment run (`polymodal align`): R@1/5/10 and median rank in both directions, modality gap."""
    from polymodal.recipes.loading import load
    from polymodal.recipes.runs import run_type

    c.set_threads(threads)
    if run_type(run) == "align":
        return _evaluate_align(run, data, out, label, on_error)
    model = with_budget(load(run), token_budget, reducer)
    res = model.evaluate(data, subsets=subsets, on_error=on_error)
    key, second = ("accuracy", "macro_f1") if model.schema.task == "classify" else ("rmse", "r2")
    scores = [("all", res["metrics"]), *((f"only {k}", v) for k, v in res.get("subsets", {}).items())]
    c.print_table("evaluation", ["modalities used", "n", key, second],
                  [[name, m["n"], m[key], m[second]] for name, m in scores], formats={"n": "d"})
    _decode_note(res.get("decode_report"))
    if out:
        c.write_json(res, out)
        c.done("wrote", out)
        auto_report([run, out], beside(out), data=data)


def _decode_note(report: Any, *, stderr: bool = False) -> None:
    """How many values decoding treated as missing (``--on-error missing``), as ``fit`` says it."""
    text = c.decode_note(report)
    if text:
        (c.note if stderr else c.say)(text)


def with_budget(model: Any, token_budget: Optional[str], reducer: Optional[str]) -> Any:
    """The loaded model, or a copy of it under the requested token budget (``Model.with_token_budget``)."""
    from polymodal.errors import PolymodalError

    b = c.budget(token_budget)
    if b is None and not reducer:
        return model
    tokens = model.cfg.tokens
    try:
        return model.with_token_budget(tokens.budget if b is None else b, reducer or tokens.reducer)
    except ValueError as e:  # a budget naming unknown modalities, an unknown reducer
        raise PolymodalError(str(e)) from None


def _evaluate_align(run: Path, data: Path, out: Optional[Path], label: Optional[str], on_error: str) -> None:
    """The retrieval branch of ``evaluate``: R@k and median rank per direction and level, the modality gap."""
    from polymodal.recipes.loading import load

    res = load(run).evaluate(data, label=label, on_error=on_error)
    rows = [
        [direction, level, *(f"{s[k]:.3f}" for k in ("R@1", "R@5", "R@10")), f"{s['median_rank']:g}"]
        for direction, r in res["retrieval"].items() for level, s in r.items()
    ]
    title = f"retrieval on {res['n']} rows" + (f" (class = {res['label']})" if res["label"] else "")
    c.print_table(title, ["direction", "level", "R@1", "R@5", "R@10", "median rank"], rows)
    gaps = res["modality_gap"]
    for pair, after in gaps["after"].items():
        before = gaps.get("before", {}).get(pair)
        c.say(f"modality gap {pair}: {after:.3f}" + ("" if before is None else f" (before alignment: {before:.3f})"))
    _decode_note(res.get("decode_report"))
    if out:
        c.write_json(res, out)
        c.done("wrote", out)
        auto_report([run, out], beside(out), data=data)


@c.guarded
def predict(
    run: Path = typer.Argument(..., help="Run directory written by `polymodal fit`"),
    data: Path = typer.Argument(..., help="Table to predict"),
    out: Path = typer.Option(..., "--out", "-o", help="Output .csv / .parquet / .jsonl, or - for CSV on stdout"),
    on_error: str = typer.Option("raise", help=c.ON_ERROR_HELP),
    threads: Optional[int] = c.threads_option(),
    backend: Optional[str] = typer.Option(None, help="torch | onnx: onnxruntime on the graph `polymodal export` "
                                          "wrote [torch]"),
    onnx: Optional[Path] = typer.Option(None, help="Graph for --backend onnx [RUN/model.onnx]"),
) -> None:
    """Predict every row of a table; writes predictions (and class probabilities)."""
    from polymodal.errors import PolymodalError, unknown_message
    from polymodal.recipes.loading import load

    if backend not in (None, "torch", "onnx"):
        raise PolymodalError(f"--backend: {unknown_message('backend', backend, ['onnx', 'torch'])}")
    if onnx is not None and backend != "onnx":
        raise PolymodalError("--onnx PATH is the graph of --backend onnx: pass --backend onnx as well")
    c.set_threads(threads)
    graph = None
    if backend == "onnx":
        from polymodal.export import find_graph

        graph = find_graph(run, onnx)
    from polymodal.data.kinds.base import DecodeReport

    report = DecodeReport()
    parts = load(run).predict_chunks(data, on_error=on_error, backend=backend or "torch", onnx=graph, report=report)
    to_stdout = c.is_stdout(out)
    n = write_chunks(parts, out)
    c.done("wrote", f"{n} predictions to {'stdout' if to_stdout else out}", stderr=to_stdout)
    _decode_note(report.to_dict(), stderr=to_stdout)


def write_chunks(parts: Any, out: Path) -> int:
    """Write frames as they come (``predict`` decodes and scores in chunks, so memory stays one chunk's), in the
    formats of ``common.write_table``: .parquet / .pq (one row group per chunk), .jsonl / .ndjson, else CSV (row
    index as ``row``), ``-`` for CSV on stdout. A file is written beside ``out`` and renamed into place at the
    end, so a failure halfway leaves no partial file. Returns the number of rows written."""
    import os

    if c.is_stdout(out):
        n = 0
        for k, part in enumerate(parts):
            typer.echo(part.to_csv(index_label="row", header=k == 0), nl=False)
            n += len(part)
        return n
    suffix = out.suffix.lower()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.partial")
    n, writer = 0, None
    try:
        with open(tmp, "wb") as f:
            for k, part in enumerate(parts):
                if suffix in (".parquet", ".pq"):
                    import pyarrow as pa
                    import pyarrow.parquet as pq

                    table = pa.Table.from_pandas(part, preserve_index=True)
                    writer = writer or pq.ParquetWriter(f, table.schema)
                    writer.write_table(table.cast(writer.schema))
                elif suffix in (".jsonl", ".ndjson"):
                    f.write(part.reset_index().to_json(orient="records", lines=True).encode())
                else:
                    f.write(part.to_csv(index_label="row", header=k == 0).encode())
                n += len(part)
            if writer is not None:
                writer.close()
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return n
