"""Token reduction primitives (merge / prune / pool) and their FLOPs accounting.

Every reducer works on a padded, masked ``Tokens`` batch, never drops or merges ``protected`` leading tokens,
and returns ``(Tokens, size)`` where ``size[B, N_out]`` counts the original tokens each output token stands
for (feed it back in for the next reduction, and to ``proportional_attention_bias``).

``REDUCERS`` maps a name to its primitive function (their signatures differ: merge takes ``r``, prune takes
``scores`` and ``keep``, pool takes ``grid`` and ``factor``); the budget layer adapts them.
"""

from polymodal.registry import Registry

from .flops import attention_memory_bytes, layer_flops, merge_schedule, schedule_flops, token_counts
from .merge import (
    bipartite_soft_matching,
    merge_source,
    merge_tokens,
    merge_wavg,
    proportional_attention_bias,
)
from .pool import pool_grid, pooled_grid
from .prune import prune_by_importance

REDUCERS: Registry = Registry("token reducer")
REDUCERS.register("merge")(merge_tokens)
REDUCERS.register("prune")(prune_by_importance)
REDUCERS.register("pool")(pool_grid)

__all__ = [
    "REDUCERS",
    "attention_memory_bytes",
    "bipartite_soft_matching",
    "layer_flops",
    "merge_schedule",
    "merge_source",
    "merge_tokens",
    "merge_wavg",
    "pool_grid",
    "pooled_grid",
    "proportional_attention_bias",
    "prune_by_importance",
    "schedule_flops",
    "token_counts",
]
