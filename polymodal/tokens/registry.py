"""The token-reducer registry and the contract every reducer follows.

``REDUCERS`` maps a name to a ``TokenReducer`` subclass; the class is registered in its own module
(``merge.py``, ``prune.py`` (``prune``, ``zip``), ``pool.py``) and building it (``REDUCERS.build_component``)
validates its options. The built reducer is what the budget layer calls: ``stack.reduce_segment`` ->
``reducer.reduce``, ``spec.schedule_counts`` -> ``reducer.plan``. Adding a reducer is one module with one
registered class (imported in ``tokens/__init__.py``) plus one test; the contract tests in ``tests/tokens`` run
over every registered name.

This module imports no reducer and no budget code, so ``spec.py`` and the reducer modules can both import it.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping
from typing import Any, ClassVar

from torch import Tensor

from polymodal.errors import ComponentError
from polymodal.registry import Component, Registry
from polymodal.types import Tokens


class TokenReducer:
    """Base of the token reducers: declared options with defaults, validated on construction.

    Subclasses set ``name`` (their registry name), ``defaults`` (every option they take, with its default; an
    option given as ``None`` takes its default), ``needs_importance`` (True: ``reduce`` gets per-token importance
    scores, and the blocks compute them) and ``primitive`` (the batch-level function they wrap), and implement
    ``reduce``; ``plan`` and ``check`` are optional hooks.

    Every reducer takes ``prop_attn``: proportional attention (ToMe's ``log(size)`` key bias) in the blocks after
    a reduction; on by default for merge only.
    """

    name: ClassVar[str] = ""
    defaults: ClassVar[Mapping[str, Any]] = {"prop_attn": False}
    needs_importance: ClassVar[bool] = False
    primitive: ClassVar[Callable[..., Any]]

    def __init__(self, **options: Any) -> None:
        valid = sorted(self.defaults)
        for k in options:
            if k not in self.defaults:
                close = difflib.get_close_matches(k, valid, n=1)
                hint = f" Did you mean {close[0]!r}?" if close else ""
                raise ComponentError(
                    f"token reducer {self.name!r} has no option {k!r}.{hint} Valid options: {', '.join(valid)}"
                )
        given = {k: v for k, v in options.items() if v is not None}
        for k, v in given.items():
            d = self.defaults[k]
            ok = isinstance(v, bool) if isinstance(d, bool) else (
                isinstance(v, (int, float)) and not isinstance(v, bool) if isinstance(d, (int, float)) else True
            )
            if not ok:
                raise ComponentError(
                    f"option {k!r} of token reducer {self.name!r} must be a {type(d).__name__}, got {v!r}"
                )
        self.options: dict[str, Any] = {**self.defaults, **given}
        self.check()

    def check(self) -> None:
        """Validate option values (ranges); raise ``ComponentError`` naming the option and what is valid."""

    @property
    def prop_attn(self) -> bool:
        return bool(self.options["prop_attn"])

    def reduce(
        self,
        tokens: Tokens,
        size: Tensor,
        target: int,
        grid: tuple[int, int] | None,
        metric: Tensor,
        importance: Tensor | None,
    ) -> tuple[Tokens, Tensor, tuple[int, int] | None]:  # pragma: no cover - abstract
        """Shrink one stream (no protected tokens inside; ``target < N``) to about ``target`` tokens.

        ``size[B, N]``: original tokens per token; ``grid``: the stream's ``(H, W)`` layout (None: a sequence);
        ``metric[B, N, C]``: what similarity is measured on (the block's keys); ``importance[B, N]``: per-token
        scores (only when ``needs_importance``). Returns ``(tokens, size, grid after)``.
        """
        raise NotImplementedError

    def plan(self, counts: list[int], n: int, grid: tuple[int, int] | None) -> list[int]:
        """The token counts this reducer really produces for the planned ``counts`` (default: exactly them)."""
        return counts

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in self.options.items())})"


REDUCERS: Registry[TokenReducer] = Registry("token reducer")


def as_reducer(reducer: TokenReducer | Component | str | Mapping[str, Any]) -> TokenReducer:
    """A built reducer from a name, a ``{"name", "options"}`` mapping, a ``Component`` or a built reducer."""
    if isinstance(reducer, TokenReducer):
        return reducer
    return REDUCERS.build_component(reducer)


__all__ = ["REDUCERS", "TokenReducer", "as_reducer"]
