"""Vector index: a small Protocol with Qdrant Edge (embedded) and qdrant-client backends."""

from __future__ import annotations

from storage.index.base import SearchFilter, VectorIndex, VectorSpec
from storage.index.factory import open_index

__all__ = ["SearchFilter", "VectorIndex", "VectorSpec", "open_index"]
