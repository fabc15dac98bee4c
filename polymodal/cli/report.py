"""CLI: report (being built)."""

import typer


def report() -> None:
    """(being built)"""
    raise typer.Exit(1)

