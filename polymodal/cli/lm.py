"""CLI: lm (being built)."""

import typer


def fit() -> None:
    """(being built)"""
    raise typer.Exit(1)


def ask() -> None:
    """(being built)"""
    raise typer.Exit(1)


def evaluate() -> None:
    """(being built)"""
    raise typer.Exit(1)

