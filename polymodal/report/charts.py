"""Charts for the report: the figures of ``evaluate/plots.py`` (and training curves built with its ``line_figure``)
rendered to inline SVG ``data:`` URIs. Text stays text in the SVG (``svg.fonttype: none``: smaller, selectable),
no date is written (the same run gives the same bytes). Without matplotlib every function returns None and the
report shows the tables alone (they hold the same numbers)."""

from __future__ import annotations

import base64
import io
from typing import Any

from polymodal.evaluate import plots

SVG_RC = {"svg.fonttype": "none", "svg.hashsalt": "polymodal-report", "font.size": 9}


def svg_uri(fig: Any) -> str | None:
    """A matplotlib figure as a ``data:image/svg+xml;base64`` URI (None for None)."""
    if fig is None:
        return None
    import matplotlib

    buf = io.BytesIO()
    with matplotlib.rc_context(SVG_RC):
        fig.savefig(buf, format="svg", bbox_inches="tight", pad_inches=0.08, metadata={"Date": None})
    return "data:image/svg+xml;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _history_series(history: list[dict[str, Any]], key: str) -> tuple[list[float], list[float | None]]:
    xs = [float(h.get("epoch", i + 1)) for i, h in enumerate(history)]
    return xs, [h.get(key) for h in history]


def history_keys(history: list[dict[str, Any]]) -> tuple[list[str], list[str]]:
    """(loss keys, validation metric keys) present in a training history, in a stable order."""
    keys = list(dict.fromkeys(k for h in history for k in h if k not in ("epoch", "elapsed_s")))
    losses = [k for k in keys if k.endswith("loss")]
    return losses, [k for k in keys if k not in losses]


def training_curves(histories: dict[str, list[dict[str, Any]]]) -> list[tuple[str, str | None]]:
    """``[(title, uri)]``: losses per epoch and validation metrics per epoch. One run: every loss in one chart;
    several runs: one line per run (overlaid) for each key the runs share."""
    out: list[tuple[str, str | None]] = []
    histories = {n: h for n, h in histories.items() if h}
    if not histories:
        return out
    if len(histories) == 1:
        (name, history), = histories.items()
        losses, metrics = history_keys(history)
        for title, keys in (("loss per epoch", losses), ("validation metrics per epoch", metrics)):
            if not keys:
                continue
            xs = _history_series(history, keys[0])[0]
            lines = {k: _history_series(history, k)[1] for k in keys}
            fig = plots.line_figure(xs, lines, xlabel="epoch", ylabel=title.split(" per ")[0], title=title)
            out.append((title, svg_uri(fig)))
        return out
    shared = [k for k in dict.fromkeys(k for h in histories.values() for k in history_keys(h)[0] + history_keys(h)[1])
              if k.startswith("val_") and all(any(k in e for e in h) for h in histories.values())]
    for key in shared:
        length = max(len(h) for h in histories.values())
        xs = [float(i + 1) for i in range(length)]
        lines = {n: [h[i].get(key) if i < len(h) else None for i in range(length)] for n, h in histories.items()}
        out.append((f"{key} per epoch", svg_uri(plots.line_figure(xs, lines, xlabel="epoch", ylabel=key,
                                                                      title=f"{key} per epoch", legend_title="run"))))
    return out


def noise_chart(curves: dict[str, dict[str, Any]]) -> str | None:
    """``noise_curves_figure`` (one panel per corrupted modality, one line per run or model)."""
    return svg_uri(plots.noise_curves_figure(curves)) if curves else None


def budget_chart(res: dict[str, Any], title: str | None = None) -> str | None:
    return svg_uri(plots.budget_curve_figure(res, title))

