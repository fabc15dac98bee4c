"""CLI: pretrain / generate (being built)."""

import typer


def pretrain() -> None:
    """(being built)"""
    raise typer.Exit(1)


def generate() -> None:
    """(being built)"""
    raise typer.Exit(1)
