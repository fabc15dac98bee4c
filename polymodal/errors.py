"""Errors that tell the user what went wrong, where (row, column, file) and what to do."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class PolymodalError(Exception):
    """Base class of every error polymodal raises on purpose."""


class SchemaError(PolymodalError, ValueError):
    """The table cannot be mapped to modalities (empty table, unknown label, unsupported column...)."""


class DecodeError(PolymodalError, ValueError):
    """One cell could not be decoded. Names the row, the column, the file (if any) and what to do."""

    def __init__(self, row: object, column: str, problem: str, file: str | None = None, hint: str | None = None):
        self.row, self.column, self.problem, self.file = row, column, problem, file
        where = f"row {row!r}, column {column!r}" + (f", file {file!r}" if file else "")
        hint = hint or (
            "fix or remove the value, or pass on_error='missing' (CLI: --on-error missing) "
            "to treat undecodable values as missing; they are then counted and reported"
        )
        super().__init__(f"{where}: {problem}. What to do: {hint}")


def unknown_message(what: str, name: object, valid: Iterable[str]) -> str:
    """``unknown <what> 'x'. Did you mean 'y'? Valid: a, b, c`` -- for names that are not a registry's."""
    valid = sorted(valid)
    close = difflib.get_close_matches(str(name), valid, n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    return f"unknown {what} {name!r}.{hint} Valid: {', '.join(valid)}"


class UnknownNameError(PolymodalError, KeyError):
    """A registry has no part of that name. The message lists the valid names and the closest ones (did you mean).

    A ``KeyError`` (a registry is a mapping) whose ``str()`` is the plain message: ``KeyError`` would quote it.
    """

    def __init__(self, kind: str, name: object, choices: Iterable[str]) -> None:
        self.kind, self.name, self.choices = kind, name, sorted(choices)
        self.suggestions = difflib.get_close_matches(str(name), self.choices, n=3)
        known = ", ".join(self.choices) or "(none registered)"
        hint = f" Did you mean {' or '.join(repr(s) for s in self.suggestions)}?" if self.suggestions else ""
        self.message = f"unknown {kind} {name!r}; choose one of: {known}.{hint}"
        super().__init__(self.message)

    def __str__(self) -> str:
        return self.message

    def __reduce__(self):  # picklable (e.g. across data-loader workers) despite the custom signature
        return type(self), (self.kind, self.name, self.choices)


class ComponentError(PolymodalError, TypeError, ValueError):
    """A pluggable choice is malformed: not a name, a ``{"name", "options"}`` mapping or a ``Component``, or it
    gives options its part does not take (or values they do not accept). The message names the valid ones."""
