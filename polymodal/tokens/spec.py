"""The token-budget spec: one knob (``budget``, ``reducer``) for every transformer polymodal builds; its schedules.

``TokenBudget(budget=0.5, reducer="merge")`` asks each modality's token stream to shrink to ``budget`` x its
token count (``{"image": 0.25, "audio": 0.5}`` for per-modality budgets; an absent name keeps all its tokens).
``where`` (``"encoder"`` or ``"fusion"``) picks where the reduction happens; the routes are described in
``budget.py``, which installs a spec into a net. ``stack.py`` runs a block stack with the reductions.

The reducer is a ``Component`` (name + options) resolved through ``REDUCERS`` (``registry.py``), which also
validates its options: ``merge`` (ToMe bipartite matching on the keys, size-weighted average, proportional
attention ``log(size)`` in every later attention), ``prune`` (keep the most attended tokens), ``zip`` (VisionZip:
dominant tokens plus ``context`` x budget contextual tokens that absorb the dropped ones; option ``context``,
default 0.15), ``pool`` (Matryoshka / M3: average pooling of the patch grid, or of the time axis, to the budget).
Every reducer takes ``prop_attn`` (proportional attention; default on for merge only):
``TokenBudget(0.5, Component("zip", {"context": 0.2}))``, ``TokenBudget(0.5, {"name": "merge", "options":
{"prop_attn": False}})``.

Schedules (per stack of L blocks; the count after each reduction point, see ``schedule_counts``): ``"first"``
(everything in block 0, after its attention), ``"input"`` (everything before block 0, with block 0's keys as the
merge metric and its query scores as importance: no attention runs on the full count), ``"constant"`` (the same
number of tokens removed in each block, ToMe's constant r), ``"decreasing"`` (r proportional to L, L-1, ..., 1), or
a tuple of cumulative fractions of the reduction done after each block (length L) or before block 0 and after each
block (length L + 1).

``BudgetState`` is the budget a net's modules read at each forward; ``train_budgets`` (M3): during training each
step samples one budget from the list for all modalities, so one model serves any of them. ``SizedTokens`` are
``Tokens`` that carry how many original tokens each one stands for. ``to_dict`` / ``from_dict``: the JSON form.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any

import torch
from torch import Tensor

from polymodal.registry import Component
from polymodal.types import Tokens

from polymodal.tokens.registry import TokenReducer, as_reducer

SCHEDULES = ("first", "input", "constant", "decreasing")
WHERE = ("encoder", "fusion")


# ----------------------------------------------------------------------------------------------------- the spec
@dataclass(frozen=True)
class TokenBudget:
    """What to reduce, how much and where. See the module docstring (and ``budget.py`` for ``where``).

    ``reducer`` accepts a name, a ``{"name", "options"}`` mapping or a ``Component`` and is stored as a
    ``Component``; ``token_reducer`` is the built (validated) reducer that the budget layer calls.
    """

    budget: float | Mapping[str, float] = 1.0
    reducer: Component | str | Mapping[str, Any] = "merge"
    schedule: str | tuple[float, ...] = "first"
    where: str = "encoder"
    train_budgets: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        budgets = dict(self.budget) if isinstance(self.budget, Mapping) else {"*": self.budget}
        for k, b in budgets.items():
            if isinstance(b, bool) or not isinstance(b, (int, float)) or not 0.0 < float(b) <= 1.0:
                raise ValueError(f"token budget for {k!r} must be a number in (0, 1], got {b!r}")
        reducer = Component.of(self.reducer)
        object.__setattr__(self, "reducer", reducer)
        # unknown name: UnknownNameError (a KeyError); bad options: ComponentError (a ValueError)
        object.__setattr__(self, "_reducer", as_reducer(reducer))
        if isinstance(self.schedule, str):
            if self.schedule not in SCHEDULES:
                raise ValueError(f"unknown token schedule {self.schedule!r}; choose one of {', '.join(SCHEDULES)} "
                                 "or give a tuple of cumulative fractions")
        else:
            s = [float(v) for v in self.schedule]
            if not s or any(not 0.0 <= v <= 1.0 for v in s) or any(a > b for a, b in zip(s, s[1:])) or s[-1] != 1.0:
                raise ValueError(f"a schedule tuple must be non-decreasing fractions in [0, 1] ending at 1, got {s}")
            object.__setattr__(self, "schedule", tuple(s))
        if self.where not in WHERE:
            raise ValueError(f"where must be one of {WHERE}, got {self.where!r}")
        tb = tuple(float(b) for b in self.train_budgets)
        if any(not 0.0 < b <= 1.0 for b in tb):
            raise ValueError(f"train_budgets must be numbers in (0, 1], got {list(self.train_budgets)}")
        object.__setattr__(self, "train_budgets", tb)
        if isinstance(self.budget, Mapping):
            object.__setattr__(self, "budget", {str(k): float(v) for k, v in self.budget.items()})
        else:
            object.__setattr__(self, "budget", float(self.budget))

    @property
    def token_reducer(self) -> TokenReducer:
        """The reducer built from ``reducer`` (``REDUCERS``): what ``stack.reduce_segment`` calls."""
        return self._reducer

    def for_modality(self, name: str) -> float:
        if isinstance(self.budget, Mapping):
            return float(self.budget.get(name, 1.0))
        return float(self.budget)

    @property
    def use_prop_attn(self) -> bool:
        """Proportional attention after reductions: the reducer's ``prop_attn`` option (default: merge only)."""
        return self._reducer.prop_attn

    @property
    def is_noop(self) -> bool:
        """True when nothing is ever reduced (budget 1.0 everywhere and no random training budgets)."""
        full = all(b >= 1.0 for b in self.budget.values()) if isinstance(self.budget, Mapping) else self.budget >= 1.0
        return full and not self.train_budgets

    # ---------------------------------------------------------------------------------------- JSON round trip
    def to_dict(self) -> dict[str, Any]:
        """Plain JSON types: tuples become lists, the reducer ``{"name", "options"}``."""
        return {
            "budget": dict(self.budget) if isinstance(self.budget, Mapping) else self.budget,
            "reducer": self.reducer.to_dict(),
            "schedule": self.schedule if isinstance(self.schedule, str) else list(self.schedule),
            "where": self.where,
            "train_budgets": list(self.train_budgets),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "TokenBudget":
        """The inverse of ``to_dict`` (absent keys take their defaults; lists may stand for tuples). Unknown keys
        raise ``ValueError`` with the valid ones; an unknown reducer ``UnknownNameError``."""
        valid = [f.name for f in fields(cls)]
        for k in d:
            if k not in valid:
                close = difflib.get_close_matches(str(k), valid, n=1)
                hint = f" Did you mean {close[0]!r}?" if close else ""
                raise ValueError(f"unknown token budget option {k!r}.{hint} Valid: {', '.join(valid)}")
        kw = dict(d)
        if isinstance(kw.get("schedule"), list):
            kw["schedule"] = tuple(kw["schedule"])
        if "train_budgets" in kw:
            kw["train_budgets"] = tuple(kw["train_budgets"] or ())
        return cls(**kw)


class BudgetState:
    """The budget a net's modules read at each forward (shared by its encoders and fusion).

    In training with ``train_budgets``, ``sample()`` (called once per step by the net) picks the step's budget.
    """

    def __init__(self, spec: TokenBudget) -> None:
        self.spec = spec
        self.sampled: float | None = None

    def budget(self, modality: str, training: bool) -> float:
        if training and self.spec.train_budgets:
            return 1.0 if self.sampled is None else self.sampled
        return self.spec.for_modality(modality)

    def sample(self) -> float:
        tb = self.spec.train_budgets
        self.sampled = tb[int(torch.randint(len(tb), ()))] if tb else None
        return self.sampled


@dataclass
class SizedTokens(Tokens):
    """``Tokens`` plus ``size[B, N]``: how many original tokens each token stands for (after merge / pool / zip).

    ``pooled()`` weights by size, so a merged sequence's mean equals the mean over the tokens it came from.
    """

    size: Tensor | None = None

    def with_present(self, present: Tensor) -> "SizedTokens":
        return SizedTokens(self.x, self.mask, present, self.size)

    def pooled(self) -> Tensor:
        if self.size is None:
            return super().pooled()
        w = (self.valid.to(self.x.dtype) * self.size.to(self.x.dtype))[..., None]
        return (self.x * w).sum(1) / w.sum(1).clamp_min(torch.finfo(self.x.dtype).tiny)


# -------------------------------------------------------------------------------------------------- schedules
def schedule_counts(
    n: int,
    budget: float,
    layers: int,
    schedule: str | Sequence[float] = "first",
    reducer: TokenReducer | Component | str | Mapping[str, Any] = "merge",
    grid: tuple[int, int] | None = None,
) -> list[int]:
    """Token count of one stream after each reduction point: ``[before block 0, after block 0, ..., after L-1]``.

    The final count is ``max(1, round(budget * n))`` (``n`` when ``budget >= 1``); with ``layers == 0`` only the
    first point exists. The reducer (a name, ``Component`` or built reducer) adjusts the counts to what it really
    produces (``TokenReducer.plan``): ``pool`` counts are the exact pooled-grid sizes (``pool_shape``), which can
    differ from the target by a few tokens.
    """
    final = n if budget >= 1.0 else max(1, min(n, round(budget * n)))
    removed = n - final
    if layers == 0:
        fracs = [1.0]
    elif isinstance(schedule, str):
        if schedule == "input":
            fracs = [1.0] * (layers + 1)
        elif schedule == "first":
            fracs = [0.0] + [1.0] * layers
        elif schedule == "constant":
            fracs = [0.0] + [(i + 1) / layers for i in range(layers)]
        elif schedule == "decreasing":
            w = list(range(layers, 0, -1))
            fracs = [0.0] + [sum(w[: i + 1]) / sum(w) for i in range(layers)]
        else:
            raise ValueError(f"unknown schedule {schedule!r}")
    else:
        s = [float(v) for v in schedule]
        if len(s) == layers:
            fracs = [0.0] + s
        elif len(s) == layers + 1:
            fracs = s
        else:
            raise ValueError(f"a schedule tuple needs {layers} (or {layers + 1}) entries for {layers} blocks, got {len(s)}")
    counts = [n - round(removed * f) for f in fracs]
    return as_reducer(reducer).plan(counts, n, grid)


__all__ = ["SCHEDULES", "BudgetState", "SizedTokens", "TokenBudget", "schedule_counts"]
