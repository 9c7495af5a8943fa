"""Engagement counters: per-clip counts, velocities, engagers and priors, and author statistics.

Arrays are aligned with the catalogue's rows (the part grows with :meth:`add_clips`). Rebuilt
from the store (the clips' priors, then the event log replayed); updated from committed events
by :meth:`apply_events`. The per-author statistics are computed by the ``author_stats`` job
over the store and handed over with :meth:`set_author_stats`.
"""

from __future__ import annotations

import threading
import time

import numpy as np
import polars as pl

from ranking.state.catalogue import Catalogue
from ranking.state.events import COUNTERS, EVENT_TO_COUNTER, EventBatch, replay_events
from ranking.state.frames import col, groups
from storage.store import Store

VELOCITY_HALF_LIFE_S = 6 * 3600.0


class EngagementCounters:
    """What people did with each clip, row-aligned with ``catalogue``.

    ``counts`` has one column per :data:`~ranking.state.events.COUNTERS` entry; ``velocity``
    is positive engagement with a 6 h half-life as of ``velocity_at``; ``engagers`` the users
    who engaged positively with each row.
    """

    def __init__(self, catalogue: Catalogue, lock: threading.RLock) -> None:
        self.catalogue = catalogue
        self.lock = lock
        self.prior_views = np.zeros(0, dtype=np.float64)
        self.prior_likes = np.zeros(0, dtype=np.float64)
        self.counts = np.zeros((0, len(COUNTERS)), dtype=np.float64)
        self.velocity = np.zeros(0, dtype=np.float64)
        self.velocity_at = np.zeros(0, dtype=np.float64)
        # Users who engaged with each clip row: tuples, not sets (a set is 216 bytes even for
        # one user; 0.8 GB for 2.8M engagements at a million clips, ~0.2 GB as tuples).
        self.engagers: dict[int, tuple[int, ...]] = {}
        self._trending_cache: tuple[float, np.ndarray] = (0.0, np.zeros(0, dtype=np.int64))
        self._author_stats: tuple[np.ndarray, dict[str, np.ndarray], float] | None = None

    def load(self, store: Store, *, events: bool = True) -> None:
        """Rebuild from the store: every catalogue row's priors from ``clips``, zero counters,
        then (with ``events``) the event log replayed."""
        clips = store.query("SELECT item_id, prior_views, prior_likes FROM clips")
        with self.lock:
            n = len(self.catalogue)
            self.prior_views = np.zeros(n)
            self.prior_likes = np.zeros(n)
            rows = self.catalogue.rows(clips["item_id"].to_numpy())
            ok = rows >= 0
            self.prior_views[rows[ok]] = col(clips, "prior_views", 0).astype(np.float64)[ok]
            self.prior_likes[rows[ok]] = col(clips, "prior_likes", 0).astype(np.float64)[ok]
            self.counts = np.zeros((n, len(COUNTERS)))
            self.velocity = np.zeros(n)
            self.velocity_at = np.zeros(n)
            self.engagers = {}
            self._trending_cache = (0.0, np.zeros(0, dtype=np.int64))
        if events:
            replay_events(
                store, lambda df: self.apply_events(EventBatch.decode(df, self.catalogue.rows))
            )

    def add_clips(self, new: pl.DataFrame) -> None:
        """Grow by the clips the catalogue just appended (``new``, in row order)."""
        k = new.height
        if k == 0:
            return
        with self.lock:
            self.prior_views = np.concatenate(
                [self.prior_views, col(new, "prior_views", 0).astype(np.float64)]
            )
            self.prior_likes = np.concatenate(
                [self.prior_likes, col(new, "prior_likes", 0).astype(np.float64)]
            )
            self.counts = np.concatenate([self.counts, np.zeros((k, len(COUNTERS)))])
            self.velocity = np.concatenate([self.velocity, np.zeros(k)])
            self.velocity_at = np.concatenate([self.velocity_at, np.zeros(k)])

    def apply_events(self, batch: EventBatch) -> None:
        """Count the batch's events, then add its positive engagement to velocities and
        engagers (a clip's velocity is its value at the latest engagement seen, whatever
        order events arrive in)."""
        if batch.rows.size == 0:
            return
        counter_idx = {c: i for i, c in enumerate(COUNTERS)}
        rows = batch.rows
        with self.lock:
            for et, c in EVENT_TO_COUNTER.items():
                if batch.masks[et].any():
                    np.add.at(self.counts[:, counter_idx[c]], rows[batch.masks[et]], 1.0)
            view = batch.masks["view"]
            if view.any():
                np.add.at(
                    self.counts[:, counter_idx["watch_frac_sum"]],
                    rows[view],
                    batch.watch_frac[view],
                )
            pos = batch.positive
            if not pos.any():
                return
            rp, up = rows[pos], batch.users[pos]
            self._bump_velocities(rp, batch.strength[pos], batch.times[pos])
            engagers = self.engagers
            for r, part in groups(rp, up):
                old = engagers.get(r)
                engagers[r] = tuple(dict.fromkeys((*old, *part) if old else part))

    def _bump_velocities(self, rows: np.ndarray, amounts: np.ndarray, times: np.ndarray) -> None:
        """Add engagement to clips' velocities: each touched clip moves to its latest time,
        its old value decayed to it, and every amount decayed from its own time to it."""
        touched = np.unique(rows)
        latest = np.zeros(len(self.velocity_at))
        latest[touched] = self.velocity_at[touched]
        np.maximum.at(latest, rows, times)
        self.velocity[touched] *= np.power(
            0.5, (latest[touched] - self.velocity_at[touched]) / VELOCITY_HALF_LIFE_S
        )
        np.add.at(
            self.velocity,
            rows,
            amounts * np.power(0.5, (latest[rows] - times) / VELOCITY_HALF_LIFE_S),
        )
        self.velocity_at[touched] = latest[touched]

    def velocity_now(self, now: float, rows: np.ndarray | None = None) -> np.ndarray:
        """Engagement velocity decayed to ``now`` (positive engagement per 6 h half-life)."""
        v = self.velocity if rows is None else self.velocity[rows]
        at = self.velocity_at if rows is None else self.velocity_at[rows]
        return v * np.power(0.5, np.clip(now - at, 0.0, None) / VELOCITY_HALF_LIFE_S)

    def trending(self, now: float, *, k: int = 500, ttl_s: float = 30.0) -> np.ndarray:
        """Rows of the clips with the highest engagement velocity (cached for ``ttl_s``)."""
        at, rows = self._trending_cache
        if time.monotonic() - at < ttl_s and len(rows):
            return rows
        vel = self.velocity_now(now)
        k = min(k, len(vel))
        if k == 0:
            return np.zeros(0, dtype=np.int64)
        top = np.argpartition(-vel, k - 1)[:k]
        top = top[np.argsort(-vel[top])]
        top = top[vel[top] > 0]
        self._trending_cache = (time.monotonic(), top)
        return top

    def forget_user(self, user_id: int, *, rows: np.ndarray) -> None:
        """Drop the user from every clip's engagers and zero the emptied clip ``rows``
        (the catalogue's :meth:`~ranking.state.catalogue.Catalogue.forget_user` returns them)."""
        with self.lock:
            for row, engagers in list(self.engagers.items()):
                if user_id in engagers:
                    self.engagers[row] = tuple(u for u in engagers if u != user_id)
            for r in rows.tolist():
                self.counts[r] = np.zeros(len(COUNTERS))
                self.velocity[r] = 0.0
                self.engagers.pop(r, None)
            self._trending_cache = (0.0, self._trending_cache[1])

    # -- author stats (set by the ``author_stats`` job, read by the learned-feature hydrator) --
    def set_author_stats(
        self, author_ids: np.ndarray, columns: dict[str, np.ndarray], *, computed_at: float
    ) -> None:
        """Replace the per-author statistics (``columns`` aligned with ``author_ids``)."""
        ids = np.asarray(author_ids, dtype=np.int64)
        order = np.argsort(ids, kind="stable")
        cols = {k: np.asarray(v, dtype=np.float64)[order] for k, v in columns.items()}
        with self.lock:
            self._author_stats = (ids[order], cols, float(computed_at))

    def author_stats(self, authors: np.ndarray, name: str, default: float) -> np.ndarray:
        """One author statistic for each author id (``default`` where none is known)."""
        held = self._author_stats
        authors = np.asarray(authors, dtype=np.int64)
        if held is None or name not in held[1] or len(held[0]) == 0:
            return np.full(len(authors), default, dtype=np.float64)
        ids, cols, _ = held
        pos = np.searchsorted(ids, authors).clip(0, len(ids) - 1)
        return np.where(ids[pos] == authors, cols[name][pos], default)

    def author_stats_computed_at(self) -> float | None:
        """Epoch seconds the author statistics were computed at (None before the first run)."""
        held = self._author_stats
        return None if held is None else float(held[2])
