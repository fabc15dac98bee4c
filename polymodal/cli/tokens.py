"""Token-budget command line: ``polymodal bench tokens`` and the ``--token-budget`` / ``--reducer`` options of
``fit`` and ``evaluate`` (parsed here, registered in ``cli.py``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from polymodal.errors import PolymodalError

bench_app = typer.Typer(no_args_is_help=True, help="Speed / accuracy / FLOPs measurements of a trained run.")

TOKEN_BUDGET_HELP = "Keep this fraction of each modality's tokens (0-1], or per modality: image=0.25,audio=0.5"
REDUCER_HELP = "Token reducer: merge | prune | pool | zip"


def parse_budget(text: Optional[str]) -> float | dict[str, float] | None:
    """``"0.5"`` -> 0.5; ``"image=0.25,audio=0.5"`` -> dict; errors name the flag and the expected form."""
    if text is None or not str(text).strip():
        return None
    text = str(text).strip()
    try:
        if "=" not in text:
            return float(text)
        out = {}
        for item in text.split(","):
            key, value = item.split("=", 1)
            out[key.strip()] = float(value)
        return out
    except ValueError:
        raise PolymodalError(
            f"--token-budget expects a fraction like 0.5 or per-modality pairs like image=0.25,audio=0.5, got {text!r}"
        ) from None


def budget_options(token_budget: Optional[str], reducer: Optional[str]) -> dict:
    """Keyword options for ``fit`` from the two flags (empty when neither is given)."""
    opts = {}
    b = parse_budget(token_budget)
    if b is not None:
        opts["token_budget"] = b
    if reducer:
        opts["reducer"] = reducer
    return opts


def apply_budget(model, token_budget: Optional[str], reducer: Optional[str]):
    """The loaded model, or a copy of it under the requested budget (``Model.with_token_budget``)."""
    b = parse_budget(token_budget)
    if b is None and not reducer:
        return model
    try:
        return model.with_token_budget(model.model_cfg.token_budget if b is None else b,
                                       reducer or model.model_cfg.reducer)
    except ValueError as e:
        raise PolymodalError(str(e)) from None


def _floats(text: str, flag: str) -> list[float]:
    try:
        return [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise PolymodalError(f"{flag} expects comma-separated numbers like 1,0.5,0.25, got {text!r}") from None


def bench_tokens(
    run: Path, data: Path, budgets: str, reducers: str, schedule: str, batch_size: int, reps: int, threads: int,
    out: Optional[Path], plot: Optional[Path], console,
) -> dict:
    import torch
    from rich.table import Table

    from polymodal.recipes.fit import load
    from polymodal.evaluate.token_bench import budget_curve, plot_curve

    torch.set_num_threads(threads)
    bs = _floats(budgets, "--budgets")
    rs = [r.strip() for r in reducers.split(",") if r.strip()]
    model = load(run)
    try:
        res = budget_curve(model, data, bs, rs, batch_size=batch_size, reps=reps, token_options={"schedule": schedule})
    except ValueError as e:
        raise PolymodalError(str(e)) from None
    table = Table(title=f"token budgets: {run} on {data} ({res['tokens_full']:.0f} tokens/sample at full budget, "
                        f"batch {res['batch_size']}, {threads} thread(s))")
    for h in ("reducer", "budget", "tokens", "accuracy", "ms/batch", "throughput x", "FLOPs x", "MFLOPs/sample",
              "attn MB (peak layer)"):
        table.add_column(h, justify="left" if h == "reducer" else "right")
    for reducer, rows in res["curve"].items():
        for b, row in rows.items():
            acc = "-" if row["acc"] is None else f"{row['acc']:.3f}"
            table.add_row(reducer, b, f"{row['tokens']:.1f}", acc, f"{row['ms_per_batch']:.1f}",
                          f"{row['throughput_ratio']:.2f}", f"{row['flops_ratio']:.2f}",
                          f"{row['flops_per_sample'] / 1e6:.1f}", f"{row['attn_bytes_peak'] / 2**20:.1f}")
    console.print(table)
    console.print("throughput x = full-token time / reduced time (same process, median over "
                  f"{reps} back-to-back pairs); FLOPs x = full / reduced FLOPs of the same encoder + fusion forward")
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(res, indent=2))
        console.print(f"[green]wrote[/] {out}")
    if plot is not None:
        if plot_curve(res, plot):
            console.print(f"[green]wrote[/] {plot}")
        else:
            console.print("matplotlib is not installed: no plot (pip install matplotlib)")
    return res


def register(app: typer.Typer, run_guarded, console) -> None:
    """Add ``polymodal bench tokens`` to ``app``."""

    @bench_app.command("tokens")
    def tokens(
        run: Path = typer.Argument(..., help="Run directory written by `polymodal fit`"),
        data: Path = typer.Argument(..., help="Labelled table (its first --batch-size rows are the timing batch)"),
        budgets: str = typer.Option("1,0.75,0.5,0.25,0.1", help="Token budgets to measure"),
        reducers: str = typer.Option("merge,prune,pool,zip", help="Reducers to measure"),
        schedule: str = typer.Option("input", help="input | first | constant | decreasing"),
        batch_size: int = typer.Option(128, help="Timing batch size"),
        reps: int = typer.Option(5, help="Timed back-to-back pairs with the full-token model (the ratio is their median)"),
        threads: int = typer.Option(1, help="torch threads while timing"),
        out: Optional[Path] = typer.Option(None, help="Write the JSON here"),
        plot: Optional[Path] = typer.Option(None, help="Write an accuracy / speed plot (PNG) here (needs matplotlib)"),
    ) -> None:
        """Speed / accuracy / FLOPs table of a trained run at each token budget and reducer."""
        run_guarded(lambda: bench_tokens(run, data, budgets, reducers, schedule, batch_size, reps, threads, out, plot,
                                         console))

    app.add_typer(bench_app, name="bench")
