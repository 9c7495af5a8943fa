"""Erase a user everywhere the engine keeps them: the store (generically, see
:mod:`storage.erasure`), the vector index, the in-memory serving state, the key cache and any
service on the engine that offers ``forget_user(user_id)``."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from pipelines.serving.engine import Engine
from ranking.state import COUNTERS, SAFETY_CODES, FeedState
from storage.erasure import erase_user_rows

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
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        """JSON-able form (clip ids are counted, not listed)."""
        return {
            "deleted_rows": self.deleted_rows,
            "deleted_clips": len(self.deleted_item_ids),
            "index_points_deleted": self.index_points_deleted,
            "audit_rows_scrubbed": self.audit_rows_scrubbed,
            "services_told": self.services_told,
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


def erase_user(engine: Engine, user_id: int) -> ErasureReport:
    """Erase ``user_id`` from the store, the index, serving state and services.

    The store is erased first in one transaction (the record of truth); then the index points
    of the user's clips, then memory (the serving state and every service in
    ``engine.forgetters``). The API drops its cached key lookups itself.
    """
    t0 = time.perf_counter()
    done = erase_user_rows(engine.store, user_id)
    n_points = 0
    if engine.index is not None and done.deleted_item_ids:
        ids = np.asarray(done.deleted_item_ids, dtype=np.int64)
        n_points += len(engine.index.get_vectors("caption", ids))
        engine.index.delete(ids)
    forget_user_in_state(engine.state, user_id, done.deleted_item_ids)
    told: list[str] = []
    for name, forget in engine.forgetters.items():
        try:
            forget(user_id)
            told.append(name)
        except Exception:
            logger.exception("service %s failed to forget a user", name)
    report = ErasureReport(
        user_id=user_id,
        deleted_rows=done.deleted_rows,
        deleted_item_ids=done.deleted_item_ids,
        index_points_deleted=n_points,
        audit_rows_scrubbed=done.audit_rows_scrubbed,
        services_told=told,
        seconds=time.perf_counter() - t0,
    )
    logger.info(
        "user erased: rows=%d clips=%d index_points=%d services=%s ms=%.0f",
        sum(done.deleted_rows.values()),
        len(done.deleted_item_ids),
        n_points,
        told,
        report.seconds * 1000,
    )
    return report
