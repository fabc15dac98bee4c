"""The ``polymodal`` command line (one module per command group; ``app.py`` assembles them)."""

from polymodal.cli.app import app

__all__ = ["app"]
