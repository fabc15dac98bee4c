"""``polymodal export RUN --onnx out/m1.onnx``: one ONNX graph for every subset of modalities, checked against
PyTorch (onnxruntime, every subset, real rows) before it says "done"; the record goes to ``out/m1.onnx.json``."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from polymodal.cli import common as c


@c.guarded
def export(
    run: Path = typer.Argument(..., help="Run directory written by `polymodal fit`"),
    onnx: Optional[Path] = typer.Option(None, "--onnx", help="Graph file to write [RUN/model.onnx, where "
                                        "`predict --backend onnx` looks]"),
    opset: Optional[int] = typer.Option(None, min=1, help="ONNX opset (18 or newer) [the exporter's default]"),
    check_data: Optional[Path] = typer.Option(None, help="Table of the run's own data (its columns) to check "
                                              "onnxruntime against PyTorch on [a bundled dataset with the run's "
                                              "columns, e.g. av-digits]"),
    check_rows: Optional[int] = typer.Option(None, min=1, help="Rows of the check table to use [32]"),
    atol: Optional[float] = typer.Option(None, min=0.0, help="Largest accepted |onnxruntime - PyTorch| of the "
                                         "outputs [1e-4]"),
    threads: Optional[int] = c.threads_option(),
) -> None:
    """Export a run to ONNX (encoders + fusion + head, `present` flags as inputs, dynamic batch axis) and check it."""
    from polymodal.data.table import read_table
    from polymodal.errors import PolymodalError
    from polymodal.export import DEFAULT_ATOL, DEFAULT_NAME, DEFAULT_ROWS, bundled_check_table, export_run
    from polymodal.export.run import check_options
    from polymodal.recipes.loading import load

    check_rows = DEFAULT_ROWS if check_rows is None else check_rows
    out = onnx if onnx is not None else run / DEFAULT_NAME
    check_options(out, opset)
    c.set_threads(threads)
    model = load(run)
    if check_data is not None:
        table = read_table(check_data)
        frame, source = table.frame.head(check_rows), f"{check_data} (first {min(check_rows, len(table.frame))} rows)"
        base = table.base_dir
    else:
        found = bundled_check_table(model.schema, check_rows)
        if found is None:
            raise PolymodalError(
                "the export is checked against PyTorch on real rows of the run's data, and no bundled dataset has "
                f"this run's columns ({', '.join(col for s in model.schema for col in s.columns)}): pass "
                "--check-data TABLE (a few rows of the run's own data, e.g. its validation table)")
        (frame, source), base = found, None
    _, ds, _ = model.decode(frame, labels="ignore", progress=False, base_dir=base)
    c.note(f"exporting {model!r} to {out}; checking on {source}")
    rec = export_run(model.net, model.schema, ds, out, opset=opset, atol=DEFAULT_ATOL if atol is None else atol,
                     run=run, check_source=source, threads=threads)
    c.print_table("onnxruntime vs PyTorch (max |diff| of the outputs)", ["subset", "max |diff|"],
                  [[k, f"{v:.3g}"] for k, v in {**rec["check"]["subsets"], **rec["check"]["shapes"]}.items()])
    c.say(f"max |diff| {rec['max_abs_diff']:.3g} <= atol {rec['atol']:g} over {rec['check']['rows']} rows, "
          f"opset {rec['opset']}")
    c.done("done", f"wrote {out} and {out}.json")
