"""polymodal: multimodal machine learning from a table of mixed-modality records.

    import polymodal as pm
    model = pm.fit(train_df, label="digit", fusion="transformer")
    model.evaluate(test_df); model.predict(df); model.save("runs/m1"); pm.load("runs/m1")

Heavy modules (Lightning, the encoders) load on first use, so ``import polymodal`` and the CLI start fast.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

from polymodal.errors import DecodeError, PolymodalError, SchemaError  # noqa: E402
from polymodal.types import Batch, FusionOutput, Tokens  # noqa: E402

_LAZY = {"Model": "recipes.fit", "fit": "recipes.fit", "load": "recipes.fit", "prepare": "recipes.fit",
         "AlignedModel": "recipes.align", "align": "recipes.align", "Index": "index"}

__all__ = ["AlignedModel", "Batch", "DecodeError", "Index", "align", "FusionOutput", "Model", "PolymodalError", "SchemaError", "Tokens", "fit", "load"]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'polymodal' has no attribute {name!r}")
