"""``pm.load``: the estimator saved in a run folder, chosen by the run type written in its config."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from polymodal import __version__
from polymodal.errors import PolymodalError
from polymodal.recipes import aligned as _aligned  # noqa: F401  (registers run type "align")
from polymodal.recipes import model as _model  # noqa: F401  (registers run type "model")
from polymodal.recipes.runs import RUN_TYPES, read_run


# Run types whose estimators live in layers above recipes (polymodal/lm, polymodal/pretrain): this layer may not
# import them, so pm.load loads them only once their package is imported (it registers in RUN_TYPES) and otherwise
# says how to.
ELSEWHERE = {"lm": "polymodal.lm.load_lm_run(path) (a pm.fit_lm run)",
             "pretrain": "polymodal.pretrain.run.PretrainedModel.load(path) (a polymodal pretrain run)"}


def load(path: str | Path) -> Any:
    """A ``Model`` saved by ``fit`` or an ``AlignedModel`` saved by ``align`` (``--out`` of either command).

    The folder's files must belong together (``manifest.json``, see ``recipes/runs.py``); a torn, mixed or
    tampered folder is a ``PolymodalError`` naming the file, never a silently wrong model."""
    cfg, schema, info = read_run(path)
    kind = cfg.get("run_type", "model")
    kind = kind if isinstance(kind, str) else repr(kind)
    if kind not in RUN_TYPES and kind in ELSEWHERE:
        raise PolymodalError(f"{path} holds a run of type {kind!r}: load it with {ELSEWHERE[kind]}")
    if kind not in RUN_TYPES:
        raise PolymodalError(f"{path} holds a run of type {kind!r}, which this polymodal ({__version__}) cannot load; "
                             f"it loads {', '.join(sorted({*RUN_TYPES.names(), *ELSEWHERE}))}")
    return RUN_TYPES.get(kind).from_run(path, cfg, schema, info)
