"""qdrant-client backend: a Qdrant server or cluster, or qdrant-client's embedded local mode."""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from typing import Any, cast

import numpy as np
from qdrant_client import QdrantClient
from qdrant_client import models as qm

from storage.errors import IndexUnavailableError, UnknownEntityError
from storage.index.base import Distance, SearchFilter, VectorSpec
from storage.index.search import build_filter, point_ids, query_vector

logger = logging.getLogger(__name__)

# Points listed per scroll call (ids only).
_SCROLL_PAGE = 10_000

_TO_QDRANT_DISTANCE: dict[Distance, qm.Distance] = {
    "cosine": qm.Distance.COSINE,
    "dot": qm.Distance.DOT,
}
_FROM_QDRANT_DISTANCE: dict[qm.Distance, Distance] = {v: k for k, v in _TO_QDRANT_DISTANCE.items()}


def _plain(value: Any) -> Any:
    """Return ``value`` with numpy scalars and arrays turned into Python ones (JSON-able)."""
    if isinstance(value, np.generic | np.ndarray):
        return value.tolist()
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def _ids(pids: list[int]) -> list[qm.ExtendedPointId]:
    """Type ``pids`` as qdrant-client point ids (its lists are invariant in the id type)."""
    return cast("list[qm.ExtendedPointId]", pids)


def _qdrant_filter(flt: SearchFilter | None) -> qm.Filter | None:
    """Translate a :class:`SearchFilter` into a qdrant-client filter (``None`` when empty)."""
    return build_filter(
        flt,
        match_any=lambda key, values: qm.FieldCondition(key=key, match=qm.MatchAny(any=values)),
        at_most=lambda key, bound: qm.FieldCondition(key=key, range=qm.Range(lte=bound)),
        has_ids=lambda ids: qm.HasIdCondition(has_id=_ids(ids)),
        combine=lambda must, must_not: qm.Filter(must=must, must_not=must_not),
    )


class QdrantClientIndex:
    """A :class:`~storage.index.base.VectorIndex` on one collection reached with qdrant-client.

    Thread-safety: against a server every call goes over qdrant-client's pooled HTTP client,
    which is safe to share, so searches take no lock. qdrant-client's local mode is plain
    Python over numpy arrays and SQLite and is not safe for a search during an upsert, so
    there (``local_mode=True``) every call takes the one lock. Writes always take it, because
    :meth:`upsert` reads a point's stored vectors before writing it back.

    Parameters
    ----------
    client
        An open client (``QdrantClient(url=...)``, ``QdrantClient(path=...)`` or
        ``QdrantClient(":memory:")``); the index owns it and closes it.
    collection
        Collection name.
    url
        The URL the index was opened from, for logs and ``/health``.
    local_mode
        Whether ``client`` runs qdrant-client's local mode (serialises every call; payload
        indexes are skipped there because local mode has none and warns).
    optimize_timeout_s
        Longest :meth:`optimize` waits for a server collection to turn green.
    """

    def __init__(
        self,
        client: QdrantClient,
        *,
        collection: str = "clips",
        url: str = "",
        local_mode: bool = False,
        optimize_timeout_s: float = 600.0,
    ) -> None:
        self.url = url or f"qdrant-client:{collection}"
        self.collection = collection
        self._client = client
        self._local_mode = local_mode
        self._optimize_timeout_s = optimize_timeout_s
        self._write_lock = threading.Lock()
        self._read_guard: contextlib.AbstractContextManager[Any] = (
            self._write_lock if local_mode else contextlib.nullcontext()
        )
        self._spaces: dict[str, VectorSpec] | None = None
        self._closed = False

    # -- helpers --------------------------------------------------------------------------------
    def _fail(self, what: str, exc: Exception) -> IndexUnavailableError:
        msg = f"vector index {self.url} ({self.collection}): {what} failed: {exc}"
        return IndexUnavailableError(msg)

    def _check_open(self) -> None:
        if self._closed:
            msg = f"vector index {self.url} is closed"
            raise IndexUnavailableError(msg)

    def _fetch_spaces(self) -> dict[str, VectorSpec]:
        """Read the collection's named vectors from the backend (empty if it is missing)."""
        try:
            if not self._client.collection_exists(self.collection):
                return {}
            info = self._client.get_collection(self.collection)
        except Exception as exc:
            raise self._fail("reading the collection", exc) from exc
        vectors = info.config.params.vectors
        if not isinstance(vectors, dict):
            msg = (
                f"vector index {self.url}: collection {self.collection!r} has one unnamed "
                "vector; steerfeed needs named vectors"
            )
            raise IndexUnavailableError(msg)
        spaces: dict[str, VectorSpec] = {}
        for name, params in vectors.items():
            distance = _FROM_QDRANT_DISTANCE.get(params.distance)
            if distance is None:
                logger.warning("space %s has unsupported distance %s", name, params.distance)
                continue
            spaces[name] = VectorSpec(params.size, distance)
        return spaces

    def _known_spaces(self) -> dict[str, VectorSpec]:
        if self._spaces is None:
            with self._read_guard:
                self._spaces = self._fetch_spaces()
        return self._spaces

    def _spec(self, space: str) -> VectorSpec:
        spaces = self._known_spaces()
        spec = spaces.get(space)
        if spec is None:
            if not spaces:
                msg = f"vector index {self.url}: collection {self.collection!r} is missing"
                raise IndexUnavailableError(msg)
            msg = f"unknown vector space {space!r}; valid: {sorted(spaces)}"
            raise UnknownEntityError(msg)
        return spec

    # -- lifecycle ------------------------------------------------------------------------------
    def ensure(
        self,
        spaces: dict[str, VectorSpec],
        *,
        keyword_fields: tuple[str, ...] = (),
        integer_fields: tuple[str, ...] = (),
    ) -> None:
        """Create the collection, its named vectors and payload indexes where missing.

        Idempotent. A space missing from an existing collection is added
        (``create_vector_name``, which needs a recent Qdrant server); a space that exists with
        another size or distance raises :class:`~storage.errors.IndexUnavailableError`.

        Parameters
        ----------
        spaces
            Named vector spaces the collection must have.
        keyword_fields
            Payload fields to index as keywords (skipped in local mode).
        integer_fields
            Payload fields to index as integers (skipped in local mode).
        """
        self._check_open()
        for name, spec in spaces.items():
            if spec.distance not in _TO_QDRANT_DISTANCE:
                msg = f"space {name!r}: unknown distance {spec.distance!r}; valid: cosine, dot"
                raise ValueError(msg)
        with self._write_lock:
            existing = self._fetch_spaces()
            try:
                if not existing:
                    self._client.create_collection(
                        self.collection,
                        vectors_config={
                            name: qm.VectorParams(
                                size=spec.size, distance=_TO_QDRANT_DISTANCE[spec.distance]
                            )
                            for name, spec in spaces.items()
                        },
                    )
                    logger.info("vector index %s: created %s", self.url, self.collection)
                for name, spec in spaces.items():
                    have = existing.get(name)
                    if existing and have is None:
                        dense = qm.DenseVectorConfig(
                            size=spec.size, distance=_TO_QDRANT_DISTANCE[spec.distance]
                        )
                        self._client.create_vector_name(
                            self.collection, name, qm.DenseVectorNameConfig(dense=dense)
                        )
                        logger.info("vector index %s: added space %s %s", self.url, name, spec)
                    elif have is not None and have != spec:
                        msg = (
                            f"vector index {self.url}: space {name!r} exists as {have}, "
                            f"asked for {spec}; re-create the collection to change it"
                        )
                        raise IndexUnavailableError(msg)
                if not self._local_mode:
                    self._ensure_payload_indexes(keyword_fields, integer_fields)
            except IndexUnavailableError:
                raise
            except Exception as exc:
                raise self._fail("ensure", exc) from exc
            self._spaces = self._fetch_spaces()

    def _ensure_payload_indexes(
        self, keyword_fields: tuple[str, ...], integer_fields: tuple[str, ...]
    ) -> None:
        schema = self._client.get_collection(self.collection).payload_schema
        wanted = [(f, qm.PayloadSchemaType.KEYWORD) for f in keyword_fields]
        wanted += [(f, qm.PayloadSchemaType.INTEGER) for f in integer_fields]
        for field_name, schema_type in wanted:
            if field_name not in schema:
                self._client.create_payload_index(self.collection, field_name, schema_type)

    def close(self) -> None:
        """Close the client (local mode persists on every write already)."""
        with self._write_lock:
            if not self._closed:
                self._closed = True
                self._client.close()

    # -- reads ----------------------------------------------------------------------------------
    def spaces(self) -> dict[str, VectorSpec]:
        """Named vector spaces the collection has (empty when it is missing)."""
        self._check_open()
        return dict(self._known_spaces())

    def search(
        self,
        space: str,
        query: np.ndarray,
        *,
        limit: int,
        flt: SearchFilter | None = None,
    ) -> list[tuple[int, float]]:
        """Return up to ``limit`` ``(id, score)`` pairs nearest to ``query``, best first.

        Points without a vector in ``space`` are never returned. ``max_values`` keeps only
        points whose payload has the key with a value ``<=`` the bound.

        Parameters
        ----------
        space
            Named vector space to search.
        query
            Query vector of the space's size.
        limit
            Most pairs to return.
        flt
            Payload and id conditions.

        Returns
        -------
        list[tuple[int, float]]
            ``(clip id, score)``, higher score = closer.
        """
        self._check_open()
        spec = self._spec(space)
        vec = query_vector(spec, space, query, limit=limit, flt=flt)
        if vec is None:
            return []
        try:
            with self._read_guard:
                response = self._client.query_points(
                    self.collection,
                    query=vec,
                    using=space,
                    limit=limit,
                    query_filter=_qdrant_filter(flt),
                    with_payload=False,
                    with_vectors=False,
                )
        except Exception as exc:
            raise self._fail(f"search on {space!r}", exc) from exc
        return [(int(p.id), float(p.score)) for p in response.points]

    def get_vectors(self, space: str, ids: np.ndarray) -> dict[int, np.ndarray]:
        """Return the stored ``space`` vectors of those ``ids`` that exist and have one.

        Cosine spaces return the unit-normalised vector Qdrant stores.
        """
        self._check_open()
        self._spec(space)
        pids = point_ids(ids)
        if not pids:
            return {}
        try:
            with self._read_guard:
                records = self._client.retrieve(
                    self.collection, pids, with_payload=False, with_vectors=[space]
                )
        except Exception as exc:
            raise self._fail("get_vectors", exc) from exc
        out: dict[int, np.ndarray] = {}
        for rec in records:
            if isinstance(rec.vector, dict) and space in rec.vector:
                out[int(rec.id)] = np.asarray(rec.vector[space], dtype=np.float32)
        return out

    def count(self) -> int:
        """Number of points."""
        self._check_open()
        try:
            with self._read_guard:
                return int(self._client.count(self.collection, exact=True).count)
        except Exception as exc:
            raise self._fail("count", exc) from exc

    def point_ids(self, space: str | None = None) -> np.ndarray:
        """Sorted ids of all points, or of those with a vector in ``space`` (int64 array)."""
        self._check_open()
        spaces = self._known_spaces()
        if not spaces or (space is not None and space not in spaces):
            return np.empty(0, dtype=np.int64)
        flt = (
            qm.Filter(must=[qm.HasVectorCondition(has_vector=space)]) if space is not None else None
        )
        out: list[int] = []
        offset: Any = None
        try:
            while True:
                with self._read_guard:
                    records, offset = self._client.scroll(
                        self.collection,
                        scroll_filter=flt,
                        limit=_SCROLL_PAGE,
                        offset=offset,
                        with_payload=False,
                        with_vectors=False,
                    )
                out.extend(int(r.id) for r in records)
                if offset is None or not records:
                    break
        except Exception as exc:
            raise self._fail("listing points", exc) from exc
        return np.unique(np.asarray(out, dtype=np.int64))

    def problem(self) -> str | None:
        """What is wrong with the index, or ``None``: only whether it was closed (a server's
        reachability shows in the searches that fail, and a check here would be a network
        call on every ``/healthz``)."""
        return f"vector index {self.url} is closed" if self._closed else None

    # -- writes ---------------------------------------------------------------------------------
    def upsert(
        self,
        ids: np.ndarray,
        vectors: dict[str, np.ndarray],
        payloads: list[dict[str, Any]] | None = None,
    ) -> None:
        """Insert or replace points, keeping what the call does not give.

        Qdrant replaces a whole point on upsert, so for existing points the spaces missing
        from ``vectors`` (and, when ``payloads`` is ``None``, the payload) are read first and
        written back with the new vectors in one upsert.

        Parameters
        ----------
        ids
            Clip ids (non-negative).
        vectors
            ``space -> (len(ids), size)`` float32 matrix.
        payloads
            One payload per id, replacing the stored one; ``None`` keeps stored payloads.
        """
        self._check_open()
        pids = point_ids(ids)
        rows = {name: self._rows(name, mat, len(pids)) for name, mat in vectors.items()}
        if payloads is not None and len(payloads) != len(pids):
            msg = f"got {len(payloads)} payloads for {len(pids)} ids"
            raise ValueError(msg)
        if not pids:
            return
        with self._write_lock:
            try:
                keep = [name for name in self._known_spaces() if name not in rows]
                stored: dict[int, qm.Record] = {}
                if keep or payloads is None:
                    records = self._client.retrieve(
                        self.collection,
                        pids,
                        with_payload=payloads is None,
                        with_vectors=keep or False,
                    )
                    stored = {int(r.id): r for r in records}
                points = []
                for i, pid in enumerate(pids):
                    vec: dict[str, Any] = {name: r[i] for name, r in rows.items()}
                    payload = _plain(payloads[i]) if payloads is not None else None
                    rec = stored.get(pid)
                    if rec is not None:
                        if keep and isinstance(rec.vector, dict):
                            for name, value in rec.vector.items():
                                vec.setdefault(name, value)
                        if payloads is None:
                            payload = rec.payload
                    points.append(qm.PointStruct(id=pid, vector=vec, payload=payload))
                self._client.upsert(self.collection, points=points, wait=True)
            except Exception as exc:
                raise self._fail("upsert", exc) from exc

    def _rows(self, space: str, mat: np.ndarray, n: int) -> list[list[float]]:
        spec = self._spec(space)
        arr = np.asarray(mat, dtype=np.float32)
        if arr.shape != (n, spec.size):
            msg = f"vectors[{space!r}] must have shape ({n}, {spec.size}), got {arr.shape}"
            raise ValueError(msg)
        rows: list[list[float]] = arr.tolist()
        return rows

    def delete(self, ids: np.ndarray) -> None:
        """Remove points (ids that do not exist are ignored)."""
        self._check_open()
        pids = point_ids(ids)
        if not pids:
            return
        with self._write_lock:
            try:
                self._client.delete(
                    self.collection, points_selector=qm.PointIdsList(points=_ids(pids)), wait=True
                )
            except Exception as exc:
                raise self._fail("delete", exc) from exc

    def set_payload(self, ids: np.ndarray, payload: dict[str, Any]) -> None:
        """Merge ``payload`` into the payload of the given points (missing ids are skipped).

        Local mode raises ``KeyError`` on a missing id, so ids are narrowed to existing
        points first on every backend.
        """
        self._check_open()
        pids = point_ids(ids)
        if not pids:
            return
        with self._write_lock:
            try:
                records = self._client.retrieve(
                    self.collection, pids, with_payload=False, with_vectors=False
                )
                present = [int(r.id) for r in records]
                if present:
                    self._client.set_payload(
                        self.collection, _plain(payload), points=_ids(present), wait=True
                    )
            except Exception as exc:
                raise self._fail("set_payload", exc) from exc

    def purge(self) -> None:
        """Ask a server to vacuum segments holding deleted points (its smallest thresholds),
        then wait for its optimizers. Local mode keeps points in SQLite and is not purged: it
        is for tests and small data (docs/privacy.md)."""
        self._check_open()
        if self._local_mode:
            return
        try:
            self._client.update_collection(
                self.collection,
                optimizers_config=qm.OptimizersConfigDiff(
                    deleted_threshold=0.0, vacuum_min_vector_number=100
                ),
            )
        except Exception as exc:
            raise self._fail("purge", exc) from exc
        self.optimize()

    def optimize(self) -> None:
        """Wait for the server's optimizers to finish (local mode has no ANN index: no-op).

        A server builds HNSW in the background; this nudges its optimizers and blocks until
        the collection is green or ``optimize_timeout_s`` passes.
        """
        self._check_open()
        if self._local_mode:
            return
        started = time.perf_counter()
        try:
            # An empty optimizers diff asks the server to re-run its optimizers.
            self._client.update_collection(
                self.collection, optimizers_config=qm.OptimizersConfigDiff()
            )
            status = self._client.get_collection(self.collection).status
            while status != qm.CollectionStatus.GREEN:
                waited = time.perf_counter() - started
                if waited > self._optimize_timeout_s:
                    logger.warning("index %s: still %s after %.0f s", self.url, status, waited)
                    return
                time.sleep(0.5)
                status = self._client.get_collection(self.collection).status
        except Exception as exc:
            raise self._fail("optimize", exc) from exc
        logger.info(
            "vector index %s optimized points=%d ms=%.0f",
            self.url,
            self.count(),
            (time.perf_counter() - started) * 1000,
        )
