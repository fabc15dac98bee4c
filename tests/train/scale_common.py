"""Shared by the distributed / Ray / resume tests: a small av-digits config and the real ``polymodal`` command.

The config turns off every random draw inside a training step (modality dropout, fusion and head dropout), so
that a data-parallel run computes the single-process batches' gradients up to two known differences (per-rank
BatchNorm statistics on CPU; float summation order) and a resumed run can be compared bitwise.
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

CONFIG = {
    "model": {"dim": 16, "modality_dropout": 0.0, "fusion": {"name": "transformer", "options": {"dropout": 0.0}},
              "head": {"name": "classify", "options": {"dropout": 0.0}}, "align": {"objective": "clip"}},
    # 120 exported rows -> 108 training rows = 6 global batches of 18 (9 per rank with 2 processes: none dropped)
    "train": {"epochs": 4, "batch_size": 18, "lr": 0.005, "seed": 0, "patience": 50},
}
POLYMODAL = Path(sys.executable).with_name("polymodal")  # the console script of this environment


def write_config(folder: Path, **train) -> Path:
    cfg = json.loads(json.dumps(CONFIG))
    cfg["train"].update(train)
    path = folder / "scale.json"
    path.write_text(json.dumps(cfg))
    return path


def cli_env() -> dict[str, str]:
    env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    for var in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT", "NODE_RANK"):
        env.pop(var, None)
    return env


def fit_command(table: Path, out: Path, config: Path, *extra: str) -> list[str]:
    return [str(POLYMODAL), "fit", str(table), "--label", "digit", "--out", str(out), "--config", str(config),
            "--threads", "1", *extra]


def run_fit(table: Path, out: Path, config: Path, *extra: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(fit_command(table, out, config, *extra), env=cli_env(), capture_output=True, text=True,
                          timeout=timeout)


def weights(run: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(run / "weights.safetensors"))


def history(run: Path) -> list[dict]:
    return json.loads((run / "report.json").read_text())["training"]["history"]


_REFERENCE: dict[str, tuple] = {}


def reference_run(table: Path):
    """``(model, run folder)`` of one process trained with ``CONFIG`` on ``table``, once per test session: the
    DDP, Ray and resume tests all compare against it (checkpointing does not change the weights)."""
    import polymodal as pm

    key = str(table)
    if key not in _REFERENCE:
        folder = Path(tempfile.mkdtemp(prefix="pm-scale-ref-"))
        atexit.register(shutil.rmtree, folder, True)
        model = pm.fit(table / "train.parquet", "digit", config=write_config(folder), out=folder / "run",
                       progress=False)
        _REFERENCE[key] = (model, folder / "run")
    return _REFERENCE[key]
