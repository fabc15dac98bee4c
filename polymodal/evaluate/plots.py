"""Figures for robustness, comparison and token-budget reports (matplotlib, optional: ``pip install polymodal[plot]``).

Each ``*_figure`` function builds and returns a ``matplotlib.figure.Figure`` (``None`` without matplotlib); each
writer (``subset_heatmap``, ``noise_curves_plot``, ``line_plot``, ``budget_curve_plot``) saves one as a PNG and
returns True, or False when matplotlib is not installed (the JSON and tables carry the same numbers). Figures are
made without pyplot, so nothing here touches the global backend or leaves figures open.

Every line series gets its own (colour, line style, marker) from ``series_style``: 20 colours, 4 line styles and
7 markers, so colours are distinct up to 20 series and the triples up to 140. Legends sit outside the axes, to
the right; the legend of a line plot lists the series from the highest to the lowest value at the right end of
the curves, the order in which they meet the reader's eye there.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

# tab10, then ten darker / more saturated colours that stay apart from it
COLOURS = (
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf",
    "#000000", "#000080", "#800000", "#008080", "#ff00ff", "#e6ab02", "#005a00", "#fa8072", "#00bfff", "#6b8e23",
)
LINESTYLES = ("-", "--", "-.", ":")
MARKERS = ("o", "s", "^", "D", "v", "P", "X")

# what a corruption's ``level`` is, per corruption (see the table in ``corruptions.py``)
LEVEL_UNITS = {
    "gaussian": "Gaussian noise σ (std devs; images: pixel scale 0-1)",
    "occlusion": "occluded square side / min(H, W)",
    "audio_noise": "noise RMS / clip RMS",
    "token_drop": "token drop probability",
    "feature_drop": "feature drop probability",
}


def series_style(i: int) -> dict[str, Any]:
    """The colour, line style and marker of the ``i``-th series."""
    return {"color": COLOURS[i % len(COLOURS)], "linestyle": LINESTYLES[i % len(LINESTYLES)],
            "marker": MARKERS[i % len(MARKERS)]}


def metric_label(metric: str) -> str:
    """An axis / colour-bar label for a primary metric, with its unit and direction."""
    return {"accuracy": "accuracy (fraction correct, higher is better)",
            "rmse": "RMSE (label units, lower is better)"}.get(metric, metric)


def level_label(corruption: dict[str, str] | None, key: str | None = None) -> str:
    """The x label of a noise sweep: what the level means for ``key`` (a modality, ``all``, or every one)."""
    corruption = corruption or {}
    if key is not None and key in corruption:
        return f"corruption level (0 = clean)\n{LEVEL_UNITS.get(corruption[key], corruption[key])}"
    if not corruption:
        return "corruption level (0 = clean)"
    parts = [f"{m}: {LEVEL_UNITS.get(c, c)}" for m, c in corruption.items()]
    return "corruption level (0 = clean)\n" + "\n".join(parts)


def _new_figure(**kw):
    try:
        from matplotlib.figure import Figure
    except ImportError:
        return None
    return Figure(layout="constrained", **kw)


def _save(fig, path: str | Path) -> bool:
    if fig is None:
        return False
    fig.savefig(path, dpi=120, bbox_inches="tight", pad_inches=0.1)
    return True


def _legend(fig, handles: list, labels: list[str], title: str | None = None) -> None:
    """The figure's legend outside the axes, right, top-aligned (constrained layout makes room for it)."""
    if handles:
        fig.legend(handles, labels, loc="outside right upper", fontsize=8, title=title, title_fontsize=8,
                   ncols=1 if len(handles) <= 24 else 2, handlelength=3)


def _end_order(lines: list[Sequence[float]]) -> list[int]:
    """Series indices from the highest to the lowest last finite value."""
    def last(ys):
        finite = [y for y in ys if y is not None and not math.isnan(float(y))]
        return finite[-1] if finite else -math.inf
    return sorted(range(len(lines)), key=lambda i: -last(lines[i]))


def _curve(ax, xs, ys, i: int, label: str) -> None:
    ys = [float("nan") if y is None else float(y) for y in ys]
    ax.plot(xs, ys, label=label, markersize=5, linewidth=1.4, **series_style(i))


# ---------------------------------------------------------------- modality subsets


def subset_figure(subsets: dict[str, dict[str, float]], *, metric: str = "accuracy", title: str | None = None):
    """``subsets[model][subset] = metric``. One model: a bar per subset, value on each bar; several: a heatmap
    (rows = models, columns = subsets) with every cell annotated and the colour bar labelled with the metric."""
    models = list(subsets)
    cols = list(dict.fromkeys(c for m in models for c in subsets[m]))
    title = title or f"{metric} with only these modalities present"
    if len(models) == 1:
        return _subset_bars(subsets[models[0]], cols, metric, title)
    return _subset_heatmap(subsets, models, cols, metric, title)


def _subset_ticks(ax, cols: list[str], tilt: bool) -> None:
    ax.set_xticks(range(len(cols)), labels=cols, rotation=30 if tilt else 0, ha="right" if tilt else "center")


def _subset_bars(values: dict[str, float], cols: list[str], metric: str, title: str):
    fig = _new_figure(figsize=(max(4.0, 1.6 + 0.9 * len(cols)), 3.8))
    if fig is None:
        return None
    ax = fig.add_subplot()
    ys = [values.get(c, float("nan")) for c in cols]
    bars = ax.bar(range(len(cols)), ys, color=COLOURS[0], edgecolor="black", linewidth=0.6)
    ax.bar_label(bars, labels=[f"{v:.3f}" for v in ys], padding=2, fontsize=8)
    _subset_ticks(ax, cols, tilt=len(cols) > 4)
    finite = [v for v in ys if not math.isnan(v)]
    top = max(finite, default=1.0)
    ax.set_ylim(0, (1.0 if metric == "accuracy" and top <= 1 else top) * 1.12)
    ax.set_xlabel("modalities present at test time (the others marked missing)")
    ax.set_ylabel(metric_label(metric))
    ax.set_title(title, fontsize=10)
    ax.grid(axis="y", alpha=0.3)
    ax.set_axisbelow(True)
    return fig


def _subset_heatmap(subsets, models: list[str], cols: list[str], metric: str, title: str):
    fig = _new_figure(figsize=(2.6 + 1.15 * len(cols), 1.3 + 0.36 * len(models)))
    if fig is None:
        return None
    from matplotlib import colormaps
    from matplotlib.colors import Normalize

    ax = fig.add_subplot()
    grid = [[subsets[m].get(c, float("nan")) for c in cols] for m in models]
    finite = [v for row in grid for v in row if not math.isnan(v)]
    cmap = colormaps["viridis_r" if metric == "rmse" else "viridis"]  # bright = better either way
    norm = Normalize(min(finite, default=0.0), max(finite, default=1.0))
    im = ax.imshow(grid, aspect="auto", cmap=cmap, norm=norm)
    _subset_ticks(ax, cols, tilt=len(cols) > 3)
    ax.set_yticks(range(len(models)), labels=models)
    for i, row in enumerate(grid):
        for j, v in enumerate(row):
            if math.isnan(v):
                ax.text(j, i, "–", ha="center", va="center", fontsize=8)
                continue
            r, g, b, _ = cmap(norm(v))
            ink = "black" if 0.299 * r + 0.587 * g + 0.114 * b > 0.5 else "white"
            ax.text(j, i, f"{v:.3f}", ha="center", va="center", color=ink, fontsize=8)
    fig.colorbar(im, ax=ax, label=metric_label(metric))
    ax.set_xlabel("modalities present at test time (the others marked missing)")
    ax.set_ylabel("model")
    ax.set_title(title, fontsize=10)
    return fig


def subset_heatmap(subsets: dict[str, dict[str, float]], path: str | Path, title: str | None = None,
                   metric: str = "accuracy") -> bool:
    """Write ``subset_figure`` (a bar chart for one model, a heatmap for several) to ``path``."""
    return _save(subset_figure(subsets, metric=metric, title=title), path)


# ---------------------------------------------------------------- line plots


def line_figure(levels: Sequence[float], lines: dict[str, Sequence[float]], *, xlabel: str, ylabel: str,
                title: str, legend_title: str | None = None):
    """One line per entry of ``lines`` over the x values ``levels``; the legend outside, right."""
    fig = _new_figure(figsize=(6.4, 4.0))
    if fig is None:
        return None
    ax = fig.add_subplot()
    names = list(lines)
    for i, name in enumerate(names):
        _curve(ax, levels, lines[name], i, name)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    handles, labels = ax.get_legend_handles_labels()
    order = _end_order([lines[n] for n in names])
    _legend(fig, [handles[i] for i in order], [labels[i] for i in order], legend_title)
    return fig


def line_plot(levels: Sequence[float], lines: dict[str, Sequence[float]], path: str | Path, *, xlabel: str,
              ylabel: str, title: str = "", legend_title: str | None = None) -> bool:
    """Write ``line_figure`` to ``path``."""
    return _save(line_figure(levels, lines, xlabel=xlabel, ylabel=ylabel, title=title, legend_title=legend_title), path)


def noise_curves_figure(curves: dict[str, dict[str, Any]], keys: str | Sequence[str] | None = None, *,
                        corruption: dict[str, str] | None = None, title: str | None = None):
    """One panel per key of ``keys`` (a modality corrupted alone, or ``all`` corrupted together; default: every
    key, ``all`` last), one line per model, the same style for a model in every panel. ``curves[model]`` is a
    ``noise_sweep`` result (``levels``, ``curves``, optionally ``metric`` and ``corruption``)."""
    first = next(iter(curves.values()))
    metric = first.get("metric", "accuracy")
    corruption = corruption or first.get("corruption")
    if keys is None:
        found = list(dict.fromkeys(k for sweep in curves.values() for k in sweep["curves"]))
        keys = [k for k in found if k != "all"] + (["all"] if "all" in found else [])
    elif isinstance(keys, str):
        keys = [keys]
    fig = _new_figure(figsize=(0.6 + 3.7 * len(keys), 3.9))
    if fig is None:
        return None
    axes = fig.subplots(1, len(keys), sharey=True, squeeze=False)[0]
    models = list(curves)
    for ax, key in zip(axes, keys):
        for i, name in enumerate(models):
            if key in curves[name]["curves"]:
                _curve(ax, curves[name]["levels"], curves[name]["curves"][key], i, name)
        ax.set_title("all modalities corrupted together" if key == "all" else f"{key} corrupted", fontsize=9)
        ax.set_xlabel(level_label(corruption, key if key != "all" else None), fontsize=8)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel(metric_label(metric))
    seen: dict[str, Any] = {}
    for ax in axes:  # a model missing from some panel still gets its legend entry
        for h, lab in zip(*ax.get_legend_handles_labels()):
            seen.setdefault(lab, h)
    labels = [m for m in models if m in seen]
    order = _end_order([curves[m]["curves"].get(keys[-1], []) for m in labels])
    _legend(fig, [seen[labels[i]] for i in order], [labels[i] for i in order],
            f"model (ordered by {metric}\nat level {max(first['levels']):g}, {keys[-1]})")
    fig.suptitle(title or f"{metric} under test-time corruption", fontsize=10)
    return fig


def noise_curves_plot(curves: dict[str, dict[str, Any]], path: str | Path, key: str | Sequence[str] | None = None, *,
                      corruption: dict[str, str] | None = None, title: str | None = None) -> bool:
    """Write ``noise_curves_figure`` to ``path``."""
    return _save(noise_curves_figure(curves, key, corruption=corruption, title=title), path)


# ---------------------------------------------------------------- token budgets


def budget_curve_figure(res: dict[str, Any], title: str | None = None):
    """``budget_curve``'s result: accuracy (when scored) and throughput ratio against the token budget, one line
    per reducer."""
    rows_by = res["curve"]
    scored = any(row.get("acc") is not None for rows in rows_by.values() for row in rows.values())
    panels = [("acc", metric_label("accuracy"))] if scored else []
    panels.append(("throughput_ratio", "throughput vs full tokens (×, higher is faster)"))
    fig = _new_figure(figsize=(0.8 + 4.0 * len(panels), 3.8))
    if fig is None:
        return None
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    names = list(rows_by)
    for ax, (field, ylabel) in zip(axes, panels):
        for i, reducer in enumerate(names):
            bs = sorted(rows_by[reducer], key=float)
            _curve(ax, [float(b) for b in bs], [rows_by[reducer][b].get(field) for b in bs], i, reducer)
        if field == "throughput_ratio":
            ax.axhline(1.0, color="grey", linewidth=0.8, linestyle=":")
        elif res.get("full", {}).get("acc") is not None:
            ax.axhline(res["full"]["acc"], color="grey", linewidth=0.8, linestyle=":", label="full-token model")
        ax.set_xlabel("token budget (fraction of tokens kept)")
        ax.set_ylabel(ylabel)
        ax.set_title("accuracy" if field == "acc" else "throughput (same-process ratio; dotted = 1×)", fontsize=9)
        ax.grid(alpha=0.3)
    _legend(fig, *axes[0].get_legend_handles_labels(), "reducer")
    tokens = res.get("tokens_full")
    fig.suptitle(title or ("accuracy and speed per token reducer"
                           + (f" ({tokens:.0f} tokens/sample at full budget)" if tokens else "")), fontsize=10)
    return fig


def budget_curve_plot(res: dict[str, Any], path: str | Path, title: str | None = None) -> bool:
    """Write ``budget_curve_figure`` to ``path``."""
    return _save(budget_curve_figure(res, title), path)
