"""Persistent cross-modal search: ``Index`` (model + table -> LanceDB on disk) over a ``VectorStore``."""

from .build import Index, load_run
from .store import VectorStore

__all__ = ["Index", "VectorStore", "load_run"]
