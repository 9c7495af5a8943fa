"""Storage: the DuckDB store (clips, users, graph, events, keys) and the vector index.

Neither of the customer's six packages fits the stores every other package reads and writes,
so they live here (see the README's architecture section).
"""

from __future__ import annotations

from storage.errors import StorageError, UnknownEntityError
from storage.settings import StorageSettings
from storage.store import Store

__all__ = ["StorageError", "StorageSettings", "Store", "UnknownEntityError"]
