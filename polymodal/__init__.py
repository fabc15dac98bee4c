"""polymodal: multimodal machine learning from a table of mixed-modality records.

    import polymodal as pm
    model = pm.fit(train_df, label="digit", fusion="transformer")
    model.evaluate(test_df); model.predict(df); model.predict_proba(df); model.save("runs/m1"); pm.load("runs/m1")
    emb = pm.align(pairs_df, use=["image", "text"], objective="siglip")

The public API is ``__all__`` (``dir(polymodal)`` lists it; ``help(pm.fit)`` shows each one's signature and
docstring). Heavy modules (Lightning, the encoders) load on first use, so ``import polymodal`` and the CLI start
fast: ``fit``, ``align``, ``load``, ``Model``, ... are looked up in ``_LAZY`` when first used.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.2.0"

from polymodal.errors import DecodeError, PolymodalError, SchemaError  # noqa: E402
from polymodal.types import Batch, FusionOutput, Tokens  # noqa: E402

# public name -> the module (below polymodal) that defines it; imported on first use
_LAZY = {"Model": "recipes.model", "fit": "recipes.fit", "load": "recipes.loading", "AlignedModel": "recipes.aligned",
         "align": "recipes.align", "Index": "index", "Component": "registry", "list_presets": "config.presets",
         "fit_lm": "lm.fit", "PretrainedModel": "pretrain.run"}

__all__ = ["AlignedModel", "Batch", "Component", "DecodeError", "FusionOutput", "Index", "Model", "PolymodalError",
           "SchemaError", "Tokens", "align", "fit", "list_presets", "load"]


def __getattr__(name: str) -> Any:
    """``pm.fit`` & co.: the object itself (the function or class, never its module), cached after the first use."""
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value  # later look-ups skip this hook; `polymodal.align` stays the function
        return value
    raise AttributeError(f"module 'polymodal' has no attribute {name!r}")


def __dir__() -> list[str]:
    """The public API (``__all__``, lazy names included) plus the module's globals."""
    return sorted(set(__all__) | set(globals()))
