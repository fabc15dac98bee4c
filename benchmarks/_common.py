"""Shared benchmark plumbing: thread settings, the JSON contract (last stdout line + benchmarks/results/)."""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
RESULTS = ROOT / "benchmarks" / "results"


def setup(threads: int = 2) -> None:
    import torch

    torch.set_num_threads(threads)


def emit(name: str, result: dict) -> None:
    """Write ``benchmarks/results/<name>.json`` and print the object as the last stdout line."""
    import torch

    result = dict(result)
    result.setdefault("_meta", {
        "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "machine": platform.machine(),
        "python": platform.python_version(),
    })
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result))
