"""Per-kind processors: importing this package registers every kind in ``PROCESSORS``."""

from __future__ import annotations

from polymodal.data.kinds import audio, depth, image, tabular, text, timeseries  # noqa: F401  (registration side effects)
from polymodal.data.kinds.base import PROCESSORS, DecodeContext, DecodeReport, Processor

__all__ = ["PROCESSORS", "DecodeContext", "DecodeReport", "Processor", "get_processor"]


def get_processor(kind: str) -> Processor:
    """A fresh processor for a kind name (``image``, ``depth``, ``audio``, ``text``, ``tabular``, ``timeseries``)."""
    return PROCESSORS.build(kind)
