"""The vector index contract every backend fulfils (checked by one shared contract test suite)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

import numpy as np

Distance = Literal["cosine", "dot"]


@dataclass(frozen=True)
class VectorSpec:
    """One named vector space: its dimension and distance."""

    size: int
    distance: Distance = "cosine"


@dataclass(frozen=True)
class SearchFilter:
    """Payload conditions for a search.

    ``any_of``: for each key, the payload must match one of the values.
    ``none_of``: for each key, the payload must match none of the values.
    ``max_values``: for each key, the integer payload must be <= the value.
    ``exclude_ids``: point ids never returned.
    """

    any_of: dict[str, list[Any]] = field(default_factory=dict)
    none_of: dict[str, list[Any]] = field(default_factory=dict)
    max_values: dict[str, int] = field(default_factory=dict)
    exclude_ids: tuple[int, ...] = ()

    def is_empty(self) -> bool:
        """Whether the filter has no condition."""
        return not (self.any_of or self.none_of or self.max_values or self.exclude_ids)


@runtime_checkable
class VectorIndex(Protocol):
    """Named-vector ANN index over clips (point id = clip ``item_id``).

    Backends: :class:`storage.index.edge.EdgeVectorIndex` (Qdrant Edge, on disk, the embedded
    default) and :class:`storage.index.qdrant.QdrantClientIndex` (a Qdrant server or cluster, or
    qdrant-client's local mode). Open one from a URL with :func:`storage.index.open_index`.
    """

    url: str

    def ensure(
        self,
        spaces: dict[str, VectorSpec],
        *,
        keyword_fields: tuple[str, ...] = (),
        integer_fields: tuple[str, ...] = (),
    ) -> None:
        """Create the collection with these named vectors and payload indexes if it is missing."""
        ...

    def spaces(self) -> dict[str, VectorSpec]:
        """Named vector spaces the collection has."""
        ...

    def upsert(
        self,
        ids: np.ndarray,
        vectors: dict[str, np.ndarray],
        payloads: list[dict[str, Any]] | None = None,
    ) -> None:
        """Insert or replace points; ``vectors[name]`` is ``(len(ids), size)`` float32.

        Upserting only some named vectors of an existing point keeps its other vectors.
        """
        ...

    def search(
        self, space: str, query: np.ndarray, *, limit: int, flt: SearchFilter | None = None
    ) -> list[tuple[int, float]]:
        """Return up to ``limit`` ``(id, score)`` pairs, best first (higher score = closer)."""
        ...

    def get_vectors(self, space: str, ids: np.ndarray) -> dict[int, np.ndarray]:
        """Return the stored vectors of the given ids that exist and have this space."""
        ...

    def delete(self, ids: np.ndarray) -> None:
        """Remove points."""
        ...

    def set_payload(self, ids: np.ndarray, payload: dict[str, Any]) -> None:
        """Merge ``payload`` into the payload of the given points."""
        ...

    def count(self) -> int:
        """Number of points."""
        ...

    def point_ids(self, space: str | None = None) -> np.ndarray:
        """Sorted ids of all points, or of those with a vector in ``space`` (empty for a space
        the index lacks); what reconciling the index with the store compares."""
        ...

    def problem(self) -> str | None:
        """A cheap check of the index's storage: what is wrong, or ``None``."""
        ...

    def optimize(self) -> None:
        """Build or refresh the ANN structures (may block)."""
        ...

    def purge(self) -> None:
        """Make deleted points leave the index's files (may block; see docs/privacy.md)."""
        ...

    def close(self) -> None:
        """Flush and release the index."""
        ...
