"""Vector index: a small Protocol with Qdrant Edge (embedded) and qdrant-client backends."""

from __future__ import annotations

from storage.index.base import SearchFilter, VectorIndex, VectorSpec

__all__ = ["SearchFilter", "VectorIndex", "VectorSpec"]
