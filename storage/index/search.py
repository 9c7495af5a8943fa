"""What the vector-index backends share: point ids, query checks and filter translation.

Both backends speak Qdrant's model (named vectors, payload conditions, unsigned point ids)
through different client libraries; the rules live here once and each backend passes its
library's constructors.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np

from storage.index.base import SearchFilter, VectorSpec

F = TypeVar("F")


def point_ids(ids: np.ndarray) -> list[int]:
    """Return ``ids`` as Python ints, checking they fit Qdrant's unsigned 64-bit point ids."""
    arr = np.asarray(ids)
    if arr.ndim != 1:
        msg = f"ids must be one-dimensional, got shape {arr.shape}"
        raise ValueError(msg)
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        msg = f"ids must be integers, got dtype {arr.dtype}"
        raise ValueError(msg)
    out = [int(i) for i in arr.tolist()]
    if out and min(out) < 0:
        msg = f"point ids must be non-negative (Qdrant ids are unsigned), got {min(out)}"
        raise ValueError(msg)
    return out


def query_vector(
    spec: VectorSpec, space: str, query: np.ndarray, *, limit: int, flt: SearchFilter | None
) -> list[float] | None:
    """The search query as a list of floats, or ``None`` when nothing can match (no limit, or
    an empty ``any_of`` list); a query of the wrong shape is a :class:`ValueError`."""
    vec = np.asarray(query, dtype=np.float32)
    if vec.shape != (spec.size,):
        msg = f"query for space {space!r} must have shape ({spec.size},), got {vec.shape}"
        raise ValueError(msg)
    if limit <= 0 or (flt is not None and any(not v for v in flt.any_of.values())):
        return None  # an empty any_of list matches nothing
    return [float(x) for x in vec.tolist()]


def build_filter(
    flt: SearchFilter | None,
    *,
    match_any: Callable[[str, list[Any]], Any],
    at_most: Callable[[str, float], Any],
    has_ids: Callable[[list[int]], Any],
    combine: Callable[[list[Any] | None, list[Any] | None], F],
) -> F | None:
    """Translate a :class:`SearchFilter` with a client library's constructors (``None`` when
    the filter is empty): ``combine(must, must_not)`` builds the library's filter."""
    if flt is None or flt.is_empty():
        return None
    must: list[Any] = [match_any(key, list(values)) for key, values in flt.any_of.items()]
    must.extend(at_most(key, float(value)) for key, value in flt.max_values.items())
    must_not: list[Any] = [
        match_any(key, list(values)) for key, values in flt.none_of.items() if values
    ]
    if flt.exclude_ids:
        must_not.append(has_ids([int(i) for i in flt.exclude_ids]))
    return combine(must or None, must_not or None)
