"""Built-in fusion operators; importing this package registers them all in ``FUSIONS``."""

from polymodal.fusion.base import FUSIONS, Fusion
from polymodal.registry import import_submodules

import_submodules(__name__, __path__)  # every module in this folder registers its fusion(s)

__all__ = ["FUSIONS", "Fusion"]
