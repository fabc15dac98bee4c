"""One registry pattern for every pluggable part (encoders, fusions, heads, ...).

A registry maps a name to a factory; a decorator in the part's folder fills it, so adding a method is one file
plus one test, and ``polymodal list fusions`` prints what exists.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, Callable[..., T]] = {}

    def register(self, name: str) -> Callable[[Callable[..., T]], Callable[..., T]]:
        def deco(factory: Callable[..., T]) -> Callable[..., T]:
            if name in self._items:
                raise ValueError(f"{self.kind} {name!r} is already registered")
            self._items[name] = factory
            return factory

        return deco

    def get(self, name: str) -> Callable[..., T]:
        try:
            return self._items[name]
        except KeyError:
            known = ", ".join(sorted(self._items)) or "(none)"
            raise KeyError(f"unknown {self.kind} {name!r}; choose one of: {known}") from None

    def build(self, name: str, /, *args, **kwargs) -> T:
        return self.get(name)(*args, **kwargs)

    def names(self) -> list[str]:
        return sorted(self._items)

    def describe(self) -> dict[str, str]:
        """name -> first line of the factory's docstring (for ``polymodal list``)."""
        out = {}
        for name in self.names():
            doc = (self._items[name].__doc__ or "").strip().splitlines()
            out[name] = doc[0] if doc else ""
        return out

    def __contains__(self, name: str) -> bool:
        return name in self._items
