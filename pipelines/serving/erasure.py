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
   (:meth:`storage.index.base.VectorIndex.purge`), drop serving state, delete media files;
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
from ranking.state import COUNTERS, SAFETY_CODES, FeedState
from storage.erasure import erase_user_rows
from storage.store import StoreBusyError

logger = logging.getLogger(__name__)

# Rows of erased clips stay in the state's arrays (positions must not shift) but are made
# unservable: the safety filter drops "violative" rows and nothing else about them is left.
_REMOVED_SAFETY = SAFETY_CODES["violative"]


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


def forget_user_in_state(state: FeedState, user_id: int, item_ids: list[int]) -> None:
    """Remove the user, their edges and history, and the given clips from serving state."""
    with state.lock:
        state.users.discard(user_id)
        state.profiles.pop(user_id, None)
        for other in state.following.pop(user_id, set()):
            state.followers.get(other, set()).discard(user_id)
        for other in state.followers.pop(user_id, set()):
            state.following.get(other, set()).discard(user_id)
        for other in state.blocked.pop(user_id, set()):
            state.blocked.get(other, set()).discard(user_id)
        for blocked in state.blocked.values():
            blocked.discard(user_id)
        state.seen.pop(user_id, None)
        state.history.pop(user_id, None)
        state.negative.pop(user_id, None)
        state._user_vec.pop(user_id, None)
        for row, engagers in list(state.engagers.items()):
            if user_id in engagers:
                state.engagers[row] = tuple(u for u in engagers if u != user_id)
        state.by_author.pop(user_id, None)
        for item in item_ids:
            r = state.row_of.pop(item, None)
            if r is None:
                continue
            state.safety[r] = _REMOVED_SAFETY
            state.captions[r] = ""
            state.topics[r] = []
            state.hashtags[r] = []
            state.cameos[r] = []
            state.vectors[r] = 0.0
            state.has_vector[r] = False
            state.counts[r] = np.zeros(len(COUNTERS))
            state.velocity[r] = 0.0
            state.engagers.pop(r, None)
            for rows in state.by_author.values():
                if r in rows:
                    rows.remove(r)
        state._trending_cache = (0.0, state._trending_cache[1])
        state._user_vec.clear()


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
    n_points = 0
    purged = False
    if engine.index is not None and done.deleted_item_ids:
        ids = np.asarray(done.deleted_item_ids, dtype=np.int64)
        n_points += len(engine.index.get_vectors("caption", ids))
        engine.index.delete(ids)
    if engine.index is not None:
        engine.index.purge()
        purged = True
    forget_user_in_state(engine.state, user_id, done.deleted_item_ids)
    told: list[str] = []
    for name, forget in engine.forgetters.items():
        try:
            forget(user_id)
            told.append(name)
        except Exception:
            logger.exception("service %s failed to forget a user", name)
    engine.generation.consents.invalidate()
    n_files = delete_media(engine, done.deleted_item_ids)
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
