"""``polymodal bench tokens``: speed / accuracy / FLOPs of a trained run at each token budget and reducer.

(The ``--token-budget`` / ``--reducer`` flags of ``fit`` and ``evaluate`` are parsed in ``common.py``.)
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from polymodal.cli import common as c
from polymodal.cli.common import auto_report, beside

SCHEDULES_HELP = "input | first | constant | decreasing"


@c.guarded
def bench_tokens(
    run: Path = typer.Argument(..., help="Run directory written by `polymodal fit`"),
    data: Path = typer.Argument(..., help="Labelled table (its first --batch-size rows are the timing batch)"),
    budgets: str = typer.Option("1,0.75,0.5,0.25,0.1", help="Token budgets to measure"),
    reducers: str = typer.Option("merge,prune,pool,zip", help="Reducers to measure (`polymodal list reducers`)"),
    schedule: str = typer.Option("input", help=SCHEDULES_HELP),
    batch_size: int = typer.Option(128, help="Timing batch size"),
    reps: int = typer.Option(5, help="Timed back-to-back pairs with the full-token model (the ratio is their median)"),
    threads: int = typer.Option(1, help="torch threads while timing"),
    out: Optional[Path] = typer.Option(None, help="Write the JSON here"),
    plot: Optional[Path] = typer.Option(None, help="Write an accuracy / speed plot (PNG) here (needs matplotlib)"),
) -> None:
    """Speed / accuracy / FLOPs table of a trained run at each token budget and reducer."""
    import torch

    from polymodal.errors import PolymodalError
    from polymodal.evaluate.token_bench import budget_curve, plot_curve
    from polymodal.recipes.loading import load

    bs = c.floats(budgets, "--budgets", "1,0.5,0.25")
    rs = c.names(reducers) or []
    model = load(run)
    torch.set_num_threads(threads)
    try:
        res = budget_curve(model, data, bs, rs, batch_size=batch_size, reps=reps, token_options={"schedule": schedule})
    except ValueError as e:  # a budget outside (0, 1], an unknown reducer or schedule
        raise PolymodalError(str(e)) from None
    rows = [
        [reducer, b, f"{row['tokens']:.1f}", "-" if row["acc"] is None else f"{row['acc']:.3f}",
         f"{row['ms_per_batch']:.1f}", f"{row['throughput_ratio']:.2f}", f"{row['flops_ratio']:.2f}",
         f"{row['flops_per_sample'] / 1e6:.1f}", f"{row['attn_bytes_peak'] / 2**20:.1f}"]
        for reducer, by_budget in res["curve"].items() for b, row in by_budget.items()
    ]
    title = (f"token budgets: {run} on {data} ({res['tokens_full']:.0f} tokens/sample at full budget, "
             f"batch {res['batch_size']}, {threads} thread(s))")
    headers = ["reducer", "budget", "tokens", "accuracy", "ms/batch", "throughput x", "FLOPs x", "MFLOPs/sample",
               "attn MB (peak layer)"]
    c.print_table(title, headers, rows)
    c.say("throughput x = full-token time / reduced time (same process, median over "
          f"{reps} back-to-back pairs); FLOPs x = full / reduced FLOPs of the same encoder + fusion forward")
    if out:
        c.write_json(res, out)
        c.done("wrote", out)
        auto_report([run, out], beside(out))
    if plot is not None:
        if plot_curve(res, plot):
            c.done("wrote", plot)
        else:
            c.say("matplotlib is not installed: no plot (pip install matplotlib)")
