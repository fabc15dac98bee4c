"""Token reduction primitives (merge / prune / pool) and their FLOPs accounting.

Every reducer works on a padded, masked ``Tokens`` batch, never drops or merges ``protected`` leading tokens,
and returns ``(Tokens, size)`` where ``size[B, N_out]`` counts the original tokens each output token stands
for (feed it back in for the next reduction, and to ``proportional_attention_bias``).

``REDUCERS`` (``registry.py``) maps a name to its ``TokenReducer`` class, registered in the reducer's own module
(``merge.py``: ``merge``; ``prune.py``: ``prune`` and ``zip`` = prune with context tokens; ``pool.py``:
``pool``); each wraps its primitive function (``.primitive``; their signatures differ: merge takes ``r``, prune
takes ``scores`` and ``keep``, pool takes ``grid`` and ``factor``) behind one ``reduce(tokens, size, target, ...)``.
The budget layer dispatches through it: ``spec.py`` (``TokenBudget``, ``schedule_counts``), ``stack.py``
(``run_stack``: a block stack with reductions) and ``budget.py`` (``install_token_budget``: the wiring into a net).
``REDUCER_NAMES`` is ``tuple(REDUCERS.names())``, read when asked (so it includes reducers registered later).
"""

from typing import Any

# Every module, before anything else reads the registry: a reducer registers itself by being in this folder.
from polymodal.registry import import_submodules
from polymodal.tokens.registry import REDUCERS, TokenReducer, as_reducer

import_submodules(__name__, __path__)

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
    Merge,
    bipartite_soft_matching,
    merge_source,
    merge_tokens,
    merge_wavg,
    proportional_attention_bias,
)
from polymodal.tokens.pool import Pool, pool_grid, pool_shape, pool_to, pooled_grid
from polymodal.tokens.prune import Prune, Zip, prune_by_importance, query_importance, zip_tokens
from polymodal.tokens.spec import SizedTokens, TokenBudget, schedule_counts
from polymodal.tokens.stack import run_stack


def __getattr__(name: str) -> Any:
    if name == "REDUCER_NAMES":  # backward-compatible alias, derived from the registry
        return tuple(REDUCERS.names())
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "REDUCERS",
    "REDUCER_NAMES",
    "Merge",
    "Pool",
    "Prune",
    "TokenReducer",
    "Zip",
    "as_reducer",
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
