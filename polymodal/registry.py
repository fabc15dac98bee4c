"""One registry pattern for every pluggable part (encoders, fusions, heads, objectives, token reducers, ...).

A registry maps a name to a factory; a decorator in the part's own file fills it, and the registry is how the part
is dispatched (never a parallel if-chain or tuple of names). Adding a method is one file plus one test, and
``polymodal list fusions`` prints what exists.

Every pluggable choice is a ``Component(name, options)``, resolved through its registry:
``FUSIONS.build_component(Component("transformer", {"layers": 2}), names, dim)``. A miss raises
``UnknownNameError`` (a ``KeyError``) naming the valid names and the closest ones.
"""

from __future__ import annotations

from collections.abc import Iterable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from polymodal.errors import ComponentError, UnknownNameError

T = TypeVar("T")


@dataclass(frozen=True)
class Component:
    """One pluggable choice: the ``name`` it is registered under and the ``options`` its factory takes.

    JSON form: ``{"name": ..., "options": {...}}`` (``to_dict`` / ``Component.of``). ``options`` is copied on
    construction, so a component never shares its dict with the caller.
    """

    name: str
    options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ComponentError(f"a component's name must be a non-empty string, got {self.name!r}")
        if not isinstance(self.options, Mapping):
            raise ComponentError(
                f"the options of {self.name!r} must be a mapping of option name -> value, got {self.options!r}"
            )
        bad = [k for k in self.options if not isinstance(k, str)]
        if bad:
            raise ComponentError(f"option names of {self.name!r} must be strings, got {bad!r}")
        object.__setattr__(self, "options", dict(self.options))

    @classmethod
    def of(cls, value: Component | str | Mapping[str, Any]) -> Component:
        """Coerce ``"name"``, ``{"name": ..., "options": {...}}`` (options optional) or a ``Component``."""
        if isinstance(value, Component):
            return value
        if isinstance(value, str):
            return cls(value)
        if isinstance(value, Mapping):
            extra = sorted(str(k) for k in value if k not in ("name", "options"))
            if "name" not in value or extra:
                what = f"unknown keys {extra}" if extra else "no 'name'"
                raise ComponentError(
                    f"a component mapping takes the keys 'name' and 'options' ({what} in {dict(value)!r}); "
                    "write it as {'name': ..., 'options': {...}}"
                )
            options = value.get("options")
            return cls(value["name"], {} if options is None else options)
        raise ComponentError(
            "expected a component: a name, a {'name': ..., 'options': {...}} mapping or a Component, "
            f"got {type(value).__name__} {value!r}"
        )

    def to_dict(self) -> dict[str, Any]:
        """``{"name": ..., "options": {...}}`` (a copy: editing it leaves the component alone)."""
        return {"name": self.name, "options": dict(self.options)}

    def __hash__(self) -> int:  # by value, as equality (the options dict alone is unhashable)
        return hash((self.name, _frozen(self.options)))


def _frozen(v: Any) -> Any:
    if isinstance(v, Mapping):
        return tuple(sorted((str(k), _frozen(x)) for k, x in v.items()))
    if isinstance(v, (list, tuple)):
        return tuple(_frozen(x) for x in v)
    return v


def import_submodules(package: str, path: Iterable[str]) -> None:
    """Import every module of a package, so each part registers itself by being in the folder: adding a fusion,
    an encoder, a reducer or an objective is one file (plus its test), with no list of names to edit."""
    import importlib
    import pkgutil

    for info in sorted(pkgutil.iter_modules(list(path)), key=lambda i: i.name):
        if not info.name.startswith("_"):
            importlib.import_module(f"{package}.{info.name}")


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
        """The factory registered as ``name``; ``UnknownNameError`` (with the valid names) on a miss."""
        try:
            return self._items[name]
        except (KeyError, TypeError):  # TypeError: an unhashable "name"
            raise UnknownNameError(self.kind, name, self._items) from None

    def build(self, name: str, /, *args, **kwargs) -> T:
        return self.get(name)(*args, **kwargs)

    def build_component(self, component: Component | str | Mapping[str, Any], /, *args, **kwargs) -> T:
        """``build(component.name, *args, **component.options, **kwargs)``; keyword arguments override options."""
        c = Component.of(component)
        return self.build(c.name, *args, **{**c.options, **kwargs})

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
