"""CLI: catalog (being built)."""

import typer


def add() -> None:
    """(being built)"""
    raise typer.Exit(1)


def query() -> None:
    """(being built)"""
    raise typer.Exit(1)


def show() -> None:
    """(being built)"""
    raise typer.Exit(1)


def sources() -> None:
    """(being built)"""
    raise typer.Exit(1)

