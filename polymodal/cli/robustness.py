"""CLI commands of the robustness harness: ``compare``, ``robustness``, ``explain`` (registered by ``cli.py``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

import typer
from rich.table import Table


def _floats(text: Optional[str], flag: str) -> list[float]:
    from polymodal.errors import PolymodalError

    if not text:
        return []
    try:
        return [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise PolymodalError(f"{flag} expects comma-separated numbers such as 0,0.1,0.3,0.5; got {text!r}") from None


def _fmt(v: Any) -> str:
    return f"{v:.4f}" if isinstance(v, float) else str(v)


def _table(title: str, headers: list[str], rows: list[list[Any]]) -> Table:
    t = Table(title=title)
    for i, h in enumerate(headers):
        t.add_column(h, justify="left" if i == 0 else "right")
    for r in rows:
        t.add_row(*[_fmt(v) for v in r])
    return t


def compare_cmd(
    data: Path = typer.Argument(..., help="Training table (.csv/.parquet/.jsonl), or a built-in dataset name"),
    label: str = typer.Option(..., "--label", "-l", help="Target column"),
    test: Optional[Path] = typer.Option(None, help="Test table (default: a stratified --test-fraction of DATA)"),
    fusions: str = typer.Option("all", help="Comma-separated fusions, or 'all' (see `polymodal list fusions`)"),
    seeds: int = typer.Option(3, help="Seeds per fusion (0 .. seeds-1)"),
    out: Path = typer.Option(Path("runs/compare"), "--out", "-o", help="Folder for compare.json, compare.md, plots"),
    epochs: int = typer.Option(40, help="Maximum epochs per model (early stopping on validation)"),
    noise: str = typer.Option("0,0.1,0.3,0.5", help="Corruption levels for the noise sweep ('' to skip)"),
    unimodal: bool = typer.Option(True, help="Also train one model per modality (for the integration test)"),
    workers: int = typer.Option(2, help="Models trained at a time (each with 1 torch thread)"),
    test_fraction: float = typer.Option(0.2, help="Held-out fraction when --test is not given"),
    save_models: bool = typer.Option(False, help="Save every trained model under OUT/models/"),
    kinds: Optional[str] = typer.Option(None, help="Override column kinds: col=image,col2=ignore,..."),
) -> None:
    """Train every fusion (x seeds) under one protocol; one table of accuracy, parameters, time, latency."""
    from polymodal.cli.app import _parse_kinds, _run, console
    from polymodal.experiments.compare import compare, summary_rows
    from polymodal.datasets import DATASETS

    def go():
        train: Any = data
        test_src: Any = test
        if not data.exists() and str(data) in DATASETS:  # a built-in dataset: its own train/test split
            train, test_src = ("dataset", str(data), "train"), ("dataset", str(data), "test")
        opts: dict[str, Any] = {"epochs": epochs}
        if kinds:
            opts["kinds"] = _parse_kinds(kinds)
        console.print(f"comparing fusions [bold]{fusions}[/] x {seeds} seed(s) ({workers} model(s) at a time) ...")
        summary = compare(
            train, label, test=test_src, fusions=fusions, seeds=tuple(range(seeds)), unimodal=unimodal,
            noise=_floats(noise, "--noise"), test_fraction=test_fraction, workers=workers, out=out,
            save_models=save_models, on_done=lambda r: console.print(f"  {r['key']}: {r['score']:.4f} ({r['train_s']:.0f}s)"),
            **opts,
        )
        headers, rows = summary_rows(summary)
        console.print(_table(f"compare ({seeds} seed(s)); mean over seeds", headers, rows))
        for name, integ in summary.get("integration", {}).items():
            console.print(
                f"  integration [bold]{name}[/]: beats every unimodal model and their linear combination in "
                f"{integ['beats_all_seeds']}/{integ['n_seeds']} seeds (fused - linear = {integ['fused_minus_linear_mean']:+.4f})"
            )
        console.print(f"[green]wrote[/] {out / 'compare.json'}, {out / 'compare.md'}")

    _run(go)


def robustness_cmd(
    run: Path = typer.Argument(..., help="Run directory written by `polymodal fit`"),
    data: Path = typer.Argument(..., help="Labelled test table"),
    missing: str = typer.Option("subsets,mnar", help="Missing-modality studies: subsets, mnar ('' to skip)"),
    noise: str = typer.Option("0,0.1,0.3,0.5", help="Corruption levels in [0, 1] ('' to skip)"),
    corruption: Optional[str] = typer.Option(None, help="Per modality: image=occlusion,audio=audio_noise,..."),
    mnar_rate: float = typer.Option(0.3, help="Fraction of rows a MNAR pattern hides"),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Folder for robustness.json and plots"),
    seed: int = typer.Option(0),
    on_error: str = typer.Option("raise", help="raise | missing"),
) -> None:
    """Accuracy per modality subset, under MNAR missingness (and its shift), and under increasing noise."""
    from polymodal.cli.app import _parse_pairs, _run, _split, console
    from polymodal.evaluate.robustness import robustness

    def go():
        from polymodal.recipes.fit import load

        model = load(run)
        rep = robustness(
            model, data, missing=_split(missing) or [], noise=_floats(noise, "--noise"),
            corruptions=_parse_pairs(corruption, "--corruption", "modality=corruption"), mnar_rate=mnar_rate,
            seed=seed, on_error=on_error, out=out,
        )
        for title, headers, rows in robustness_tables(rep):
            console.print(_table(title, headers, rows))
        if out:
            console.print(f"[green]wrote[/] {out / 'robustness.json'}" + "".join(f", {out / p}" for p in rep.get("plots", [])))

    _run(go)


def robustness_tables(rep: dict[str, Any]) -> list[tuple[str, list[str], list[list[Any]]]]:
    metric = rep["metric"]
    tables = []
    if "subsets" in rep:
        tables.append((f"{metric} by modalities present (clean: {rep['clean']:.4f})", ["modalities", metric],
                       [[k, v] for k, v in rep["subsets"].items()]))
    if "mnar" in rep:
        rows = []
        for m, r in rep["mnar"].items():
            if not isinstance(r, dict):
                continue
            rows.append([m, "MCAR", r["mcar"]["metric"], "-", "-"])
            for mode in ("label", "content"):
                if mode in r:
                    rows.append([m, f"MNAR by {mode}", r[mode]["pattern"]["metric"], r[mode]["shifted"]["metric"],
                                 r[mode]["pattern"].get("mutual_info", "-")])
        tables.append((f"{metric} with {rep['mnar']['rate']:.0%} of rows missing a modality", 
                       ["modality hidden", "pattern", metric, "shifted pattern", "MI(missing; label)"], rows))
    if "noise" in rep:
        nz = rep["noise"]
        headers = ["corrupted", "corruption"] + [f"level {lv:g}" for lv in nz["levels"]] + ["relative robustness"]
        rows = [[k, nz["corruption"].get(k, "each default"), *c, nz["relative_robustness"][k]] for k, c in nz["curves"].items()]
        tables.append((f"{metric} under corruption", headers, rows))
    return tables


def explain_cmd(
    run: Path = typer.Argument(..., help="Run directory written by `polymodal fit`"),
    data: Path = typer.Argument(..., help="Rows to explain (a label column, if present, groups the summary)"),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Per-row contributions: .csv / .parquet / .jsonl"),
    method: str = typer.Option("auto", help="shapley | loo | auto (Shapley for <= 5 modalities)"),
    on_error: str = typer.Option("raise", help="raise | missing"),
    show: int = typer.Option(10, help="Rows to print"),
) -> None:
    """Per-modality contribution to each prediction (exact Shapley over modalities, or leave-one-out)."""
    from polymodal.cli.app import _run, _write_table, console
    from polymodal.evaluate.attribution import explain

    def go():
        from polymodal.errors import PolymodalError
        from polymodal.recipes.fit import load

        if method not in ("auto", "shapley", "loo"):
            raise PolymodalError(f"--method must be shapley, loo or auto; got {method!r}")
        model = load(run)
        table, summary = explain(model, data, shapley=None if method == "auto" else method == "shapley", on_error=on_error)
        used = summary["method"]
        cols = [c for c in table.columns if c.startswith(f"{used}_")]
        console.print(_table(
            f"{used} contribution to the predicted class's probability (first {min(show, len(table))} rows)",
            ["row", "prediction", *[c[len(used) + 1:] for c in cols]],
            [[i, r["prediction"], *[float(r[c]) for c in cols]] for i, r in table.head(show).iterrows()],
        ))
        per_class = summary.get("per_class", {}).get(used, {})
        if per_class:
            mods = list(next(iter(per_class.values())))
            console.print(_table(f"mean {used} contribution per {summary['grouped_by']} class", ["class", *mods],
                                 [[c, *[v[m] for m in mods]] for c, v in per_class.items()]))
        if out:
            _write_table(table, out)
            out.with_suffix(".summary.json").write_text(json.dumps(summary, indent=2))
            console.print(f"[green]wrote[/] {out} and {out.with_suffix('.summary.json')}")

    _run(go)


def register(app: typer.Typer) -> None:
    app.command("compare")(compare_cmd)
    app.command("robustness")(robustness_cmd)
    app.command("explain")(explain_cmd)
