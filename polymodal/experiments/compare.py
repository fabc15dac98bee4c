"""``compare``: every fusion (and the unimodal baselines) trained under one protocol, GAMUS-style.

One protocol for every operator: the same table, the same train/test split, the same recipe (``fit`` defaults
unless overridden), the same seeds. Each (fusion, seed) is one job; jobs run in worker processes with one torch
thread each (results do not depend on the thread count, only wall time does). Per job: the test metric, every
modality subset, a noise sweep, parameters, training time, inference latency and the test-set class
probabilities (for the integration test). The summary aggregates seeds (mean +- std) and, for classification,
runs the integration test (fused vs unimodal models and their linear combination) and MultiBench's effective
robustness against late fusion.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from polymodal.data.table import Table, read_table
from polymodal.errors import PolymodalError
from polymodal.evaluate.scoring import outputs
from polymodal.experiments.runner import run_parallel

Source = Any  # a DataFrame, a table path, (path, row positions), or ("dataset", name, split[, load kwargs])


@dataclass
class Job:
    key: str
    fusion: str
    seed: int
    label: str
    train: Source
    test: Source
    use: list[str] | None = None
    options: dict[str, Any] = field(default_factory=dict)
    noise: tuple[float, ...] = ()
    out: str | None = None
    threads: int = 1
    extra_tests: dict[str, Source] = field(default_factory=dict)  # more named test tables, scored into "tables"


def load_source(src: Source) -> Table:
    """The table of a source, with the folder its relative file paths resolve against."""
    if isinstance(src, tuple) and len(src) in (3, 4) and src[0] == "dataset":
        from polymodal.datasets import DATASETS

        return read_table(DATASETS[src[1]]["load"](src[2], **(src[3] if len(src) == 4 else {})))
    if isinstance(src, tuple) and len(src) == 2:  # (path, row positions)
        frame, base = read_table(src[0])
        return Table(frame.iloc[np.asarray(src[1])].reset_index(drop=True), base)
    return read_table(src)


def latency_ms(model, ds, reps: int = 3, batch_size: int = 256) -> float:
    """Best-of-``reps`` inference time per sample (ms), batch ``batch_size``, after one warm-up pass."""
    outputs(model, ds, batch_size=batch_size)
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        outputs(model, ds, batch_size=batch_size)
        best = min(best, time.perf_counter() - t0)
    return 1000.0 * best / max(len(ds), 1)


def run_job(job: Job) -> dict[str, Any]:
    """Train one configuration and score it on the test table (runs in a worker process)."""
    import torch

    from polymodal.data.decode import decode
    from polymodal.evaluate.robustness import expert_utilisation, noise_sweep, subset_scores
    from polymodal.evaluate.scoring import primary_metric, score, targets, task_metrics
    from polymodal.recipes.fit import fit

    torch.set_num_threads(job.threads)
    options = dict(job.options)
    extra = options.pop("fusion", None) or {}  # {"options": {...}} for the job's fusion
    options.update(fusion={"name": job.fusion, "options": dict(extra.get("options", {}))}, seed=job.seed)
    t0 = time.perf_counter()
    model = fit(load_source(job.train), job.label, use=job.use, progress=False, **options)
    train_s = time.perf_counter() - t0
    _, ds, _ = decode(model.schema, load_source(job.test), labels="require", progress=False)
    out = outputs(model, ds)
    metric = primary_metric(model)
    metrics = task_metrics(model.schema, out, targets(ds), confusion=False)
    res: dict[str, Any] = {
        "key": job.key, "fusion": job.fusion, "seed": job.seed, "use": job.use,
        "metric": metric, "score": metrics[metric], "metrics": metrics,
        "params": model.info["params"], "train_s": round(train_s, 2),
        "epochs": model.info["training"]["epochs_run"],
        "latency_ms": round(latency_ms(model, ds), 4),
    }
    util = expert_utilisation(model, ds)
    if util is not None:
        res["expert_utilisation"] = util
    if len(model.modalities) > 1:
        res["subsets"] = subset_scores(model, ds)
        if job.noise:
            res["noise"] = noise_sweep(model, ds, job.noise, seed=job.seed)
    if model.schema.task == "classify":
        res["proba"] = out.softmax(-1).numpy().tolist()
        res["target"] = targets(ds).numpy().tolist()
    if job.extra_tests:
        res["tables"] = {"test": res["score"]}
        for name, src in job.extra_tests.items():
            _, eds, _ = decode(model.schema, load_source(src), labels="require", progress=False)
            res["tables"][name] = score(model, eds)
    if job.out:
        model.save(Path(job.out))
    return res


def run_jobs(jobs: Sequence[Job], workers: int = 2, on_done: Callable[[dict], None] | None = None) -> list[dict[str, Any]]:
    """Run ``jobs`` in ``workers`` spawned processes (``experiments/runner.py``), results in submission order;
    ``on_done(result)`` is called as each finishes."""
    return run_parallel(run_job, jobs, workers=workers, on_done=on_done)


def resolve_fusions(fusions: str | Sequence[str]) -> list[str]:
    from polymodal.fusion import FUSIONS

    names = FUSIONS.names()
    if isinstance(fusions, str):
        fusions = names if fusions == "all" else [f.strip() for f in fusions.split(",") if f.strip()]
    unknown = [f for f in fusions if f not in names]
    if unknown:
        raise PolymodalError(f"unknown fusion(s) {unknown}; registered: {names} (or 'all')")
    return list(fusions)


def split_table(src: Source, label: str, test_fraction: float, seed: int) -> tuple[Source, Source]:
    """A stratified (classification) train/test split of a table path or DataFrame, as two sources."""
    from sklearn.model_selection import train_test_split

    frame, _ = load_source(src)
    if label not in frame.columns:
        raise PolymodalError(f"label column {label!r} not found; the table has {list(frame.columns)}")
    rows = np.arange(len(frame))
    y = frame[label]
    strat = y if (y.nunique() <= max(2, len(y) // 5) and y.value_counts().min() >= 2) else None
    tr, te = train_test_split(rows, test_size=test_fraction, random_state=seed, stratify=strat)
    if isinstance(src, pd.DataFrame):
        return src.iloc[np.sort(tr)].reset_index(drop=True), src.iloc[np.sort(te)].reset_index(drop=True)
    return (src, np.sort(tr)), (src, np.sort(te))


def compare(
    train: Source,
    label: str,
    *,
    test: Source | None = None,
    fusions: str | Sequence[str] = "all",
    seeds: Sequence[int] = (0, 1, 2),
    unimodal: bool = True,
    noise: Sequence[float] = (0.0, 0.1, 0.3, 0.5),
    test_fraction: float = 0.2,
    workers: int = 2,
    out: str | Path | None = None,
    save_models: bool = False,
    on_done: Callable[[dict], None] | None = None,
    **options: Any,
) -> dict[str, Any]:
    """Train every fusion in ``fusions`` (and, with ``unimodal``, one model per modality) for every seed on
    ``train``; score on ``test`` (default: a stratified ``test_fraction`` of ``train``). Returns the summary
    (``summarize``) with the per-run results under ``"runs"``; with ``out``, also writes ``compare.json``,
    ``compare.md`` and plots there (their file names, relative to ``out``, under ``"plots"`` of the summary and of
    ``compare.json``; each model under ``out/models/`` with ``save_models``)."""
    fusions = resolve_fusions(fusions)
    if test is None:
        train, test = split_table(train, label, test_fraction, seed=0)
    jobs = []
    for seed in seeds:
        for f in fusions:
            jobs.append(Job(f"{f}/seed{seed}", f, seed, label, train, test, options=dict(options), noise=tuple(noise)))
    if unimodal:
        from polymodal.data.schema import infer_schema

        schema = infer_schema(load_source(train).frame, label, **_schema_options(options))
        if len(schema.names) > 1:
            for seed in seeds:
                for m in schema.names:
                    jobs.append(Job(f"unimodal:{m}/seed{seed}", "late", seed, label, train, test, use=[m], options=dict(options)))
    if out is not None and save_models:
        for j in jobs:
            j.out = str(Path(out) / "models" / j.key.replace("/", "_").replace(":", "_"))
    t0 = time.perf_counter()
    runs = run_jobs(jobs, workers=workers, on_done=on_done)
    summary = summarize(runs)
    summary["total_s"] = round(time.perf_counter() - t0, 1)
    if out is not None:
        summary["plots"] = write_outputs(summary, runs, Path(out))
    summary["runs"] = runs
    return summary


def _schema_options(options: dict[str, Any]) -> dict[str, Any]:
    return {k: options[k] for k in ("kinds", "groups", "ignore", "task") if k in options}


def _mean_std(values: list[float]) -> tuple[float, float]:
    a = np.asarray(values, dtype=float)
    return float(a.mean()), float(a.std(ddof=1)) if len(a) > 1 else 0.0


def summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Seeds aggregated per model: mean/std of the metric, parameters, train time, latency, subsets, noise
    curves; integration test and effective robustness where they apply."""
    from polymodal.evaluate.integration import integration_test
    from polymodal.evaluate.robustness import effective_robustness

    groups: dict[str, list[dict]] = {}
    for r in runs:
        name = r["key"].split("/")[0]
        groups.setdefault(name, []).append(r)
    models: dict[str, Any] = {}
    for name, rs in sorted(groups.items()):
        rs = sorted(rs, key=lambda r: r["seed"])
        mean, std = _mean_std([r["score"] for r in rs])
        entry: dict[str, Any] = {
            "metric": rs[0]["metric"], "mean": mean, "std": std, "seeds": [r["seed"] for r in rs],
            "scores": [r["score"] for r in rs], "params": rs[0]["params"],
            "train_s": float(np.mean([r["train_s"] for r in rs])),
            "latency_ms": float(np.median([r["latency_ms"] for r in rs])),
        }
        if "expert_utilisation" in rs[0]:
            entry["expert_utilisation"] = {
                m: np.mean([r["expert_utilisation"][m] for r in rs], axis=0).round(4).tolist() for m in rs[0]["expert_utilisation"]
            }
        if "subsets" in rs[0]:
            entry["subsets"] = {k: float(np.mean([r["subsets"][k] for r in rs])) for k in rs[0]["subsets"]}
        if "noise" in rs[0]:
            levels = rs[0]["noise"]["levels"]
            entry["noise"] = {
                "levels": levels,
                "curves": {k: np.mean([r["noise"]["curves"][k] for r in rs], axis=0).tolist() for k in rs[0]["noise"]["curves"]},
                "relative_robustness": {
                    k: float(np.mean([r["noise"]["relative_robustness"][k] for r in rs])) for k in rs[0]["noise"]["curves"]
                },
            }
        models[name] = entry
    summary: dict[str, Any] = {"models": models}
    ref = models.get("late", {}).get("noise")
    if ref:
        for name, e in models.items():
            if "noise" in e:
                e["noise"]["effective_robustness_vs_late"] = {
                    k: effective_robustness(c, ref["curves"][k]) for k, c in e["noise"]["curves"].items() if k in ref["curves"]
                }
    uni = {n.split(":", 1)[1]: rs for n, rs in groups.items() if n.startswith("unimodal:")}
    if uni and all("proba" in r for rs in groups.values() for r in rs):
        integ = {}
        for name, rs in groups.items():
            if name.startswith("unimodal:"):
                continue
            per_seed = []
            counts = np.unique(np.asarray(rs[0]["target"]), return_counts=True)[1] if rs else np.array([0])
            if counts.min() < 2:  # the linear-combination peer is cross-validated on the test rows
                integ[name] = {"skipped": f"a class has {int(counts.min())} test row(s); the integration test needs "
                                          ">= 2 of every class present (a larger test table)"}
                continue
            for r in rs:
                partners = {m: next((u for u in us if u["seed"] == r["seed"]), None) for m, us in uni.items()}
                if any(p is None for p in partners.values()):
                    continue
                per_seed.append(integration_test(
                    np.asarray(r["proba"]), {m: np.asarray(p["proba"]) for m, p in partners.items()},
                    np.asarray(r["target"]), seed=r["seed"],
                ))
            if per_seed:
                integ[name] = {
                    "beats_all_seeds": sum(p["beats_all"] for p in per_seed),
                    "n_seeds": len(per_seed),
                    "fused_minus_linear_mean": float(np.mean([p["fused_minus_linear"] for p in per_seed])),
                    "linear_combination_acc_mean": float(np.mean([p["accuracy"]["linear combination"] for p in per_seed])),
                    "integrated_classes_per_seed": [p["integrated_classes"] for p in per_seed],
                }
        summary["integration"] = integ
    return summary


def summary_rows(summary: dict[str, Any]) -> tuple[list[str], list[list[Any]]]:
    models = summary["models"]
    metric = next(iter(models.values()))["metric"] if models else "accuracy"
    headers = ["model", f"{metric} mean", "std", "params", "train s", "latency ms/sample"]
    rows = [
        [name, round(e["mean"], 4), round(e["std"], 4), e["params"], round(e["train_s"], 1), round(e["latency_ms"], 4)]
        for name, e in sorted(models.items(), key=lambda kv: -kv[1]["mean"] if metric == "accuracy" else kv[1]["mean"])
    ]
    return headers, rows


def write_plots(summary: dict[str, Any], runs: list[dict[str, Any]], out: Path) -> list[str]:
    """``subsets.png`` (models x modality subsets) and ``noise.png`` (one panel per corrupted modality and one
    for all together, a line per model) in ``out``; returns the names of the files written (none without
    matplotlib)."""
    from polymodal.evaluate.plots import noise_curves_plot, subset_heatmap

    models = summary["models"]
    metric = next(iter(models.values()))["metric"] if models else "accuracy"
    n_seeds = {len(e.get("seeds", [])) for e in models.values()}
    k = n_seeds.pop() if len(n_seeds) == 1 else None
    mean = "one seed" if k == 1 else f"mean over {k} seeds" if k else "mean over seeds"
    plots = []
    subsets = {n: e["subsets"] for n, e in models.items() if "subsets" in e}
    if subsets and subset_heatmap(subsets, out / "subsets.png", metric=metric,
                                  title=f"{metric} with only these modalities present ({mean})"):
        plots.append("subsets.png")
    curves = {n: e["noise"] for n, e in models.items() if "noise" in e}
    corruption = next((r["noise"]["corruption"] for r in runs if "corruption" in r.get("noise", {})), None)
    if curves and noise_curves_plot({n: {"metric": metric, **c} for n, c in curves.items()}, out / "noise.png",
                                    corruption=corruption, title=f"{metric} under test-time corruption ({mean})"):
        plots.append("noise.png")
    return plots


def write_outputs(summary: dict[str, Any], runs: list[dict[str, Any]], out: Path) -> list[str]:
    """``compare.json``, ``compare.md`` and the plots in ``out``; returns the plot file names (relative to
    ``out``), also recorded in ``compare.json`` under ``"plots"``."""
    from polymodal.evaluate.report import markdown_table

    out.mkdir(parents=True, exist_ok=True)
    plots = write_plots(summary, runs, out)
    slim = [{k: v for k, v in r.items() if k not in ("proba", "target")} for r in runs]
    (out / "compare.json").write_text(json.dumps({**summary, "plots": plots, "runs": slim}, indent=2, default=float))
    headers, rows = summary_rows(summary)
    text = f"# polymodal compare\n\n{markdown_table(headers, rows)}\n"
    text += "".join(f"\n![{p}]({p})\n" for p in plots)
    (out / "compare.md").write_text(text)
    return plots
