"""Persistent cross-modal search: ``Index`` (model + table -> LanceDB on disk) over a ``VectorStore``."""

from polymodal.index.build import Index, load_run
from polymodal.index.store import VectorStore

__all__ = ["Index", "VectorStore", "load_run"]
