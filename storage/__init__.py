"""Storage: the store (clips, users, graph, events, keys; DuckDB or PostgreSQL, opened by
:func:`open_store`) and the vector index.

Neither of the customer's six packages fits the stores every other package reads and writes,
so they live here (see the README's architecture section).
"""

from __future__ import annotations

from storage.errors import StorageError, UnknownEntityError
from storage.factory import open_store
from storage.settings import StorageSettings
from storage.store import Store

__all__ = ["StorageError", "StorageSettings", "Store", "UnknownEntityError", "open_store"]
