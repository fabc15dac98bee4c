"""HTML building blocks that escape by default: every value is ``html.escape``d unless it is ``Markup`` (a fragment
built here). Column names, class labels, run names and file paths are user data, so nothing reaches the page
unescaped by accident.

Numbers carry their full value in the DOM: ``num(0.91234, metric="accuracy", run="m1")`` is
``<span class="num" data-metric="accuracy" data-run="m1" data-value="0.91234">0.9123</span>``, so a reader (or the
browser test) gets the exact number behind a rounded cell.
"""

from __future__ import annotations

import html
import math
import numbers
from collections.abc import Iterable, Mapping
from typing import Any


class Markup(str):
    """An HTML fragment that is already safe: it is not escaped again."""


def esc(v: Any) -> Markup:
    """``v`` as HTML: a ``Markup`` fragment as is, anything else escaped (quotes included)."""
    return v if isinstance(v, Markup) else Markup(html.escape(str(v), quote=True))


def join(parts: Iterable[Any], sep: str = "") -> Markup:
    return Markup(sep.join(esc(p) for p in parts))


def _attrs(attrs: Mapping[str, Any]) -> str:
    out = []
    for k, v in attrs.items():
        if v is None or v is False:
            continue
        name = k.rstrip("_").replace("_", "-")
        out.append(f" {name}" if v is True else f' {name}="{html.escape(str(v), quote=True)}"')
    return "".join(out)


def tag(name: str, *children: Any, **attrs: Any) -> Markup:
    """``<name attrs>children</name>``; ``class_=`` for ``class``, ``data_metric=`` for ``data-metric``."""
    return Markup(f"<{name}{_attrs(attrs)}>{join(children)}</{name}>")


def void(name: str, **attrs: Any) -> Markup:
    """A tag without children (``img``, ``br``)."""
    return Markup(f"<{name}{_attrs(attrs)}>")


def fmt(v: Any, spec: str | None = None) -> str:
    """A number for reading: ints as ints, floats to 4 decimals (or ``spec``); None as a dash."""
    if v is None:
        return "–"
    if isinstance(v, bool) or not isinstance(v, numbers.Real):
        return str(v)
    if isinstance(v, numbers.Integral) and not spec:
        return str(int(v))
    f = float(v)
    if not math.isfinite(f):
        return str(f)
    return format(f, spec or ".4f")


def num(v: Any, metric: str, *, spec: str | None = None, **data: Any) -> Markup:
    """A number for reading that carries its exact value: ``data-value`` (``repr`` of the float: every digit),
    ``data-metric`` and any other ``data-*`` given (``run=``, ``subset=``, ...)."""
    value = None if v is None else (int(v) if isinstance(v, numbers.Integral) and not isinstance(v, bool)
                                    else float(v) if isinstance(v, numbers.Real) else v)
    extra = {f"data_{k}": val for k, val in data.items()}
    return tag("span", fmt(value, spec), class_="num", data_metric=metric,
               data_value=None if value is None else repr(value), **extra)


def table(headers: Iterable[Any], rows: Iterable[Iterable[Any]], *, cls: str = "grid", caption: Any = None,
          **attrs: Any) -> Markup:
    """A table whose cells are escaped values or ``Markup``; a cell given as ``(content, {attrs})`` gets attributes."""
    def cell(name: str, c: Any) -> Markup:
        if isinstance(c, tuple) and len(c) == 2 and isinstance(c[1], dict):
            return tag(name, c[0], **c[1])
        return tag(name, c)

    head = tag("thead", tag("tr", *(cell("th", h) for h in headers)))
    body = tag("tbody", *(tag("tr", *(cell("td", c) for c in r)) for r in rows))
    return tag("table", tag("caption", caption) if caption is not None else "", head, body, class_=cls, **attrs)


# viridis at 9 stops (matplotlib's colour map, so the HTML heatmaps read like the figures)
_VIRIDIS = ((68, 1, 84), (71, 44, 122), (59, 81, 139), (44, 113, 142), (33, 144, 141), (39, 173, 129),
            (92, 200, 99), (170, 220, 50), (253, 231, 37))


def heat(v: float | None, lo: float, hi: float, *, reverse: bool = False) -> dict[str, str]:
    """Cell attributes for a heatmap: a viridis background for ``v`` in ``[lo, hi]`` and a legible ink."""
    if v is None or not math.isfinite(float(v)):
        return {"class_": "heat nan"}
    t = 0.5 if hi <= lo else (float(v) - lo) / (hi - lo)
    t = min(max(1.0 - t if reverse else t, 0.0), 1.0) * (len(_VIRIDIS) - 1)
    i = min(int(t), len(_VIRIDIS) - 2)
    a, b = _VIRIDIS[i], _VIRIDIS[i + 1]
    r, g, bl = (round(a[k] + (b[k] - a[k]) * (t - i)) for k in range(3))
    ink = "#000" if 0.299 * r + 0.587 * g + 0.114 * bl > 140 else "#fff"
    return {"class_": "heat", "style": f"background:rgb({r},{g},{bl});color:{ink}"}


def section(title: str, *body: Any, sid: str, note: Any = None) -> Markup:
    """One report section: a heading, an optional one-line note, the body."""
    return tag("section", tag("h3", title), tag("p", note, class_="note") if note else "", *body,
               class_="section", data_section=sid)


def figure(uri: str | None, alt: str) -> Markup:
    """An inline chart (a ``data:`` URI, from ``charts.py``), or nothing when matplotlib is not installed."""
    if not uri:
        return Markup("")
    return tag("figure", void("img", src=uri, alt=alt, class_="chart"))
