"""User activity: what each user has seen, their recent positive engagement, and the user
vectors derived from it.

Rebuilt by replaying the store's event log; updated from committed events by
:meth:`apply_events`. User vectors are a cache over the history and the catalogue's caption
vectors, dropped when either changes.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np

from ranking.state.catalogue import Catalogue
from ranking.state.events import EventBatch, replay_events
from ranking.state.frames import groups, runs
from storage.store import Store

USER_VECTOR_HALF_LIFE_S = 7 * 86400.0
MAX_HISTORY = 500


@dataclass
class UserHistory:
    """Recent positive engagement of one user: clip rows, weights and times (bounded).

    ``views`` marks the entries a long view made (its watch time), so a person who turned
    watch time off in their data controls is ranked from their other engagement only.
    """

    rows: list[int]
    weights: list[float]
    times: list[float]
    views: list[bool] = field(default_factory=list)


class UserActivity:
    """Seen clip ids and bounded engagement histories per user, over ``catalogue``'s rows."""

    def __init__(self, catalogue: Catalogue, lock: threading.RLock) -> None:
        self.catalogue = catalogue
        self.lock = lock
        self.seen: dict[int, set[int]] = defaultdict(set)
        self.history: dict[int, UserHistory] = {}
        self._user_vec: dict[int, np.ndarray | None] = {}

    def load(self, store: Store) -> None:
        """Replay the store's event log (on an empty part this rebuilds it)."""
        replay_events(
            store, lambda df: self.apply_events(EventBatch.decode(df, self.catalogue.rows))
        )

    def apply_events(self, batch: EventBatch) -> None:
        """Mark the batch's clips seen and append its positive engagement to histories."""
        if batch.rows.size == 0:
            return
        with self.lock:
            seen = self.seen
            for u, part in groups(batch.users, batch.item_ids):
                seen[u].update(part)
            pos = batch.positive
            if not pos.any():
                return
            rp, tp, ap = batch.rows[pos], batch.times[pos], batch.strength[pos]
            up = batch.users[pos]
            order = np.argsort(up, kind="stable")  # per user, in batch order
            rows_l, w_l, t_l = rp[order].tolist(), ap[order].tolist(), tp[order].tolist()
            v_l = batch.masks["view"][pos][order].tolist()
            history = self.history
            for u, lo, hi in runs(up[order]):
                h = history.get(u)
                if h is None:
                    h = history[u] = UserHistory([], [], [])
                h.rows.extend(rows_l[lo:hi])
                h.weights.extend(w_l[lo:hi])
                h.times.extend(t_l[lo:hi])
                h.views.extend(v_l[lo:hi])
                if len(h.rows) > MAX_HISTORY:
                    del h.rows[:-MAX_HISTORY], h.weights[:-MAX_HISTORY], h.times[:-MAX_HISTORY]
                    del h.views[:-MAX_HISTORY]
                self._user_vec.pop(u, None)

    def user_vector(self, user_id: int, now: float) -> np.ndarray | None:
        """Decayed mean of the caption vectors of clips the user engaged with (unit norm)."""
        with self.lock:
            if user_id in self._user_vec:
                return self._user_vec[user_id]
            h = self.history.get(user_id)
            vec: np.ndarray | None = None
            if h is not None and h.rows:
                cat = self.catalogue
                rows = np.asarray(h.rows)
                ok = cat.has_vector[rows]
                if ok.any():
                    age = np.clip(now - np.asarray(h.times)[ok], 0.0, None)
                    w = np.asarray(h.weights)[ok] * np.power(0.5, age / USER_VECTOR_HALF_LIFE_S)
                    v = (cat.vectors[rows[ok]] * w[:, None].astype(np.float32)).sum(axis=0)
                    norm = float(np.linalg.norm(v))
                    vec = (v / norm).astype(np.float32) if norm > 0 else None
            self._user_vec[user_id] = vec
            return vec

    def drop_user_vectors(self) -> None:
        """Forget every cached user vector (the caption vectors they average changed)."""
        with self.lock:
            self._user_vec.clear()

    def forget_user(self, user_id: int) -> None:
        """Drop the user's seen set and history, and every cached user vector (an erased
        clip's vector may be in anyone's)."""
        with self.lock:
            self.seen.pop(user_id, None)
            self.history.pop(user_id, None)
            self._user_vec.clear()
