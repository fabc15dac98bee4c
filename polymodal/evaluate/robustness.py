"""The robustness harness: modality subsets, MNAR missingness shift and noise sweeps for one trained model.

Everything here scores a ``Model`` on a decoded dataset that has been altered at test time (modalities hidden
through the presence masks, or corrupted arrays), so a study decodes the table once. The score is the task's
primary metric: accuracy (classification, higher is better) or RMSE (regression, lower is better).

MultiBench's two summaries of a noise curve (Liang et al. 2021, ``eval_scripts/robustness.py``):

* relative robustness: the area under the metric-vs-level curve, divided by the level range (= the mean metric
  over the swept levels for evenly spaced levels);
* effective robustness: the mean gap between the curve and a reference model's curve shifted to the same clean
  score (``f - (ref + f[0] - ref[0])``); MultiBench's reference is late fusion, and so is ``compare``'s.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from polymodal.data.dataset import DecodedDataset
from polymodal.data.decode import decode
from polymodal.evaluate.corruptions import corrupt_dataset, corruption_for, with_presence
from polymodal.evaluate.mnar import MNARPattern, content_score, dependence, missing_rows
from polymodal.evaluate.scoring import Scorable as Model
from polymodal.evaluate.scoring import primary_metric, score, targets
from polymodal.evaluate.subsets import modality_subsets, subset_key

DEFAULT_NOISE = (0.0, 0.1, 0.3, 0.5)
MISSING_STUDIES = ("subsets", "mnar")


def subset_scores(model: "Model", ds: DecodedDataset) -> dict[str, float]:
    """The primary metric for every non-empty subset of modalities (the others marked missing)."""
    return {subset_key(s): score(model, ds, keep=s) for s in modality_subsets(model.schema.names)}


def noise_sweep(
    model: "Model",
    ds: DecodedDataset,
    levels: Sequence[float] = DEFAULT_NOISE,
    *,
    corruptions: dict[str, str] | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """Metric per corruption level, for each modality corrupted alone and for all corrupted together.

    ``corruptions`` maps a modality to a corruption name (default: its kind's, see ``corruptions.py``).
    """
    levels = [float(v) for v in levels]
    corruptions = corruptions or {}
    kinds = {m: model.schema.modalities[m].kind for m in model.schema.names}
    used = {m: corruption_for(kinds[m], corruptions.get(m)) for m in model.schema.names}
    curves: dict[str, list[float]] = {}
    for m in model.schema.names:
        curves[m] = [score(model, corrupt_dataset(ds, m, kinds[m], lv, corruption=used[m], seed=seed)) for lv in levels]
    if len(model.schema.names) > 1:
        curves["all"] = []
        for lv in levels:
            noisy = ds
            for m in model.schema.names:
                noisy = corrupt_dataset(noisy, m, kinds[m], lv, corruption=used[m], seed=seed)
            curves["all"].append(score(model, noisy))
    lower_better = primary_metric(model) == "rmse"
    return {
        "levels": levels,
        "corruption": used,
        "metric": primary_metric(model),
        "curves": curves,
        "relative_robustness": {k: relative_robustness(c, levels) for k, c in curves.items()},
        "drop_at_max": {k: (c[-1] - c[0]) * (-1 if lower_better else 1) for k, c in curves.items()},
    }


def relative_robustness(curve: Sequence[float], levels: Sequence[float]) -> float:
    """Area under the curve over the level range (MultiBench's relative robustness), normalised by the range."""
    curve, levels = np.asarray(curve, dtype=float), np.asarray(levels, dtype=float)
    if len(curve) < 2 or levels[-1] == levels[0]:
        return float(curve[0])
    area = float(np.sum((curve[1:] + curve[:-1]) * np.diff(levels) / 2))
    return area / float(levels[-1] - levels[0])


def effective_robustness(curve: Sequence[float], reference: Sequence[float]) -> float:
    """Mean gap to ``reference`` shifted to the same clean score (MultiBench's effective robustness, averaged
    instead of summed so that it does not grow with the number of levels)."""
    f, ref = np.asarray(curve, dtype=float), np.asarray(reference, dtype=float)
    if f.shape != ref.shape:
        raise ValueError(f"curves differ in length: {len(f)} vs {len(ref)}")
    return float(np.mean(f - (ref + f[0] - ref[0])))


def mnar_study(
    model: "Model", ds: DecodedDataset, *, rate: float = 0.3, seed: int = 0, modes: Sequence[str] = ("label", "content")
) -> dict[str, Any]:
    """For each modality and each dependence mode: the metric with a MNAR pattern, with its shifted twin, and with
    the same rate missing completely at random (MCAR), plus how much each pattern tells about the label."""
    if ds.target is None:
        raise ValueError("the MNAR study needs a labelled table")
    labels = targets(ds).numpy()
    n_classes = len(model.schema.classes) if model.schema.task == "classify" else None
    out: dict[str, Any] = {"rate": rate, "clean": score(model, ds)}
    for m in model.schema.names:
        kind = model.schema.modalities[m].kind
        rows = torch.as_tensor(ds.rows, dtype=torch.long)
        arrays = {k: v[rows] for k, v in ds.arrays[m].items()}
        scores = content_score(kind, arrays)
        res: dict[str, Any] = {}
        mcar = missing_rows(MNARPattern(m, rate, "random"), len(ds), seed=seed)
        res["mcar"] = {"metric": score(model, with_presence(ds, {m: ~mcar}))}
        for mode in modes:
            if mode == "label" and n_classes is None:
                continue  # a label-dependent pattern needs classes
            pattern = MNARPattern(m, rate, mode)
            entry = {}
            for name, p in (("pattern", pattern), ("shifted", pattern.shifted(n_classes))):
                miss = missing_rows(p, len(ds), labels=labels, scores=scores, n_classes=n_classes, seed=seed)
                entry[name] = {"metric": score(model, with_presence(ds, {m: ~miss}))}
                if n_classes is not None:
                    entry[name]["mutual_info"] = dependence(miss, labels)["mutual_info"]
            res[mode] = entry
        out[m] = res
    return out


def expert_utilisation(model: "Model", ds: DecodedDataset, batch_size: int = 256) -> dict[str, list[float]] | None:
    """Mixture-of-experts fusions (``moe``): the fraction of tokens routed to each expert of each modality's group
    over ``ds`` (uniform = balanced; one expert near 1 = collapsed routing). ``None`` for other fusions."""
    from polymodal.data.dataset import make_loader

    fusion = model.net.fusion
    if fusion is None or fusion.utilisation() is None:  # no fusion (alignment net), or one without experts
        return None
    sums: dict[str, torch.Tensor] = {}
    counts: dict[str, float] = {}
    with torch.inference_mode():
        for batch in make_loader(ds, batch_size, shuffle=False):
            model.net(batch)
            for m, util in fusion.utilisation().items():
                if torch.isfinite(util).all() and util.sum() > 0:
                    w = float(batch.present[m].sum())
                    sums[m] = sums.get(m, torch.zeros_like(util)) + w * util
                    counts[m] = counts.get(m, 0.0) + w
    return {m: (sums[m] / counts[m]).tolist() for m in sums if counts[m] > 0}


def robustness_report(
    model: "Model",
    ds: DecodedDataset,
    *,
    missing: Sequence[str] = MISSING_STUDIES,
    noise: Sequence[float] | None = DEFAULT_NOISE,
    corruptions: dict[str, str] | None = None,
    mnar_rate: float = 0.3,
    seed: int = 0,
) -> dict[str, Any]:
    """Every robustness study for one model on one labelled dataset, as one JSON-ready dict."""
    unknown = set(missing) - set(MISSING_STUDIES)
    if unknown:
        raise ValueError(f"unknown missing-modality studies {sorted(unknown)}; choose from {list(MISSING_STUDIES)}")
    report: dict[str, Any] = {"metric": primary_metric(model), "n": len(ds), "clean": score(model, ds)}
    if "subsets" in missing and len(model.schema.names) > 1:
        report["subsets"] = subset_scores(model, ds)
    if "mnar" in missing:
        report["mnar"] = mnar_study(model, ds, rate=mnar_rate, seed=seed)
    if noise:
        report["noise"] = noise_sweep(model, ds, noise, corruptions=corruptions, seed=seed)
    util = expert_utilisation(model, ds)
    if util is not None:
        report["expert_utilisation"] = util
    return report


def robustness(
    model: "Model",
    data: Any,
    *,
    missing: Sequence[str] = MISSING_STUDIES,
    noise: Sequence[float] | None = DEFAULT_NOISE,
    corruptions: dict[str, str] | None = None,
    mnar_rate: float = 0.3,
    seed: int = 0,
    on_error: str = "raise",
    out: str | Path | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """``robustness_report`` on a labelled table (DataFrame or path); with ``out``, also writes
    ``robustness.json`` and plots (a bar per modality subset, noise curves) there; their names under ``"plots"``."""
    _, ds, decode_report = decode(model.schema, data, on_error=on_error, labels="require", progress=progress)
    rep = robustness_report(model, ds, missing=missing, noise=noise, corruptions=corruptions, mnar_rate=mnar_rate, seed=seed)
    rep["decode_report"] = decode_report.to_dict()
    if out is not None:
        from polymodal.evaluate.plots import level_label, line_plot, metric_label, subset_heatmap

        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        plots = []
        metric = rep["metric"]
        if "subsets" in rep and subset_heatmap(  # one model: a bar per subset
            {"model": rep["subsets"]}, out / "subsets.png", metric=metric,
            title=f"{metric} with only these modalities present (n = {rep['n']})",
        ):
            plots.append("subsets.png")
        if "noise" in rep:
            nz = rep["noise"]
            if line_plot(nz["levels"], nz["curves"], out / "noise.png", xlabel=level_label(nz.get("corruption")),
                         ylabel=metric_label(nz["metric"]), legend_title="corrupted modality",
                         title=f"{nz['metric']} under test-time corruption (n = {rep['n']})"):
                plots.append("noise.png")
        rep["plots"] = plots
        (out / "robustness.json").write_text(json.dumps(rep, indent=2))
    return rep
