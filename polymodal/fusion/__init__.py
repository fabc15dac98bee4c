"""Built-in fusion operators; importing this package registers them all in ``FUSIONS``."""

from polymodal.fusion import (  # noqa: F401  (registration side effects)
    bottleneck,
    concat,
    cross_attention,
    deepset,
    gated,
    intermediary,
    late,
    low_rank_tensor,
    moe,
    sequential,
    transformer,
)
from polymodal.fusion.base import FUSIONS, Fusion

__all__ = ["FUSIONS", "Fusion"]
