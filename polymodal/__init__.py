"""polymodal: multimodal machine learning from a table of mixed-modality records.

    import polymodal as pm
    model = pm.fit(train_df, label="digit", fusion="transformer")
    model.evaluate(test_df); model.predict(df); model.save("runs/m1"); pm.load("runs/m1")

Heavy modules (Lightning, the encoders) load on first use, so ``import polymodal`` and the CLI start fast.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.2.0"

from polymodal.errors import DecodeError, PolymodalError, SchemaError  # noqa: E402
from polymodal.types import Batch, FusionOutput, Tokens  # noqa: E402

_LAZY = {"Model": "recipes.model", "fit": "recipes.fit", "load": "recipes.loading", "AlignedModel": "recipes.aligned",
         "align": "recipes.align", "Index": "index", "Component": "registry", "list_presets": "config.presets"}

__all__ = ["AlignedModel", "Batch", "Component", "DecodeError", "FusionOutput", "Index", "Model", "PolymodalError",
           "SchemaError", "Tokens", "align", "fit", "list_presets", "load"]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'polymodal' has no attribute {name!r}")
