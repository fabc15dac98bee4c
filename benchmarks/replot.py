"""Re-draw the committed PNGs under ``benchmarks/results/`` from the JSON next to them, with the current plot code.

No model is trained: every figure is drawn from numbers already in the results.

* ``fusion_compare_<dataset>/compare.json`` (written by ``fusion_compare.py`` through ``compare``) ->
  ``subsets.png`` and ``noise.png`` in the same folder (``polymodal.experiments.compare.write_plots``).
* ``token_budget.json`` -> ``token_budget.png`` only with ``--token-budget`` (no PNG of it is committed).

    python benchmarks/replot.py [--token-budget]
"""

from __future__ import annotations

import argparse
import json

from _common import RESULTS

from polymodal.evaluate.token_bench import plot_curve
from polymodal.experiments.compare import write_plots


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--token-budget", action="store_true", help="also draw results/token_budget.png")
    args = ap.parse_args()
    for path in sorted(RESULTS.glob("fusion_compare_*/compare.json")):
        saved = json.loads(path.read_text())
        summary = {k: v for k, v in saved.items() if k not in ("runs", "plots")}
        plots = write_plots(summary, saved.get("runs", []), path.parent)
        print(f"{path.parent.relative_to(RESULTS.parents[1])}: {', '.join(plots) or 'nothing (no matplotlib?)'}")
    if args.token_budget:
        tb = RESULTS / "token_budget.json"
        if plot_curve(json.loads(tb.read_text()), RESULTS / "token_budget.png"):
            print(f"{(RESULTS / 'token_budget.png').relative_to(RESULTS.parents[1])}")


if __name__ == "__main__":
    main()
