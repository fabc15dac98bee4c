"""``polymodal demo``: unimodal baselines and the three fusions on the bundled av-digits data.

The same study backs ``benchmarks/fusion_gain.py``: ``score_model`` trains one configuration and scores it on the
test split with every modality and with each one removed.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pandas as pd
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from polymodal.evaluate.report import markdown_table
from polymodal.experiments import runner

MODALITIES = ("image", "audio")
EPOCHS = 15  # the av-digits recipe shared by the demo and benchmarks/fusion_gain.py


def score_model(train: pd.DataFrame, test: pd.DataFrame, *, fusion: str = "transformer", use: list[str] | None = None,
                **options: Any) -> dict[str, Any]:
    """Fit on ``train`` (label ``digit``), evaluate on ``test``; accuracy overall and per modality subset."""
    from polymodal.recipes.fit import fit

    t0 = time.perf_counter()
    model = fit(train, "digit", fusion=fusion, use=use, **options)
    train_s = time.perf_counter() - t0
    res = model.evaluate(test)
    out = {
        "acc": res["metrics"]["accuracy"],
        "macro_f1": res["metrics"]["macro_f1"],
        "train_s": round(train_s, 2),
        "epochs": model.info["training"]["epochs_run"],
        "params": model.info["params"],
    }
    for m in MODALITIES:
        if m in res.get("subsets", {}):
            out[f"{m}_only"] = res["subsets"][m]["accuracy"]
    out["_model"] = model
    return out


def train_job(args: tuple[str, dict[str, Any]]) -> tuple[str, dict[str, Any]]:
    """One av-digits run in a worker process with 1 torch thread, so two workers share 2 cores.

    Results do not depend on the thread count (deterministic kernels, fixed seed), only the wall time does.
    """
    import torch

    from polymodal.datasets import load_av_digits

    torch.set_num_threads(1)
    key, kw = args
    kw = dict(kw)
    limit_train, limit_test = kw.pop("_limits", (None, None))
    r = score_model(load_av_digits("train", limit=limit_train), load_av_digits("test", limit=limit_test), **kw)
    r.pop("_model")
    return key, r


def run_parallel(jobs: list[tuple[str, dict[str, Any]]], workers: int = 2, on_done=None) -> dict[str, dict[str, Any]]:
    """``train_job`` over ``jobs`` in ``workers`` spawned processes; ``on_done(key, result)`` as each ends."""
    done = (lambda kr: on_done(*kr)) if on_done else None
    return dict(runner.run_parallel(train_job, jobs, workers=workers, on_done=done))


def run_demo(out: Path, epochs: int = EPOCHS, quick: bool = False, console: Console | None = None) -> dict[str, Any]:
    from polymodal.datasets import load_av_digits

    console = console or Console()
    limit_train, limit_test = (300, 100) if quick else (None, None)
    train = load_av_digits("train", limit=limit_train)
    test = load_av_digits("test", limit=limit_test)
    epochs = min(epochs, 3) if quick else epochs
    console.print(
        f"[bold]av-digits[/]: {len(train)} train / {len(test)} test pairs of a degraded MNIST digit and a noisy spoken "
        "digit (FSDD); test speakers' takes 0-4 and MNIST test images."
    )
    runs: list[tuple[str, dict[str, Any]]] = [
        ("image only", {"use": ["image"], "fusion": "late"}),
        ("audio only", {"use": ["audio"], "fusion": "late"}),
        ("late fusion", {"fusion": "late"}),
        ("concat fusion", {"fusion": "concat"}),
        ("transformer fusion", {"fusion": "transformer"}),
    ]
    results: dict[str, Any] = {"dataset": "av-digits", "n_train": len(train), "n_test": len(test), "models": {}}
    t_start = time.perf_counter()
    workers = 1 if quick else 2
    console.print(f"training {len(runs)} models ({workers} at a time, 1 thread each) ...")

    def done(name: str, r: dict[str, Any]) -> None:
        console.print(f"  {name}: test accuracy {r['acc']:.3f} in {r['train_s']:.0f}s")

    jobs = [(name, {**kw, "epochs": epochs, "progress": False, "_limits": (limit_train, limit_test)}) for name, kw in runs]
    jobs.sort(key=lambda j: j[1]["fusion"] != "transformer" or "use" in j[1])  # longest first
    finished = run_parallel(jobs, workers=workers, on_done=done)
    results["models"] = {name: finished[name] for name, _ in runs}
    results["total_s"] = round(time.perf_counter() - t_start, 1)

    headers = ["model", "test acc", "image removed", "audio removed", "train s", "params"]
    rows = []
    for name, r in results["models"].items():
        rows.append([
            name, r["acc"],
            r.get("audio_only", "-") if "audio_only" in r else "-",
            r.get("image_only", "-") if "image_only" in r else "-",
            round(r["train_s"]), r["params"],
        ])
    table = Table(title=f"av-digits test accuracy ({len(test)} pairs)")
    for h in headers:
        table.add_column(h, justify="left" if h == "model" else "right")
    for row in rows:
        table.add_row(*[f"{v:.3f}" if isinstance(v, float) else str(v) for v in row])
    console.print(table)
    best_uni = max(results["models"]["image only"]["acc"], results["models"]["audio only"]["acc"])
    gain = results["models"]["transformer fusion"]["acc"] - best_uni
    console.print(f"transformer fusion vs best unimodal model: {gain * 100:+.1f} points; total {results['total_s']:.0f}s")

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=2))
    (out / "results.md").write_text(
        f"# polymodal demo: av-digits\n\n{markdown_table(headers, rows)}\n\n"
        "'image removed' = accuracy when the image is marked missing at test time (audio only), and vice versa.\n"
    )
    console.print(f"[green]wrote[/] {escape(str(out / 'results.json'))} and {escape(str(out / 'results.md'))}")
    return results
