"""The sections drawn from a table's rows (``examples.py``): attributions per modality, example predictions with
their inputs, retrieval examples with thumbnails and inline audio players. Media are ``data:`` URIs."""

from __future__ import annotations

from typing import Any

from polymodal.report.markup import Markup, esc, num, section, table, tag, void
from polymodal.report.sources import RunData

EMPTY = Markup("")


def media(item: dict[str, Any] | None) -> Markup:
    """A thumbnail, an audio player or a short text for one modality of one row; a dash when it is missing."""
    if item is None:
        return tag("span", "missing", class_="missing")
    if "image" in item:
        return void("img", src=item["image"], alt="thumbnail", class_="thumb", width=64)
    if "audio" in item:
        return tag("audio", controls=True, preload="metadata", src=item["audio"], class_="clip",
                   title=f"{item['seconds']:.2f} s")
    return tag("span", item.get("text", ""), class_="cell-text")


def _bar(v: float, scale: float) -> Markup:
    width = 0 if scale <= 0 else min(abs(v) / scale, 1.0) * 100
    return tag("span", tag("span", class_="bar-fill" + (" neg" if v < 0 else ""), style=f"width:{width:.1f}%"),
               class_="bar")


def attribution(run: RunData) -> Markup:
    """Mean |contribution| per modality: from ``explain``'s summary JSON, else from the report's table rows."""
    summary = run.first("explain")
    ex = (run.examples or {}).get("predictions")
    if summary:
        method, mean_abs, per_class = summary["method"], summary["mean_abs"], summary.get("per_class", {})
        source = f"from {run.all('explain')[0].file}"
    elif ex:
        method, mean_abs, per_class = ex["method"], ex["mean_abs"], {}
        source = f"over {ex['n_attribution']} rows of the report's table"
    else:
        return EMPTY
    scale = max(mean_abs.values(), default=0.0)
    rows = [[m, num(v, "attribution", run=run.name, modality=m, method=method), _bar(v, scale)]
            for m, v in mean_abs.items()]
    parts = [table(["modality", f"mean |{method}|", ""], rows)]
    by_class = per_class.get(method) if isinstance(per_class, dict) else None
    if by_class:
        mods = list(mean_abs)
        parts.append(table(["class", *mods], [[k, *(num(v.get(m), "attribution_class", run=run.name, cls=k,
                                                           modality=m) for m in mods)]
                                             for k, v in by_class.items()], cls="grid small"))
    note = (f"{method} contribution of each modality to the predicted class's probability ({source}); exact "
            "Shapley values over modalities (a modality absent = marked missing)")
    return section("attributions per modality", *parts, sid="attribution", note=note)


def predictions(run: RunData) -> Markup:
    ex = (run.examples or {}).get("predictions")
    if not ex or not ex["rows"]:
        return EMPTY
    mods, method = ex["modalities"], ex["method"]
    rows = []
    for r in ex["rows"]:
        graded = r["label"] is not None and r["probability"] is not None  # a class: right or wrong
        mark = ("ok" if r["label"] == r["prediction"] else "bad") if graded else None
        pred = tag("span", esc(r["prediction"]), class_=mark)
        rows.append([r["row"], *(media(r["inputs"][m]) for m in mods), esc("–" if r["label"] is None else r["label"]),
                     pred, num(r["probability"], "probability", run=run.name, row=r["row"]),
                     *(num(r["contribution"][m], "contribution", run=run.name, row=r["row"], modality=m)
                       for m in mods)])
    headers = ["row", *mods, "label", "prediction", "p", *(f"{method} {m}" for m in mods)]
    return section("examples", table(headers, rows, cls="grid examples"), sid="examples",
                   note="rows spread over the table; thumbnails and clips are the decoded inputs the model saw")


def retrieval(run: RunData) -> Markup:
    ex = (run.examples or {}).get("retrieval")
    if not ex:
        return EMPTY
    parts = []
    for p in ex["pairs"]:
        rows = []
        for q in p["queries"]:
            matches = [tag("div", media(m["input"]), tag("div", num(m["similarity"], "similarity", spec=".3f",
                                                                    run=run.name), esc(f" · {m['label']}")
                                                         if m["label"] is not None else ""),
                           class_="match" + (" true" if m["true"] else "")) for m in q["matches"]]
            rows.append([q["row"], media(q["input"]), esc("–" if q["label"] is None else q["label"]),
                         tag("div", *matches, class_="matches"),
                         num(q["rank_of_true"], "rank_of_true", run=run.name, query=p["query"], row=q["row"])])
        parts.append(tag("h4", f"{p['query']} \u2192 {p['gallery']} (gallery of {p['gallery_size']} rows)"))
        parts.append(table(["row", f"query ({p['query']})", "label", f"nearest {p['gallery']} (cosine)",
                            "rank of the true match"], rows, cls="grid examples"))
    return section("retrieval examples", *parts, sid="retrieval-examples",
                   note="a green frame marks the query's own pair")
