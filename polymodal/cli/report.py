"""``polymodal report``: one self-contained HTML page of one run or several side by side (``polymodal/report``).

The other commands write one automatically next to their outputs (``auto_report``): ``fit`` / ``align`` into the
run folder, ``compare`` / ``robustness`` into their ``--out`` folder, ``evaluate`` / ``bench tokens`` beside their
``--out`` JSON (``metrics.json`` -> ``metrics.html``). A report that cannot be written there (no matplotlib is
fine; a full disk is not) is a warning on stderr, never a failed command: the results are already saved.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from polymodal.cli import common as c


@c.guarded
def report(
    runs: list[Path] = typer.Argument(
        ..., metavar="RUN", help="Run folders (fit / align --out), output folders (compare / robustness --out) or result JSON "
                  "files (evaluate / bench tokens --out); several are shown side by side",
    ),
    out: Path = typer.Option(Path("report.html"), "--out", "-o", help="The HTML file to write"),
    data: Optional[Path] = typer.Option(
        None, help="A table to show example rows from: inputs (thumbnails, audio), predictions, attributions, "
                   "retrieval",
    ),
    examples: int = typer.Option(8, min=0, help="Example rows per run with --data"),
    title: Optional[str] = typer.Option(None, help="Page title (default: the run names)"),
    max_mb: float = typer.Option(5.0, help="Size budget of the page in MB: example rows are left out to stay "
                                           "under it, and a page still over it is refused"),
    on_error: str = typer.Option("missing", help=c.ON_ERROR_HELP + " (in --data)"),
    threads: Optional[int] = c.threads_option(),
) -> None:
    """Write one self-contained HTML report (opens offline) of one run or several side by side."""
    from polymodal.errors import PolymodalError
    from polymodal.report import write_report

    if c.is_stdout(out):
        raise PolymodalError("--out - is not supported: give an .html file name, e.g. --out report.html")
    if on_error not in ("raise", "missing"):
        raise PolymodalError(f"--on-error must be raise or missing, got {on_error!r}")
    if not max_mb > 0:
        raise PolymodalError(f"--max-mb expects a positive size in MB, got {max_mb:g}")
    c.set_threads(threads)
    path = write_report(runs, out, data=data, examples=examples, title=title, max_mb=max_mb, on_error=on_error)
    c.done("wrote", f"{path} ({path.stat().st_size / 1024:.0f} kB)")
