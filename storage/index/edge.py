"""Qdrant Edge backend: an in-process Qdrant shard on disk (the embedded default index).

Shards are made without a write-ahead log and flushed after every write, so a write is on disk
when the call returns, as it was with the log; and deleted points really leave the folder: a
WAL keeps each upserted point (payload and vectors) in its 32 MB segment files until they fill,
and segments keep deleted points until the vacuum optimizer rewrites them. :meth:`purge` runs
that vacuum (configured here to run for any deleted point). A shard made with a WAL by an
earlier version is rebuilt without one when it is opened.

Without a WAL, Qdrant Edge no longer refuses a second opener of the folder (the WAL's lock did
that), so the index holds an exclusive ``flock`` on ``<folder>.lock`` while it is open. While
files change (a write, an optimize, a load that rewrites the config) it also holds
``<folder>.copylock`` shared, so that another process can copy the folder between writes
(:mod:`storage.index.edge_copies`: one copy per extra serving worker).
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import shutil
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, cast

import numpy as np
import qdrant_edge as qe

from storage.errors import IndexHeldError, IndexUnavailableError, UnknownEntityError
from storage.index.base import Distance, SearchFilter, VectorSpec
from storage.index.edge_copies import copy_lock_path, copy_shard, instance_lock_path, remove_copy
from storage.index.search import build_filter, point_ids, query_vector

logger = logging.getLogger(__name__)

# Written by ``EdgeShard.create`` and kept current by the engine (``create_dense_vector``
# rewrites it): the single source of truth for the shard's named vectors.
_EDGE_CONFIG_FILE = "edge_config.json"

# Points listed per scroll call (ids only).
_SCROLL_PAGE = 50_000

_TO_EDGE_DISTANCE: dict[Distance, qe.Distance] = {
    "cosine": qe.Distance.Cosine,
    "dot": qe.Distance.Dot,
}
_FROM_EDGE_CONFIG_DISTANCE: dict[str, Distance] = {"Cosine": "cosine", "Dot": "dot"}
# Vacuum a segment as soon as it holds one deleted point (Qdrant's default waits for 20% of a
# segment of at least 1000 vectors), so that an erased clip's payload and vectors leave the
# segment files at the next optimize. Cost: one segment rewrite per optimize after deletes.
_OPTIMIZERS = qe.EdgeOptimizersConfig(deleted_threshold=1e-9, vacuum_min_vector_number=1)
_SCROLL_BATCH = 2048


def _has_wal(path: Path) -> bool:
    """Whether the shard in ``path`` was made with a write-ahead log (the old default)."""
    try:
        return bool(json.loads((path / _EDGE_CONFIG_FILE).read_text()).get("wal_enabled", True))
    except (OSError, ValueError):
        return False


def _ids(pids: list[int]) -> list[qe.PointId]:
    """Type ``pids`` as Qdrant Edge point ids (its lists are invariant in the id type)."""
    return cast("list[qe.PointId]", pids)


def _edge_filter(flt: SearchFilter | None) -> qe.Filter | None:
    """Translate a :class:`SearchFilter` into a Qdrant Edge filter (``None`` when empty)."""
    return build_filter(
        flt,
        match_any=lambda key, values: qe.FieldCondition(key=key, match=qe.MatchAny(values)),
        at_most=lambda key, bound: qe.FieldCondition(key=key, range=qe.RangeFloat(lte=bound)),
        has_ids=lambda ids: qe.HasIdCondition(set(ids)),
        combine=lambda must, must_not: qe.Filter(must=must, must_not=must_not),
    )


class EdgeVectorIndex:
    """A :class:`~storage.index.base.VectorIndex` on a Qdrant Edge shard in one folder.

    The shard is loaded at construction when the folder holds one (``EdgeShard.load``);
    otherwise :meth:`ensure` creates it. Reads run without a Python lock: the shard is safe
    for concurrent queries while another thread writes (checked with readers and a writer
    in parallel). Writes take one lock, because :meth:`upsert` reads the stored vectors of a
    point before writing it back (Qdrant replaces whole points) and two writers must not
    interleave there. :meth:`close` must not race with in-flight calls (close at shutdown).

    Parameters
    ----------
    path
        Folder of the shard (created on :meth:`ensure` when missing).
    url
        The URL the index was opened from, for logs and ``/health`` (defaults to
        ``qdrant-edge://<path>``).
    copy_of
        Another process's shard: ``path`` becomes this process's copy of it, made between
        that owner's writes (empty when the owner kept writing for ``copy_wait_s`` or has no
        shard yet; reconciling fills it from the store) and removed at :meth:`close`.
    copy_wait_s
        How long to wait for the owner to pause its writes.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        url: str | None = None,
        copy_of: Path | None = None,
        copy_wait_s: float = 60.0,
    ) -> None:
        self.path = Path(path)
        self.url = url or f"qdrant-edge://{self.path.as_posix()}"
        self.copy_of = copy_of
        self.copied = False
        self._write_lock = threading.Lock()
        self._shard: qe.EdgeShard | None = None
        self._spaces: dict[str, VectorSpec] = {}
        self._lock_fd: int | None = None
        self._take_lock()
        if copy_of is not None:
            try:
                if self.path.exists():  # a reused name whose lock was free: stale
                    shutil.rmtree(self.path)
                self.copied = copy_shard(copy_of, self.path, wait_s=copy_wait_s)
            except OSError as exc:
                self._discard()
                msg = f"cannot copy Qdrant Edge shard {copy_of} to {self.path}: {exc}"
                raise IndexUnavailableError(msg) from exc
        self._recover_rebuild()
        if (self.path / _EDGE_CONFIG_FILE).exists():
            try:
                self._shard = self._load()
            except IndexUnavailableError:
                if not self.copied:
                    raise
                # A copy that does not load is dropped; reconciling fills an empty one.
                logger.warning("vector index copy %s does not load", self.path, exc_info=True)
                shutil.rmtree(self.path)
                self.copied = False
            else:
                self._spaces = self._read_spaces()

    # -- lifecycle ------------------------------------------------------------------------------
    def _take_lock(self) -> None:
        """Hold ``<folder>.lock`` exclusively: one process and one instance per shard."""
        if self._lock_fd is not None:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(instance_lock_path(self.path), os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:  # the folder cannot be made or written (a file in its place)
            msg = f"cannot create Qdrant Edge shard at {self.path}: {exc.strerror}"
            raise IndexUnavailableError(msg) from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            msg = (
                f"cannot load Qdrant Edge shard at {self.path}: another process or instance "
                "holds it open"
            )
            raise IndexHeldError(msg) from exc
        self._lock_fd = fd

    def _release_lock(self) -> None:
        fd, self._lock_fd = self._lock_fd, None
        if fd is not None:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def __del__(self) -> None:  # an index dropped without close() must not keep the folder
        if getattr(self, "_lock_fd", None) is not None:
            self._release_lock()

    def _discard(self) -> None:
        """Release and remove this process's copy (a copy is nobody else's to keep)."""
        self._release_lock()
        remove_copy(self.path)
        logger.info("vector index copy %s removed", self.path)

    @contextmanager
    def _files_changing(self) -> Iterator[None]:
        """Hold ``<folder>.copylock`` shared while the shard's files change, so a copier
        (exclusive) copies between writes; closing the descriptor releases it."""
        fd = os.open(copy_lock_path(self.path), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_SH)
            yield
        finally:
            os.close(fd)

    @property
    def _rebuild_path(self) -> Path:
        return self.path.with_name(self.path.name + ".rebuild")

    @property
    def _replaced_path(self) -> Path:
        return self.path.with_name(self.path.name + ".replaced")

    def _recover_rebuild(self) -> None:
        """Finish or drop a rebuild a crash interrupted (see :meth:`_rebuild_without_wal`)."""
        rebuilt, replaced = self._rebuild_path, self._replaced_path
        if not self.path.exists() and rebuilt.exists():  # stopped between the two renames
            os.replace(rebuilt, self.path)
        for stale in (rebuilt, replaced):
            if stale.exists():
                shutil.rmtree(stale)

    def _load(self) -> qe.EdgeShard:
        with self._files_changing():
            return self._load_unlocked()

    def _load_unlocked(self) -> qe.EdgeShard:
        try:
            if _has_wal(self.path):
                return self._rebuild_without_wal()
            # Passing the optimizers rewrites them into the shard's config (older shards).
            config = qe.EdgeConfig(vectors=self._edge_vectors(), optimizers=_OPTIMIZERS)
            return qe.EdgeShard.load(str(self.path), config)
        except IndexUnavailableError:
            raise
        except Exception as exc:  # qdrant_edge raises bare Exception
            # "WouldBlock" on the WAL means another process or instance holds the shard open.
            msg = f"cannot load Qdrant Edge shard at {self.path}: {exc}"
            raise IndexUnavailableError(msg) from exc

    def _rebuild_without_wal(self) -> qe.EdgeShard:
        """Copy every point of a shard made with a WAL into a new shard without one, then
        replace the folder (once per shard; at open, before anything reads it)."""
        started = time.perf_counter()
        old = qe.EdgeShard.load(str(self.path))
        rebuilt = self._rebuild_path
        if rebuilt.exists():
            shutil.rmtree(rebuilt)
        try:
            new = self._new_shard(rebuilt, self._read_spaces())
            for field_name, info in old.info().payload_schema.items():
                new.update(qe.UpdateOperation.create_field_index(field_name, info.data_type))
            offset: Any = None
            n = 0
            while True:
                records, offset = old.scroll(
                    qe.ScrollRequest(
                        offset=offset, limit=_SCROLL_BATCH, with_payload=True, with_vector=True
                    )
                )
                if records:
                    points = [
                        qe.Point(id=r.id, vector=r.vector, payload=r.payload)  # type: ignore[arg-type]
                        for r in records
                    ]
                    new.update(qe.UpdateOperation.upsert_points(points))
                    n += len(records)
                if offset is None:
                    break
            new.optimize()
            new.flush()
            new.close()
        finally:
            old.close()
        os.replace(self.path, self._replaced_path)
        os.replace(rebuilt, self.path)
        shutil.rmtree(self._replaced_path)
        logger.info(
            "vector index %s rebuilt without a write-ahead log: points=%d ms=%.0f",
            self.url,
            n,
            (time.perf_counter() - started) * 1000,
        )
        return qe.EdgeShard.load(str(self.path))

    def _read_spaces(self) -> dict[str, VectorSpec]:
        config_path = self.path / _EDGE_CONFIG_FILE
        try:
            vectors = json.loads(config_path.read_text())["vectors"]
            return {
                name: VectorSpec(int(p["size"]), _FROM_EDGE_CONFIG_DISTANCE[p["distance"]])
                for name, p in vectors.items()
            }
        except (OSError, KeyError, TypeError, ValueError) as exc:
            msg = f"cannot read the Qdrant Edge shard's named vectors from {config_path}: {exc}"
            raise IndexUnavailableError(msg) from exc

    def _require(self) -> qe.EdgeShard:
        shard = self._shard
        if shard is None:
            msg = f"vector index {self.url} is not open: call ensure() first (or it was closed)"
            raise IndexUnavailableError(msg)
        return shard

    def ensure(
        self,
        spaces: dict[str, VectorSpec],
        *,
        keyword_fields: tuple[str, ...] = (),
        integer_fields: tuple[str, ...] = (),
    ) -> None:
        """Create the shard, its named vectors and payload indexes where missing.

        Idempotent. A space missing from an existing shard is added; a space that exists with
        another size or distance raises :class:`~storage.errors.IndexUnavailableError`.

        Parameters
        ----------
        spaces
            Named vector spaces the index must have.
        keyword_fields
            Payload fields to index as keywords (``any_of`` / ``none_of`` filters).
        integer_fields
            Payload fields to index as integers (``max_values`` filters).
        """
        for name, spec in spaces.items():
            if spec.distance not in _TO_EDGE_DISTANCE:
                msg = f"space {name!r}: unknown distance {spec.distance!r}; valid: cosine, dot"
                raise ValueError(msg)
        with self._write_lock:
            if self._shard is None:
                self._take_lock()
                if (self.path / _EDGE_CONFIG_FILE).exists():
                    self._shard = self._load()
                else:
                    self._shard = self._create(spaces)
            shard = self._shard
            existing = self._read_spaces()
            for name, spec in spaces.items():
                have = existing.get(name)
                if have is None:
                    op = qe.UpdateOperation.create_dense_vector(
                        name, spec.size, _TO_EDGE_DISTANCE[spec.distance]
                    )
                    self._apply(shard, op, "create_dense_vector")
                    logger.info("vector index %s: added space %s %s", self.url, name, spec)
                elif have != spec:
                    msg = (
                        f"vector index {self.url}: space {name!r} exists as {have}, "
                        f"asked for {spec}; re-create the index to change it"
                    )
                    raise IndexUnavailableError(msg)
            schema = shard.info().payload_schema
            wanted = [(f, qe.PayloadSchemaType.Keyword) for f in keyword_fields]
            wanted += [(f, qe.PayloadSchemaType.Integer) for f in integer_fields]
            for field_name, schema_type in wanted:
                if field_name not in schema:
                    op = qe.UpdateOperation.create_field_index(field_name, schema_type)
                    self._apply(shard, op, "create_field_index")
            self._spaces = self._read_spaces()

    @staticmethod
    def _vector_params(spaces: dict[str, VectorSpec]) -> dict[str, qe.EdgeVectorParams]:
        return {
            name: qe.EdgeVectorParams(size=spec.size, distance=_TO_EDGE_DISTANCE[spec.distance])
            for name, spec in spaces.items()
        }

    def _edge_vectors(self) -> dict[str, qe.EdgeVectorParams]:
        return self._vector_params(self._read_spaces())

    @classmethod
    def _new_shard(cls, path: Path, spaces: dict[str, VectorSpec]) -> qe.EdgeShard:
        config = qe.EdgeConfig(
            vectors=cls._vector_params(spaces),
            optimizers=_OPTIMIZERS,
            wal_enabled=False,
        )
        return qe.EdgeShard.create(str(path), config)

    def _create(self, spaces: dict[str, VectorSpec]) -> qe.EdgeShard:
        try:
            with self._files_changing():
                shard = self._new_shard(self.path, spaces)
        except Exception as exc:
            msg = f"cannot create Qdrant Edge shard at {self.path}: {exc}"
            raise IndexUnavailableError(msg) from exc
        logger.info("vector index %s: created shard with spaces %s", self.url, sorted(spaces))
        return shard

    def close(self) -> None:
        """Flush and close the shard (a later :meth:`ensure` reopens it, or creates it again
        when its folder is gone).

        A shard whose folder was removed cannot flush; it is closed anyway (what it held is
        rebuilt from the store, the source of truth).
        """
        with self._write_lock:
            shard, self._shard = self._shard, None
            try:
                if shard is None:
                    return
                try:
                    with self._files_changing():
                        shard.flush()
                except Exception:
                    logger.warning(
                        "vector index %s: flush at close failed", self.url, exc_info=True
                    )
                try:
                    shard.close()
                except Exception:
                    logger.warning("vector index %s: close failed", self.url, exc_info=True)
            finally:
                if self.copy_of is not None:
                    self._discard()
                else:
                    self._release_lock()

    def problem(self) -> str | None:
        """What is wrong with the shard's storage, or ``None`` (a cheap check for ``/healthz``).

        A shard keeps answering from memory after its folder is removed and silently takes
        writes into deleted files; only the folder tells.
        """
        if self._shard is None:
            return f"vector index {self.url} is not open"
        if not (self.path / _EDGE_CONFIG_FILE).exists():
            return f"the shard folder {self.path} is gone (the index serves what it had in memory)"
        return None

    # -- reads ----------------------------------------------------------------------------------
    def spaces(self) -> dict[str, VectorSpec]:
        """Named vector spaces the shard has (empty before :meth:`ensure` creates it)."""
        return dict(self._spaces)

    def _spec(self, space: str) -> VectorSpec:
        spec = self._spaces.get(space)
        if spec is None:
            msg = f"unknown vector space {space!r}; valid: {sorted(self._spaces)}"
            raise UnknownEntityError(msg)
        return spec

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
        shard = self._require()
        spec = self._spec(space)
        vec = query_vector(spec, space, query, limit=limit, flt=flt)
        if vec is None:
            return []
        request = qe.QueryRequest(
            limit=limit,
            query=qe.Query.Nearest(vec, using=space),
            filter=_edge_filter(flt),
            with_payload=False,
            with_vector=False,
        )
        try:
            hits = shard.query(request)
        except Exception as exc:
            msg = f"vector index {self.url}: search on {space!r} failed: {exc}"
            raise IndexUnavailableError(msg) from exc
        return [(int(h.id), float(h.score)) for h in hits]

    def get_vectors(self, space: str, ids: np.ndarray) -> dict[int, np.ndarray]:
        """Return the stored ``space`` vectors of those ``ids`` that exist and have one.

        Cosine spaces return the unit-normalised vector Qdrant stores.
        """
        shard = self._require()
        self._spec(space)
        pids = point_ids(ids)
        if not pids:
            return {}
        records = self._retrieve(shard, pids, False, [space])
        out: dict[int, np.ndarray] = {}
        for rec in records:
            vectors = rec.vector
            if isinstance(vectors, dict) and space in vectors:
                out[int(rec.id)] = np.asarray(vectors[space], dtype=np.float32)
        return out

    def count(self) -> int:
        """Number of points."""
        return int(self._require().count(qe.CountRequest(exact=True)))

    def point_ids(self, space: str | None = None) -> np.ndarray:
        """Sorted ids of all points, or of those with a vector in ``space`` (int64 array)."""
        shard = self._require()
        if space is not None and space not in self._spaces:
            return np.empty(0, dtype=np.int64)
        flt = qe.Filter(must=[qe.HasVectorCondition(space)]) if space is not None else None
        out: list[int] = []
        offset: Any = None
        while True:
            request = qe.ScrollRequest(
                offset=offset, limit=_SCROLL_PAGE, filter=flt, with_payload=False, with_vector=False
            )
            try:
                records, offset = shard.scroll(request)
            except Exception as exc:
                msg = f"vector index {self.url}: listing points failed: {exc}"
                raise IndexUnavailableError(msg) from exc
            out.extend(int(r.id) for r in records)
            if offset is None or not records:
                break
        return np.unique(np.asarray(out, dtype=np.int64))

    # -- writes ---------------------------------------------------------------------------------
    def _retrieve(
        self,
        shard: qe.EdgeShard,
        pids: list[int],
        with_payload: bool,
        with_vector: bool | list[str],
    ) -> list[qe.Record]:
        try:
            return shard.retrieve(_ids(pids), with_payload, with_vector)
        except Exception as exc:
            msg = f"vector index {self.url}: retrieve failed: {exc}"
            raise IndexUnavailableError(msg) from exc

    def _apply(self, shard: qe.EdgeShard, op: qe.UpdateOperation, what: str) -> None:
        try:
            with self._files_changing():
                shard.update(op)
                shard.flush()  # no WAL: the write is durable once flushed
        except Exception as exc:
            msg = f"vector index {self.url}: {what} failed: {exc}"
            raise IndexUnavailableError(msg) from exc

    def upsert(
        self,
        ids: np.ndarray,
        vectors: dict[str, np.ndarray],
        payloads: list[dict[str, Any]] | None = None,
    ) -> None:
        """Insert or replace points, keeping what the call does not give.

        Qdrant replaces a whole point on upsert, so for existing points the spaces missing
        from ``vectors`` (and, when ``payloads`` is ``None``, the payload) are read first and
        written back with the new vectors in one update.

        Parameters
        ----------
        ids
            Clip ids (non-negative).
        vectors
            ``space -> (len(ids), size)`` float32 matrix.
        payloads
            One payload per id, replacing the stored one; ``None`` keeps stored payloads.
        """
        shard = self._require()
        pids = point_ids(ids)
        rows = {name: self._rows(name, mat, len(pids)) for name, mat in vectors.items()}
        if payloads is not None and len(payloads) != len(pids):
            msg = f"got {len(payloads)} payloads for {len(pids)} ids"
            raise ValueError(msg)
        if not pids:
            return
        with self._write_lock:
            keep = [name for name in self._spaces if name not in rows]
            stored: dict[int, Any] = {}
            if keep or payloads is None:
                with_payload = payloads is None
                records = self._retrieve(shard, pids, with_payload, keep or False)
                stored = {int(r.id): r for r in records}
            points = []
            for i, pid in enumerate(pids):
                vec: dict[str, Any] = {name: r[i] for name, r in rows.items()}
                payload = payloads[i] if payloads is not None else None
                rec = stored.get(pid)
                if rec is not None:
                    if keep and isinstance(rec.vector, dict):
                        for name, value in rec.vector.items():
                            vec.setdefault(name, value)
                    if payloads is None:
                        payload = rec.payload
                points.append(qe.Point(id=pid, vector=vec, payload=payload))
            self._apply(shard, qe.UpdateOperation.upsert_points(points), "upsert")

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
        shard = self._require()
        pids = point_ids(ids)
        if not pids:
            return
        with self._write_lock:
            self._apply(shard, qe.UpdateOperation.delete_points(_ids(pids)), "delete")

    def set_payload(self, ids: np.ndarray, payload: dict[str, Any]) -> None:
        """Merge ``payload`` into the payload of the given points (missing ids are skipped).

        Qdrant Edge fails on the first missing id after updating the ones before it, so the
        ids are narrowed to the existing points first.
        """
        shard = self._require()
        pids = point_ids(ids)
        if not pids:
            return
        with self._write_lock:
            present = [int(r.id) for r in self._retrieve(shard, pids, False, False)]
            if present:
                op = qe.UpdateOperation.set_payload(_ids(present), payload)
                self._apply(shard, op, "set_payload")

    def purge(self) -> None:
        """Make deleted points leave the files: vacuum the segments holding any (and flush).

        Blocks for one rewrite of each such segment; searches keep working meanwhile.
        """
        self.optimize()

    def optimize(self) -> None:
        """Run the segment optimizers (builds HNSW once segments pass the indexing threshold,
        and vacuums segments holding deleted points), then flush.

        Blocks; searches keep working meanwhile. Small shards stay on exact search.
        """
        shard = self._require()
        started = time.perf_counter()
        try:
            with self._files_changing():
                changed = shard.optimize()
                shard.flush()
        except Exception as exc:
            msg = f"vector index {self.url}: optimize failed: {exc}"
            raise IndexUnavailableError(msg) from exc
        logger.info(
            "vector index %s optimized changed=%s points=%d ms=%.0f",
            self.url,
            changed,
            self.count(),
            (time.perf_counter() - started) * 1000,
        )
