"""``polymodal compare`` / ``robustness`` / ``explain``: the evaluation harness. Train every fusion under one
protocol; accuracy per modality subset, under MNAR missingness and under noise; per-modality contributions."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

import typer

from polymodal.cli import common as c
from polymodal.cli.common import auto_report


# ``experiments.compare.summary_rows`` columns by type: a count, seconds (1 decimal), milliseconds; the metric
# columns take the default (4 decimals)
COMPARE_FORMATS = {"params": "d", "train s": ".1f", "latency ms/sample": ".4f"}


@c.guarded
def compare(
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
    from polymodal.datasets import DATASETS
    import polymodal.experiments.compare as cmp

    train: Any = data
    test_src: Any = test
    if not data.exists() and str(data) in DATASETS:  # a built-in dataset: its own train/test split
        train, test_src = ("dataset", str(data), "train"), ("dataset", str(data), "test")
    opts: dict[str, Any] = {"epochs": epochs}
    if kinds:
        opts["kinds"] = c.kinds(kinds)
    c.say(f"comparing fusions {fusions} x {seeds} seed(s) ({workers} model(s) at a time) ...")
    summary = cmp.compare(
        train, label, test=test_src, fusions=fusions, seeds=tuple(range(seeds)), unimodal=unimodal,
        noise=c.floats(noise, "--noise"), test_fraction=test_fraction, workers=workers, out=out,
        save_models=save_models, on_done=lambda r: c.say(f"  {r['key']}: {r['score']:.4f} ({r['train_s']:.1f}s)"),
        **opts,
    )
    headers, rows = cmp.summary_rows(summary)
    c.print_table(f"compare ({seeds} seed(s)); mean over seeds", headers, rows, formats=COMPARE_FORMATS)
    for name, integ in summary.get("integration", {}).items():
        if "skipped" in integ:
            c.note(f"integration {name}: skipped: {integ['skipped']}")
            continue
        c.say(
            f"  integration {name}: beats every unimodal model and their linear combination in "
            f"{integ['beats_all_seeds']}/{integ['n_seeds']} seeds "
            f"(fused - linear = {integ['fused_minus_linear_mean']:+.4f})"
        )
    plots = ", ".join(str(out / p) for p in summary.get("plots", []))
    c.done("wrote", f"{out / 'compare.json'}, {out / 'compare.md'}" + (f", {plots}" if plots else ""))
    auto_report([out], out / "report.html")


@c.guarded
def robustness(
    run: Path = typer.Argument(..., help="Run directory written by `polymodal fit`"),
    data: Path = typer.Argument(..., help="Labelled test table"),
    missing: str = typer.Option("subsets,mnar", help="Missing-modality studies: subsets, mnar ('' to skip)"),
    noise: str = typer.Option("0,0.1,0.3,0.5", help="Corruption levels in [0, 1] ('' to skip)"),
    corruption: Optional[str] = typer.Option(
        None, help="Per modality: image=occlusion,audio=audio_noise,... (`polymodal list corruptions`)",
    ),
    mnar_rate: float = typer.Option(0.3, help="Fraction of rows a MNAR pattern hides"),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Folder for robustness.json and plots"),
    seed: int = typer.Option(0),
    on_error: str = typer.Option("raise", help=c.ON_ERROR_HELP),
) -> None:
    """Accuracy per modality subset, under MNAR missingness (and its shift), and under increasing noise."""
    from polymodal.evaluate.robustness import robustness as robustness_
    from polymodal.recipes.loading import load

    levels = c.floats(noise, "--noise")
    corruptions = c.pairs(corruption, "--corruption", "modality=corruption")
    rep = robustness_(
        load(run), data, missing=c.names(missing) or [], noise=levels, corruptions=corruptions,
        mnar_rate=mnar_rate, seed=seed, on_error=on_error, out=out,
    )
    for title, headers, rows in robustness_tables(rep):
        c.print_table(title, headers, rows)
    if out:
        c.done("wrote", f"{out / 'robustness.json'}" + "".join(f", {out / p}" for p in rep.get("plots", [])))
        auto_report([run, out], out / "report.html")


def robustness_tables(rep: dict[str, Any]) -> list[tuple[str, list[str], list[list[Any]]]]:
    """The robustness report as (title, headers, rows) tables: subsets, MNAR patterns, noise curves."""
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
        rows = [[k, nz["corruption"].get(k, "each default"), *v, nz["relative_robustness"][k]]
                for k, v in nz["curves"].items()]
        tables.append((f"{metric} under corruption", headers, rows))
    return tables


METHODS = ("auto", "shapley", "loo")


@c.guarded
def explain(
    run: Path = typer.Argument(..., help="Run directory written by `polymodal fit`"),
    data: Path = typer.Argument(..., help="Rows to explain (a label column, if present, groups the summary)"),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Per-row contributions: .csv / .parquet / .jsonl"),
    method: str = typer.Option("auto", help="shapley | loo | auto (Shapley for <= 5 modalities)"),
    on_error: str = typer.Option("raise", help=c.ON_ERROR_HELP),
    show: int = typer.Option(10, help="Rows to print"),
) -> None:
    """Per-modality contribution to each prediction (exact Shapley over modalities, or leave-one-out)."""
    from polymodal.errors import PolymodalError
    from polymodal.evaluate.attribution import explain as explain_
    from polymodal.recipes.loading import load

    if method not in METHODS:
        raise PolymodalError(f"--method must be shapley, loo or auto; got {method!r}")
    model = load(run)
    rows, summary = explain_(model, data, shapley=None if method == "auto" else method == "shapley",
                             on_error=on_error)
    used = summary["method"]
    cols = [col for col in rows.columns if col.startswith(f"{used}_")]
    head = rows.head(show)
    # column by column, not iterrows(): a row Series would turn an integer class (4) into a float (4.0000)
    c.print_table(
        f"{used} contribution to the predicted class's probability (first {len(head)} rows)",
        ["row", "prediction", *[col[len(used) + 1:] for col in cols]],
        [list(r) for r in zip(head.index, head["prediction"], *(head[col] for col in cols))],
    )
    per_class = summary.get("per_class", {}).get(used, {})
    if per_class:
        mods = list(next(iter(per_class.values())))
        c.print_table(f"mean {used} contribution per {summary['grouped_by']} class", ["class", *mods],
                      [[k, *[v[m] for m in mods]] for k, v in per_class.items()])
    note = c.decode_note(summary.get("decode_report"))
    if note:
        c.say(note)
    if out:
        c.write_table(rows, out)
        out.with_suffix(".summary.json").write_text(json.dumps(summary, indent=2))
        c.done("wrote", f"{out} and {out.with_suffix('.summary.json')}")
