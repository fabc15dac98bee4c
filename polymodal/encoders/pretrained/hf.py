"""Loading Hugging Face checkpoints (pip extra ``pretrained``): the helpers the ``hf_*`` encoders share.

``load_hf`` loads a model with ``AutoModel`` from a local folder (a hub id only with ``allow_hub=True``) with the
library's load report kept quiet (``quiet``); ``identity`` is a checkpoint's cache identity; the config helpers
read a checkpoint's ``config.json`` / ``preprocessor_config.json`` (some without importing transformers).

The encoders live in ``hf_text.py`` (``hf_text``, ``sentence_transformer``, ``minilm``), ``hf_vision.py``
(``hf_vision``) and ``hf_audio.py`` (``hf_audio``).
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any

from torch import nn

from polymodal.errors import PolymodalError
from polymodal.encoders.pretrained.base import fingerprint, require

EXTRA = "pretrained"


def transformers_module(what: str):
    return require("transformers", EXTRA, what=what)


@contextlib.contextmanager
def quiet(what: str = "a Hugging Face encoder"):
    """transformers prints a load report for every tower taken out of a bigger checkpoint; keep it quiet."""
    tf = transformers_module(what)
    log = tf.utils.logging
    old, bars = log.get_verbosity(), log.is_progress_bar_enabled()
    log.set_verbosity_error()
    log.disable_progress_bar()
    try:
        yield tf
    finally:
        log.set_verbosity(old)
        if bars:
            log.enable_progress_bar()


def load_hf(source: str, *, allow_hub: bool, what: str) -> nn.Module:
    with quiet() as tf:
        try:
            model = tf.AutoModel.from_pretrained(source, local_files_only=not allow_hub)
        except OSError as e:
            raise PolymodalError(f"{what}: cannot load a Hugging Face model from {source!r}: {e}") from e
    return model.eval()


def identity(source: str, allow_hub: bool) -> str:
    p = Path(source)
    if p.exists():
        return fingerprint(p)
    return f"hub:{source}"  # only with allow_hub=True; the hub revision is not pinned


def max_positions(config: Any) -> int | None:
    for name in ("max_position_embeddings", "max_source_positions", "max_length"):
        v = getattr(config, name, None)
        if isinstance(v, int) and v > 0:
            return v
    return None


def local_source(options: dict[str, Any]) -> str | None:
    path = options.get("path")
    return str(Path(path).expanduser().resolve()) if path and Path(path).expanduser().exists() else None


def text_config(config: Any) -> Any:
    return getattr(config, "text_config", None) or config


def vision_config(config: Any) -> Any:
    return getattr(config, "vision_config", None) or config


def load_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


class HFConfig:
    """Attribute access over a config.json dict (to read sizes without importing transformers)."""

    def __init__(self, d: dict) -> None:
        self.__dict__.update(d)
