"""Token budgets on the LM side: fewer modality tokens before the LM (the polymodal reducers), FastV inside it.

``LMBudget(keep=0.25, reducer="pool")`` shrinks every modality's token stream to ``keep`` x its real tokens with a
reducer of ``tokens.REDUCERS`` (``merge`` / ``prune`` / ``pool`` / ``zip``; prune ranks tokens by feature norm,
there being no attention to read before the LM); ``count=1`` keeps that many tokens instead (``count=1`` with
``pool``: one mean token per modality, LLaVA-Mini style). ``fastv_layer`` / ``fastv_drop``: FastV inside the LM
(``fastv.py``).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch

from polymodal.errors import PolymodalError
from polymodal.tokens.registry import as_reducer
from polymodal.types import Tokens


@dataclass(frozen=True)
class LMBudget:
    """``keep`` (fraction of each modality's tokens, (0, 1]) or ``count`` (tokens per modality), the ``reducer``;
    ``fastv_layer`` K and ``fastv_drop`` (fraction of the modality tokens FastV drops after layer K)."""

    keep: float = 1.0
    count: int | None = None
    reducer: str = "pool"
    fastv_layer: int | None = None
    fastv_drop: float = 0.0

    def __post_init__(self) -> None:
        if not 0 < self.keep <= 1:
            raise PolymodalError(f"token budget keep= must be in (0, 1], got {self.keep!r}")
        if self.count is not None and self.count < 1:
            raise PolymodalError(f"token budget count= must be >= 1, got {self.count!r}")
        if not 0 <= self.fastv_drop < 1:
            raise PolymodalError(f"fastv_drop must be in [0, 1), got {self.fastv_drop!r}")
        if self.fastv_drop > 0 and (self.fastv_layer is None or self.fastv_layer < 1):
            raise PolymodalError("FastV needs fastv_layer=K >= 1 (the layer after which modality tokens are pruned)")
        as_reducer(self.reducer)  # an unknown reducer name fails here, with the valid names

    @property
    def before_lm(self) -> bool:
        return self.count is not None or self.keep < 1

    def to_dict(self) -> dict:
        return asdict(self)


def _grid(n: int) -> tuple[int, int] | None:
    s = math.isqrt(n)
    return (s, s) if s * s == n else None


def reduce_tokens(tokens: dict[str, Tokens], budget: LMBudget) -> dict[str, Tokens]:
    """Each modality's tokens shrunk to the budget (no-op when nothing is asked before the LM)."""
    if not budget.before_lm:
        return tokens
    reducer = as_reducer(budget.reducer)
    out = {}
    for m, t in tokens.items():
        n = t.x.shape[1]
        target = budget.count if budget.count is not None else max(1, round(budget.keep * n))
        if target >= n:
            out[m] = t
            continue
        if target == 1 and budget.reducer == "pool":  # one token: the masked mean (LLaVA-Mini's single token)
            out[m] = Tokens(t.pooled()[:, None], t.valid.any(1, keepdim=True), t.present)
            continue
        size = torch.ones(t.mask.shape, dtype=t.x.dtype)
        importance = t.x.norm(dim=-1) if reducer.needs_importance else None
        valid = Tokens(t.x, t.valid, t.present)
        reduced, _, _ = reducer.reduce(valid, size, target, _grid(n), t.x, importance)
        out[m] = reduced
    return out


__all__ = ["LMBudget", "reduce_tokens"]
