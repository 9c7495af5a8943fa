"""Exceptions raised by the storage package."""

from __future__ import annotations


class StorageError(Exception):
    """Base class for storage errors."""


class UnknownEntityError(StorageError):
    """A user, clip or key that the store does not hold."""


class DuplicateEntityError(StorageError):
    """An entity with that id exists already."""


class IndexUnavailableError(StorageError):
    """The vector index cannot be reached or opened."""


class IndexHeldError(IndexUnavailableError):
    """An embedded index's folder is held open by another process or instance."""
