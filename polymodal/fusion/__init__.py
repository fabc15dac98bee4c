"""Built-in fusion operators; importing this package registers them all in ``FUSIONS``."""

from . import concat, late, transformer  # noqa: F401  (registration side effects)
from .base import FUSIONS, Fusion

__all__ = ["FUSIONS", "Fusion"]
