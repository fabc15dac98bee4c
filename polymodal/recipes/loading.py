"""``pm.load``: the estimator saved in a run folder, chosen by the run type written in its config."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from polymodal.recipes import aligned as _aligned  # noqa: F401  (registers run type "align")
from polymodal.recipes import model as _model  # noqa: F401  (registers run type "model")
from polymodal.recipes.runs import RUN_TYPES, read_run


def load(path: str | Path) -> Any:
    """A ``Model`` saved by ``fit`` or an ``AlignedModel`` saved by ``align`` (``--out`` of either command)."""
    cfg, schema, info = read_run(path)
    cls = RUN_TYPES.get(str(cfg.get("run_type", "model")))
    return cls.from_run(path, cfg, schema, info)
