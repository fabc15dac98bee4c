"""The report page: one self-contained HTML file (inline CSS, charts and media as ``data:`` URIs, no script, no
external URL; a Content-Security-Policy forbids fetching anything), one column per run, side by side, and for
several runs a comparison first (a table, overlaid training curves, subset heatmap and noise curves, one row or
line per run).

The size budget: ``DEFAULT_MAX_MB`` (5 MB). A page over it first loses its example rows (thumbnails and audio,
retrieval examples first, then prediction examples), with a note saying so; a page still over it is refused with
a ``PolymodalError`` that says how big it would be.
"""

from __future__ import annotations

import datetime as _dt
from pathlib import Path
from typing import Any

from polymodal import __version__
from polymodal.errors import PolymodalError
from polymodal.report import charts, examples_view, sections
from polymodal.report.markup import Markup, esc, figure, num, section, table, tag
from polymodal.report.media import LIMITS
from polymodal.report.sources import RunData

DEFAULT_MAX_MB = 5.0
CSP = "default-src 'none'; img-src data:; media-src data:; style-src 'unsafe-inline'"

CSS = """
:root{--ink:#1d2330;--muted:#5b6473;--line:#d9dde3;--bg:#f6f7f9;--ok:#1a7f37;--bad:#c62828}
*{box-sizing:border-box}body{margin:0;font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;
color:var(--ink);background:var(--bg)}header{padding:16px 24px;background:#fff;border-bottom:1px solid var(--line)}
h1{font-size:20px;margin:0 0 4px}h2{font-size:17px;margin:0 0 8px;word-break:break-all}h3{font-size:15px;margin:0 0 6px}
h4{font-size:13px;margin:10px 0 4px;color:var(--muted)}main{padding:16px 24px}.note{color:var(--muted);margin:0 0 8px;
font-size:12px}.section{background:#fff;border:1px solid var(--line);border-radius:6px;padding:12px 14px;margin:0 0 14px;
overflow-x:auto}.section .section{border:0;padding:8px 0 0;margin:0}.runs{display:grid;gap:16px;align-items:start}
.run{min-width:0}table{border-collapse:collapse;font-variant-numeric:tabular-nums;margin:4px 0 8px}
th,td{border:1px solid var(--line);padding:3px 7px;text-align:right;vertical-align:middle}th{background:#eef0f3;
font-weight:600}td:first-child,th:first-child{text-align:left}table.kv td{border:0;border-bottom:1px solid var(--line)}
table.kv thead{display:none}table.small{font-size:12px}td.heat{min-width:46px;text-align:center}td.nan{color:var(--muted)}
table.confusion td.heat{min-width:30px;padding:2px 4px}figure{margin:6px 0}img.chart{max-width:100%;height:auto;
display:block}img.thumb{width:64px;height:64px;object-fit:contain;image-rendering:pixelated;background:#000;
display:block}audio.clip{width:112px;height:30px}table.examples{font-size:12px}.missing{color:var(--muted);font-style:italic}.ok{color:var(--ok)}
.bad{color:var(--bad);font-weight:600}.bar{display:inline-block;width:120px;height:10px;background:#eef0f3}
.bar-fill{display:block;height:100%;background:#3b518b}.bar-fill.neg{background:var(--bad)}.matches{display:flex;
gap:6px}.match{border:2px solid transparent;padding:2px;font-size:11px;text-align:center}.match.true{border-color:var(--ok)}
footer{padding:8px 24px 24px;color:var(--muted);font-size:12px}.cell-text{font-size:12px}
.single .run{column-width:600px;column-gap:14px}.single .run>h2{column-span:all}.single .section{break-inside:avoid}
.single img.chart{max-width:min(100%,640px)}.charts{display:flex;flex-wrap:wrap;gap:12px;align-items:flex-start}
.charts figure{flex:1 1 380px;max-width:560px}[data-section=comparison]>figure img.chart{max-width:min(100%,900px)}
"""

RUN_SECTIONS = (sections.overview, sections.metrics, sections.confusion, sections.retrieval_metrics,
                lambda r: _own_subsets(r), sections.mnar, sections.noise, sections.tokens,
                examples_view.attribution, examples_view.predictions, examples_view.retrieval,
                sections.compare_summary, sections.training, sections.decode)


def _own_subsets(run: RunData) -> Markup:
    found = sections.subset_values(run)
    return sections.subset_heatmap({run.name: found}, f"{found[0]} per modality subset") if found else Markup("")


def run_column(run: RunData) -> Markup:
    return tag("div", tag("h2", run.name), *(f(run) for f in RUN_SECTIONS), class_="run", data_run=run.name)


def _headline(run: RunData) -> list[Any]:
    ev, rob = run.first("evaluation") or {}, run.first("robustness") or {}
    m = ev.get("metrics", {})
    best = sections.best_of(run.info.get("training") or {})
    fusion = ((run.config or {}).get("model") or {}).get("fusion")
    return [tag("b", esc(run.name)), run.run_type or "results",
            (fusion.get("name") if isinstance(fusion, dict) else fusion) or "–",
            num(run.info.get("params"), "params", run=run.name),
            num(run.info.get("train_s"), "train_s", spec=".1f", run=run.name),
            num((run.info.get("training") or {}).get("epochs_run"), "epochs_run", run=run.name),
            num(None if best is None else best[1], "best_val", run=run.name),
            *(num(m.get(k), k, run=run.name) for k in ("accuracy", "macro_f1", "rmse")),
            num(rob.get("clean"), "robustness_clean", run=run.name)]


def comparison(runs: list[RunData]) -> Markup:
    """The side-by-side summary of several runs: one row (or line) per run."""
    headers = ["run", "type", "fusion", "params", "train s", "epochs", "best validation", "accuracy", "macro-F1",
               "RMSE", "robustness clean"]
    parts = [table(headers, [_headline(r) for r in runs], cls="grid compare-runs")]
    histories = {r.name: h for r in runs if (h := (r.info.get("training") or {}).get("history"))}
    if len(histories) > 1:  # one history alone is drawn in its run's column
        parts.append(tag("div", *(figure(uri, title) for title, uri in charts.training_curves(histories)),
                         class_="charts"))
    subsets = {r.name: v for r in runs if (v := sections.subset_values(r))}
    if len(subsets) > 1:
        metric = next(iter(subsets.values()))[0]
        parts.append(sections.subset_heatmap(subsets, f"{metric} per modality subset, per run"))
    noise = {r.name: {"metric": rob["metric"], **rob["noise"]} for r in runs
             if (rob := r.first("robustness")) and "noise" in rob}
    if len(noise) > 1:
        parts.append(figure(charts.noise_chart(noise), "noise curves per run"))
    return section("comparison", *parts, sid="comparison",
                   note="one row per run; validation numbers from each run's report.json, test numbers from its "
                        "evaluate / robustness JSON; curves overlaid")


def render(runs: list[RunData], *, title: str | None = None, max_mb: float = DEFAULT_MAX_MB,
           notes: list[str] | None = None) -> str:
    """The page's HTML text. ``notes``: lines shown under the title (for example what the budget left out)."""
    title = title or ("polymodal report: " + ", ".join(r.name for r in runs))
    head = tag("head", Markup('<meta charset="utf-8">'),
               Markup(f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'),
               Markup('<meta name="viewport" content="width=device-width, initial-scale=1">'),
               tag("title", title), tag("style", Markup(CSS)))
    when = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    header = tag("header", tag("h1", title), tag("p", f"{len(runs)} run(s) · polymodal {__version__} · {when}",
                                                   class_="note"),
                 *(tag("p", n, class_="note budget") for n in notes or []))
    cols = f"grid-template-columns:repeat({len(runs)},minmax(0,1fr))"
    body = tag("main", comparison(runs) if len(runs) > 1 else Markup(""),
               tag("div", *(run_column(r) for r in runs), class_="runs" + (" single" if len(runs) == 1 else ""),
                   style=cols))
    limits = (f"size budget: {max_mb:g} MB per page; thumbnails at most {LIMITS['thumbnail_px']} px, audio clips at "
              f"most {LIMITS['audio_seconds']:g} s of 16-bit mono at most {LIMITS['audio_rate_hz']} Hz")
    footer = tag("footer", "self-contained: no script, no external resources (every chart and clip is inline). ",
                 limits)
    return "<!DOCTYPE html>\n" + tag("html", head, tag("body", header, body, footer), lang="en")


def render_within_budget(runs: list[RunData], *, title: str | None = None, max_mb: float = DEFAULT_MAX_MB) -> str:
    """``render``, dropping example rows while the page is over ``max_mb`` (see the module docstring)."""
    limit = int(max_mb * 2**20)
    notes: list[str] = []
    text = render(runs, title=title, max_mb=max_mb)
    for kind in ("retrieval", "predictions"):
        if len(text.encode()) <= limit:
            return text
        dropped = [r.name for r in runs if r.examples and r.examples.pop(kind, None) is not None]
        if dropped:
            notes.append(f"{kind} examples left out: with them the page is over the {max_mb:g} MB size budget")
            text = render(runs, title=title, max_mb=max_mb, notes=notes)
    size = len(text.encode())
    if size > limit:
        raise PolymodalError(f"the report would be {size / 2**20:.1f} MB, over the {max_mb:g} MB size budget even "
                             "without example rows: report fewer runs at once, or raise --max-mb")
    return text


def write(text: str, out: str | Path) -> Path:
    """Write the page (UTF-8) through a temporary sibling and a rename: a reader never sees half a page."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(out)
    return out
