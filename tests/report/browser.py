"""Open a report in headless Chromium and watch it: console errors, page errors, dialogs and every request."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class Opened:
    page: Any
    errors: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)
    screenshot: Path | None = None

    def values(self, metric: str, **data: Any) -> list[float]:
        """The exact ``data-value`` of every number with ``data-metric=metric`` (and the given ``data-*``)."""
        sel = f'[data-metric="{metric}"]' + "".join(f'[data-{k}="{v}"]' for k, v in data.items())
        return [float(v) for v in self.page.eval_on_selector_all(sel, "els => els.map(e => e.dataset.value)")
                if v is not None]

    def value(self, metric: str, **data: Any) -> float:
        found = self.values(metric, **data)
        assert len(found) == 1, f"{metric} {data}: {len(found)} numbers in the DOM"
        return found[0]


def open_report(browser: Any, html: Path, shot: Path, *, width: int = 1400) -> Opened:
    """Load ``html`` from file://, wait for every image and clip to be parsed, take a full-page screenshot to
    ``shot`` (and to ``$POLYMODAL_SCREENSHOT_DIR`` when set)."""
    page = browser.new_page(viewport={"width": width, "height": 900})
    opened = Opened(page)
    page.on("console", lambda m: opened.errors.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
    page.on("pageerror", lambda e: opened.errors.append(f"page error: {e}"))
    page.on("dialog", lambda d: (opened.errors.append(f"dialog: {d.message}"), d.dismiss()))
    page.on("request", lambda r: opened.requests.append(r.url))
    page.goto(html.resolve().as_uri(), wait_until="load")
    page.wait_for_function("Array.from(document.images).every(i => i.complete)")
    page.screenshot(path=str(shot), full_page=True)
    opened.screenshot = shot
    if os.environ.get("POLYMODAL_SCREENSHOT_DIR"):
        target = Path(os.environ["POLYMODAL_SCREENSHOT_DIR"])
        target.mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, target / shot.name)
    return opened


def external(requests: list[str]) -> list[str]:
    """The requests that are neither the page itself (file:) nor inline (data:)."""
    return [u for u in requests if not (u.startswith("file:") or u.startswith("data:"))]
