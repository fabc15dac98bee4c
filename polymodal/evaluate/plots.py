"""Figures for robustness reports (matplotlib, optional: ``pip install polymodal[plot]``).

Each function writes a PNG and returns True, or returns False when matplotlib is not installed (the JSON and
tables carry the same numbers).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def _pyplot():
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    return plt


def subset_heatmap(subsets: dict[str, dict[str, float]], path: str | Path, title: str = "metric by modalities present") -> bool:
    """Rows = models, columns = modality subsets, cells = metric."""
    plt = _pyplot()
    if plt is None:
        return False
    models = list(subsets)
    cols = list(next(iter(subsets.values())))
    grid = [[subsets[m].get(c, float("nan")) for c in cols] for m in models]
    fig, ax = plt.subplots(figsize=(1.6 + 1.3 * len(cols), 0.8 + 0.42 * len(models)))
    im = ax.imshow(grid, aspect="auto", cmap="viridis")
    ax.set_xticks(range(len(cols)), labels=cols, rotation=30, ha="right")
    ax.set_yticks(range(len(models)), labels=models)
    for i, row in enumerate(grid):
        for j, v in enumerate(row):
            ax.text(j, i, f"{v:.3f}", ha="center", va="center", color="w", fontsize=8)
    fig.colorbar(im, ax=ax)
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


def noise_curves_plot(curves: dict[str, dict[str, Any]], path: str | Path, key: str = "all") -> bool:
    """One line per model: metric vs corruption level of ``key`` (a modality, or ``all`` corrupted together).
    ``curves[model]`` is a ``noise_sweep`` result (``levels``, ``curves``)."""
    first = next(iter(curves.values()))
    lines = {name: sweep["curves"][key] for name, sweep in curves.items() if key in sweep["curves"]}
    return line_plot(first["levels"], lines, path, xlabel=f"corruption level ({key})", ylabel=first.get("metric", "accuracy"))


def line_plot(levels: list[float], lines: dict[str, list[float]], path: str | Path, *, xlabel: str, ylabel: str) -> bool:
    """One line per entry of ``lines`` over the x values ``levels``."""
    plt = _pyplot()
    if plt is None:
        return False
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, ys in lines.items():
        ax.plot(levels, ys, marker="o", label=name)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True
