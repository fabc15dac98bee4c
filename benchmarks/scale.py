"""Issue 13's numbers in one file: runs ``scale_data.py`` (streaming memory and throughput, chunked predict) and
``scale_train.py`` (Lightning DDP, Ray Train, SIGKILL resume), each in its own process, and merges their results
into ``results/scale.json`` (top-level keys from both, each part's full JSON under ``details``).

``python benchmarks/scale.py [--quick] [--skip-run]``: ``--skip-run`` only merges the part files already in
``results/`` (``scale_data.json``, ``scale_train.json``). When ``results/scale_data_throughput.json`` exists
(``scale_data.py --throughput N``: N side-by-side pairs on a quiet machine), its throughput ratio is the headline.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
PARTS = ("scale_data", "scale_train")
KEYS = ("stream_peak_rss_ratio_10x", "memory_peak_rss_mb", "stream_vs_memory_throughput", "predict_peak_rss_ratio_10x",
        "ddp_acc_diff", "ray_acc_diff", "resume_exact")


def main() -> None:
    args = sys.argv[1:]
    quick = ["--quick"] if "--quick" in args else []
    if "--skip-run" not in args:
        for part in PARTS:
            subprocess.run([sys.executable, str(HERE / f"{part}.py"), *quick], check=True, cwd=HERE)
    out: dict = {"details": {}}
    for part in PARTS:
        res = json.loads((RESULTS / f"{part}.json").read_text())
        out["details"][part] = res
        for k, v in res.items():
            if not isinstance(v, dict) or k in KEYS:
                out.setdefault(k, v)
    quiet = RESULTS / "scale_data_throughput.json"  # scale_data.py --throughput N, on a quiet machine
    if quiet.exists():
        thr = json.loads(quiet.read_text())
        out["details"]["scale_data_throughput"] = thr
        out["stream_vs_memory_throughput"] = thr["stream_vs_memory_throughput"]
        out["stream_vs_memory_throughput_source"] = (
            f"scale_data_throughput.json ({len(thr['runs'])} side-by-side pairs, {thr['_meta']['time']}); the full "
            f"scale_data.json run measured {out['details']['scale_data']['stream_vs_memory_throughput']} on a "
            "loaded machine")
    missing = [k for k in KEYS if k not in out]
    out["missing_keys"] = missing
    out["merged_at"] = time.strftime("%Y-%m-%dT%H:%M:%S")
    (RESULTS / "scale.json").write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps({k: out.get(k) for k in KEYS}, indent=2))
    if missing:
        sys.exit(f"missing keys: {missing}")


if __name__ == "__main__":
    main()
