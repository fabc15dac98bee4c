"""Errors that tell the user what went wrong, where (row, column, file) and what to do."""

from __future__ import annotations


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
