"""CLI: export (being built)."""

import typer


def export() -> None:
    """(being built)"""
    raise typer.Exit(1)

