"""Stage 2 (option): LoRA adapters on the LM's attention projections, through ``peft``.

``add_lora(model, r=8, alpha=16, dropout=0.0, targets=("q_proj", "v_proj"))`` injects the adapters into ``model``
in place (``peft.inject_adapter_in_model``: no wrapper class, the forward is the LM's own) and returns
``LoraParams``: a module holding the injected ``lora_A`` / ``lora_B`` layers under stable names, so the run folder
saves exactly the adapters (and the optimiser sees exactly them). The base weights stay frozen; ``fit_lm`` copies
the LM first, so the ``LoadedLM`` a caller passed in is never changed.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from polymodal.encoders.pretrained.base import require

DEFAULTS = {"r": 8, "alpha": 16, "dropout": 0.0, "targets": ["q_proj", "v_proj"]}


class LoraParams(nn.Module):
    """The LoRA layers of an LM, keyed by their module path (dots as ``__``)."""

    def __init__(self, layers: dict[str, nn.Module]) -> None:
        super().__init__()
        self.layers = nn.ModuleDict(layers)


def lora_options(options: dict[str, Any] | bool | None) -> dict[str, Any] | None:
    if not options:
        return None
    given = {} if options is True else dict(options)
    unknown = sorted(set(given) - set(DEFAULTS))
    if unknown:
        from polymodal.errors import PolymodalError

        raise PolymodalError(f"unknown lora option(s) {unknown}; valid: {', '.join(DEFAULTS)}")
    return {**DEFAULTS, **given}


def add_lora(model: nn.Module, options: dict[str, Any]) -> LoraParams:
    peft = require("peft", "lm", what="LoRA (stage 2)")
    cfg = peft.LoraConfig(r=int(options["r"]), lora_alpha=int(options["alpha"]), lora_dropout=float(options["dropout"]),
                          target_modules=list(options["targets"]), bias="none")
    peft.inject_adapter_in_model(cfg, model)
    layers = {name.replace(".", "__"): mod for name, mod in model.named_modules()
              if name.endswith(("lora_A", "lora_B"))}
    for name, p in model.named_parameters():
        p.requires_grad_("lora_" in name)
    return LoraParams(layers)


__all__ = ["DEFAULTS", "LoraParams", "add_lora", "lora_options"]
