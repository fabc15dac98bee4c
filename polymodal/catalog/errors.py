"""The catalogue's errors: each names the source, the row and the column where there is one, and what to do."""

from __future__ import annotations

from polymodal.errors import PolymodalError


class CatalogError(PolymodalError):
    """A problem with a catalogue folder, a source table added to it, or a query over it."""


class CatalogLockedError(CatalogError):
    """Another process holds the catalogue's writer lock for longer than the wait allows."""
