"""Token reduction primitives (merge / prune / pool) and their FLOPs accounting.

Every reducer works on a padded, masked ``Tokens`` batch, never drops or merges ``protected`` leading tokens,
and returns ``(Tokens, size)`` where ``size[B, N_out]`` counts the original tokens each output token stands
for (feed it back in for the next reduction, and to ``proportional_attention_bias``).

``REDUCERS`` maps a name to its primitive function (their signatures differ: merge takes ``r``, prune takes
``scores`` and ``keep``, pool takes ``grid`` and ``factor``); the budget layer adapts them to one knob, with
``zip`` = prune with context tokens: ``spec.py`` (``TokenBudget``, ``schedule_counts``), ``stack.py`` (``run_stack``:
a block stack with reductions) and ``budget.py`` (``install_token_budget``: the wiring into a net).
"""

from polymodal.registry import Registry

from polymodal.tokens.budget import install_token_budget
from polymodal.tokens.flops import (
    attention_memory_bytes,
    count_flops,
    layer_flops,
    merge_schedule,
    schedule_flops,
    stack_costs,
    token_counts,
)
from polymodal.tokens.merge import (
    bipartite_soft_matching,
    merge_source,
    merge_tokens,
    merge_wavg,
    proportional_attention_bias,
)
from polymodal.tokens.pool import pool_grid, pool_shape, pool_to, pooled_grid
from polymodal.tokens.prune import prune_by_importance, query_importance, zip_tokens
from polymodal.tokens.spec import REDUCER_NAMES, SizedTokens, TokenBudget, schedule_counts
from polymodal.tokens.stack import run_stack

REDUCERS: Registry = Registry("token reducer")
REDUCERS.register("merge")(merge_tokens)
REDUCERS.register("prune")(prune_by_importance)
REDUCERS.register("pool")(pool_grid)
REDUCERS.register("zip")(zip_tokens)

__all__ = [
    "REDUCERS",
    "REDUCER_NAMES",
    "SizedTokens",
    "TokenBudget",
    "count_flops",
    "install_token_budget",
    "pool_shape",
    "pool_to",
    "query_importance",
    "run_stack",
    "schedule_counts",
    "stack_costs",
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
    "zip_tokens",
]
