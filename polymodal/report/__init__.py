"""Self-contained HTML reports of runs (one run, or several side by side), opened offline in any browser.

``write_report(["runs/m1", "runs/m2"], "compare.html")``; see ``docs/report.md``. Layout of the package:
``sources`` (read and recognise run folders and result JSON), ``markup`` (escaping HTML helpers), ``charts``
(matplotlib figures as inline SVG), ``media`` (thumbnails, audio clips), ``examples`` (rows of a table through the
model), ``sections`` / ``examples_view`` (one section each), ``page`` (the page, the size budget), ``build``.
"""

from polymodal.report.build import build_report, report_of, write_report

__all__ = ["build_report", "report_of", "write_report"]
