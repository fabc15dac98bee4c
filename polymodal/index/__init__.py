"""Persistent cross-modal search: ``Index`` (model + table -> LanceDB on disk) over a ``VectorStore``."""

from polymodal.index.build import Index, load_run
from polymodal.index.store import IndexLockedError, VectorStore

__all__ = ["Index", "IndexLockedError", "VectorStore", "load_run"]
