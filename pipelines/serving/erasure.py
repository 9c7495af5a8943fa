"""Erase a user everywhere the engine keeps them: the store (generically, see
:mod:`storage.erasure`), the vector index, the in-memory serving state, generated media and any
service on the engine that offers ``forget_user(user_id)`` — and then the bytes.

The order, and why:

1. close the user's fence (:mod:`storage.fence`) and wait for their in-flight work (pages and
   their side effects, requests naming them, clip renders) — so nothing started before the
   erasure writes after it; bounded by ``fence_timeout_s`` (then :class:`FenceBusyError`,
   retry);
2. (events of the user still queued in the event writer are dropped when written: the store's
   ``event_filter`` skips fenced users, so the erasure need not wait for the queue);
3. delete the rows in one transaction (:func:`storage.erasure.erase_user_rows`);
4. delete the index points and vacuum the segments that held them
   (:meth:`storage.index.base.VectorIndex.purge`), drop the user from each part of the serving
   state (:meth:`ranking.state.FeedState.forget_user` calls each part's ``forget_user``), delete
   media files;
5. rewrite the DuckDB file (:meth:`storage.store.Store.rewrite_file`), since deleted rows
   keep their bytes in it otherwise.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from pipelines.serving.engine import Engine
from storage.erasure import erase_user_rows
from storage.store import StoreBusyError

logger = logging.getLogger(__name__)


@dataclass
class ErasureReport:
    """What an erasure removed."""

    user_id: int
    deleted_rows: dict[str, int]
    deleted_item_ids: list[int]
    index_points_deleted: int
    audit_rows_scrubbed: int
    services_told: list[str] = field(default_factory=list)
    media_files_deleted: int = 0
    index_purged: bool = False
    store_file_rewritten: bool = False
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        """JSON-able form (clip ids are counted, not listed)."""
        return {
            "deleted_rows": self.deleted_rows,
            "deleted_clips": len(self.deleted_item_ids),
            "index_points_deleted": self.index_points_deleted,
            "audit_rows_scrubbed": self.audit_rows_scrubbed,
            "services_told": self.services_told,
            "media_files_deleted": self.media_files_deleted,
            "bytes_purged": {
                "index_vacuumed": self.index_purged,
                "store_file_rewritten": self.store_file_rewritten,
            },
            "seconds": round(self.seconds, 3),
        }


def delete_media(engine: Engine, item_ids: list[int]) -> int:
    """Delete generated clips' files (video, poster, manifest and any other ``<id>.*`` file
    beside them, such as a half-written one); return how many there were."""
    if not item_ids:
        return 0
    svc = engine.generation
    n = 0
    for item in item_ids:
        folder = svc.files(item).video.parent
        for path in folder.glob(f"{item}.*"):
            if path.is_file():
                path.unlink()
                n += 1
    return n


@dataclass
class Forgotten:
    """What :func:`forget_erased` removed outside the store."""

    index_points: int
    index_purged: bool
    told: list[str]
    media_files: int


def forget_erased(engine: Engine, user_id: int, item_ids: list[int]) -> Forgotten:
    """Remove a user whose rows are gone from the store (and ``item_ids``, the clips that went
    with them) from the vector index, the serving state, every service that keeps them, and
    the media folder (step 4 of the module docstring). A worker that learns of another
    worker's erasure from the change feed calls this too."""
    n_points = 0
    purged = False
    if engine.index is not None and item_ids:
        ids = np.asarray(item_ids, dtype=np.int64)
        n_points += len(engine.index.get_vectors("caption", ids))
        engine.index.delete(ids)
    if engine.index is not None:
        engine.index.purge()
        purged = True
    engine.state.forget_user(user_id, item_ids=item_ids)
    told: list[str] = []
    for name, forget in engine.forgetters.items():
        try:
            forget(user_id)
            told.append(name)
        except Exception:
            logger.exception("service %s failed to forget a user", name)
    engine.generation.consents.invalidate()
    return Forgotten(n_points, purged, told, delete_media(engine, item_ids))


def erase_user(engine: Engine, user_id: int, *, fence_timeout_s: float = 30.0) -> ErasureReport:
    """Erase ``user_id`` from the store, the index, serving state, media and services, then
    purge the bytes (see the module docstring for the order). The API drops its cached key
    lookups itself.

    Raises :class:`storage.fence.FenceBusyError` when the user's in-flight work does not end
    within ``fence_timeout_s`` (nothing is deleted then; the user stays fenced; retry).
    """
    t0 = time.perf_counter()
    engine.fence.close(user_id, timeout_s=fence_timeout_s)
    done = erase_user_rows(engine.store, user_id, key=engine.pseudonym_key)
    forgotten = forget_erased(engine, user_id, done.deleted_item_ids)
    n_points, purged, told, n_files = (
        forgotten.index_points,
        forgotten.index_purged,
        forgotten.told,
        forgotten.media_files,
    )
    try:
        engine.store.rewrite_file()
        rewritten = True
    except StoreBusyError:
        logger.warning("database file not rewritten now (reads open); it stays pending")
        rewritten = False
    report = ErasureReport(
        user_id=user_id,
        deleted_rows=done.deleted_rows,
        deleted_item_ids=done.deleted_item_ids,
        index_points_deleted=n_points,
        audit_rows_scrubbed=done.audit_rows_scrubbed,
        services_told=told,
        media_files_deleted=n_files,
        index_purged=purged,
        store_file_rewritten=rewritten,
        seconds=time.perf_counter() - t0,
    )
    logger.info(
        "user erased: rows=%d clips=%d index_points=%d media_files=%d rewritten=%s ms=%.0f",
        sum(done.deleted_rows.values()),
        len(done.deleted_item_ids),
        n_points,
        n_files,
        rewritten,
        report.seconds * 1000,
    )
    return report
