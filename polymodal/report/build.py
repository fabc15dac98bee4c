"""``write_report``: run folders and result files in, one self-contained HTML page out."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from polymodal.report.page import DEFAULT_MAX_MB, render_within_budget, write
from polymodal.report.sources import RunData, read_source, read_sources


def build_report(runs: Sequence[RunData], out: str | Path, *, data: Any = None, examples: int = 8,
                 title: str | None = None, max_mb: float = DEFAULT_MAX_MB, on_error: str = "missing") -> Path:
    """Write the report of ``runs`` (``RunData``, see ``sources.py``) to ``out``. With ``data`` (a table), each run
    that has a run folder also shows ``examples`` rows of it (inputs, predictions, attributions, retrieval)."""
    from polymodal.report.examples import add_examples

    if data is not None:
        for r in runs:
            add_examples(r, data, n=examples, on_error=on_error)
    return write(render_within_budget(list(runs), title=title, max_mb=max_mb), out)


def write_report(paths: str | Path | Sequence[str | Path], out: str | Path, **options: Any) -> Path:
    """The report of one or several run folders / output folders / result JSON files (side by side), written to
    ``out`` as one self-contained HTML file; ``options`` as for ``build_report``."""
    paths = [paths] if isinstance(paths, (str, Path)) else list(paths)
    return build_report(read_sources(paths), out, **options)


def report_of(sources: Sequence[str | Path], out: str | Path, **options: Any) -> Path:
    """One report column made of several sources (a run folder and the result JSON a command just wrote next to
    it): what ``fit``, ``evaluate``, ``robustness``, ... write automatically."""
    first, *rest = [read_source(s) for s in sources]
    for r in rest:
        first.found.extend(f for f in r.found if f.data not in [g.data for g in first.found])
        if first.config is None and r.config is not None:
            first.config, first.schema, first.info, first.run_dir = r.config, r.schema, r.info, r.run_dir
    return build_report([first], out, **options)
