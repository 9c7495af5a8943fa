"""In-memory serving state: the catalogue, engagement counters, the social graph and user vectors.

The feed must answer in milliseconds, so the request path never queries DuckDB. This state is
loaded from the store at start-up and kept current by :meth:`FeedState.apply_events` and the
``add_*`` methods, which the API calls after each committed write.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
import polars as pl

from storage.store import Store

logger = logging.getLogger(__name__)

SAFETY_CODES = {"safe": 0, "borderline": 1, "violative": 2}
COUNTERS = (
    "impressions",
    "views",
    "watch_frac_sum",
    "likes",
    "comments",
    "remixes",
    "shares",
    "follows",
    "skips",
    "see_less",
    "reports",
)
_EVENT_TO_COUNTER = {
    "impression": "impressions",
    "view": "views",
    "like": "likes",
    "comment": "comments",
    "remix": "remixes",
    "share": "shares",
    "follow": "follows",
    "skip": "skips",
    "see_less": "see_less",
    "report": "reports",
}
# How much each event says "I want more like this" (used for user vectors and velocity).
POSITIVE_WEIGHTS = {"like": 1.0, "comment": 1.0, "share": 1.5, "remix": 2.0, "follow": 1.0}
LONG_VIEW_FRACTION = 0.6
USER_VECTOR_HALF_LIFE_S = 7 * 86400.0
VELOCITY_HALF_LIFE_S = 6 * 3600.0
MAX_HISTORY = 500


def to_epoch(ts: Any) -> float:
    """Seconds since the epoch for a naive-UTC or aware datetime (numbers pass through)."""
    if isinstance(ts, datetime):
        return (ts if ts.tzinfo else ts.replace(tzinfo=UTC)).timestamp()
    return float(ts)


@dataclass
class UserHistory:
    """Recent positive engagement of one user: clip rows, weights and times (bounded)."""

    rows: list[int]
    weights: list[float]
    times: list[float]


class FeedState:
    """Everything the request path reads, held in memory and updated in place.

    Parameters
    ----------
    dim
        Dimension of caption embeddings (0 until vectors are loaded).
    """

    def __init__(self, *, dim: int = 384) -> None:
        self.lock = threading.RLock()
        self.dim = dim
        self.item_ids = np.zeros(0, dtype=np.int64)
        self.row_of: dict[int, int] = {}
        # Sorted ids and their rows: vectorised id -> row lookups on the request path.
        self._sorted_ids = np.zeros(0, dtype=np.int64)
        self._sorted_rows = np.zeros(0, dtype=np.int64)
        self.author = np.zeros(0, dtype=np.int64)
        self.created = np.zeros(0, dtype=np.float64)
        self.maturity = np.zeros(0, dtype=np.int8)
        self.safety = np.zeros(0, dtype=np.int8)
        self.generated = np.zeros(0, dtype=bool)
        self.duration = np.zeros(0, dtype=np.float32)
        self.remix_of = np.zeros(0, dtype=np.int64)
        self.prior_views = np.zeros(0, dtype=np.float64)
        self.prior_likes = np.zeros(0, dtype=np.float64)
        self.captions: list[str] = []
        self.topics: list[list[str]] = []
        # First topic of each clip as an object array: gathered per page without a Python loop.
        self.primary_topic = np.zeros(0, dtype=object)
        self.hashtags: list[list[str]] = []
        self.cameos: list[list[int]] = []
        self.vectors = np.zeros((0, dim), dtype=np.float32)
        self.has_vector = np.zeros(0, dtype=bool)
        self.counts = np.zeros((0, len(COUNTERS)), dtype=np.float64)
        self.velocity = np.zeros(0, dtype=np.float64)
        self.velocity_at = np.zeros(0, dtype=np.float64)
        self.by_author: dict[int, list[int]] = defaultdict(list)
        self.following: dict[int, set[int]] = defaultdict(set)
        self.followers: dict[int, set[int]] = defaultdict(set)
        self.blocked: dict[int, set[int]] = defaultdict(set)
        self.seen: dict[int, set[int]] = defaultdict(set)
        self.history: dict[int, UserHistory] = {}
        self.engagers: dict[int, set[int]] = defaultdict(set)
        self._user_vec: dict[int, np.ndarray | None] = {}
        self._trending_cache: tuple[float, np.ndarray] = (0.0, np.zeros(0, dtype=np.int64))
        self._fresh_cache: tuple[int, np.ndarray] = (-1, np.zeros(0, dtype=np.int64))
        self._generated_rows: np.ndarray | None = None
        self.users: set[int] = set()
        self.profiles: dict[int, dict[str, Any]] = {}

    # -- loading ------------------------------------------------------------------------------
    @classmethod
    def load(
        cls, store: Store, *, vectors: tuple[np.ndarray, np.ndarray] | None = None
    ) -> FeedState:
        """Build the state from the store (and cached caption vectors ``(item_ids, matrix)``)."""
        t0 = time.perf_counter()
        state = cls(dim=vectors[1].shape[1] if vectors is not None else 384)
        state.add_users(
            store.query("SELECT user_id, age_band, is_teen, timezone, settings FROM users")
        )
        state.add_clips(store.query("SELECT * FROM clips ORDER BY item_id"))
        if vectors is not None:
            state.set_vectors(*vectors)
        state.add_follows(store.query("SELECT follower_id, followee_id FROM follows"))
        state.add_blocks(store.query("SELECT user_id, target_id, kind FROM blocks"))
        cur = store.cursor()
        try:
            reader = cur.sql(
                "SELECT user_id, item_id, target_user_id, event_type, ts, watch_frac, weight "
                "FROM events ORDER BY ts"
            ).to_arrow_reader(1_000_000)
            for batch in reader:
                state.apply_events(pl.from_arrow(batch))  # type: ignore[arg-type]
        finally:
            cur.close()
        logger.info(
            "feed state loaded: %d clips, %d users, %d follows in %.1f s",
            len(state.item_ids),
            len(state.users),
            sum(len(v) for v in state.following.values()),
            time.perf_counter() - t0,
        )
        return state

    # -- catalogue ----------------------------------------------------------------------------
    def add_clips(self, clips: pl.DataFrame) -> None:
        """Append clips (rows already known are replaced in place)."""
        if clips.height == 0:
            return
        with self.lock:
            new = clips.filter(~pl.col("item_id").is_in(list(self.row_of)))
            old = clips.filter(pl.col("item_id").is_in(list(self.row_of)))
            n0, k = len(self.item_ids), new.height
            if k:
                ids = new["item_id"].to_numpy().astype(np.int64)
                self.item_ids = np.concatenate([self.item_ids, ids])
                for i, item in enumerate(ids.tolist()):
                    self.row_of[item] = n0 + i
                order = np.argsort(self.item_ids, kind="stable")
                self._sorted_ids = self.item_ids[order]
                self._sorted_rows = order.astype(np.int64)
                self.author = np.concatenate([self.author, new["author_id"].to_numpy()])
                self.created = np.concatenate([self.created, _epoch_col(new, "created_at")])
                self.maturity = np.concatenate(
                    [self.maturity, _col(new, "maturity", 0).astype(np.int8)]
                )
                safety = [SAFETY_CODES.get(s, 0) for s in _list_col(new, "safety_label", "safe")]
                self.safety = np.concatenate([self.safety, np.asarray(safety, dtype=np.int8)])
                self.generated = np.concatenate(
                    [self.generated, _col(new, "is_generated", False).astype(bool)]
                )
                self.duration = np.concatenate(
                    [self.duration, _col(new, "duration_s", 15.0).astype(np.float32)]
                )
                remix = new["remix_of"].fill_null(-1) if "remix_of" in new.columns else None
                remix_np = (
                    remix.to_numpy().astype(np.int64) if remix is not None else np.full(k, -1)
                )
                self.remix_of = np.concatenate([self.remix_of, remix_np])
                self.prior_views = np.concatenate(
                    [self.prior_views, _col(new, "prior_views", 0).astype(np.float64)]
                )
                self.prior_likes = np.concatenate(
                    [self.prior_likes, _col(new, "prior_likes", 0).astype(np.float64)]
                )
                self.captions.extend(new["caption"].to_list())
                new_topics = _list_col(new, "topics", [])
                self.topics.extend(new_topics)
                first = np.empty(k, dtype=object)
                first[:] = [t[0] if t else "" for t in new_topics]
                self.primary_topic = np.concatenate([self.primary_topic, first])
                self.hashtags.extend(_list_col(new, "hashtags", []))
                self.cameos.extend([list(c or []) for c in _list_col(new, "cameo_user_ids", [])])
                self.vectors = np.concatenate(
                    [self.vectors, np.zeros((k, self.dim), dtype=np.float32)]
                )
                self.has_vector = np.concatenate([self.has_vector, np.zeros(k, dtype=bool)])
                self.counts = np.concatenate([self.counts, np.zeros((k, len(COUNTERS)))])
                self.velocity = np.concatenate([self.velocity, np.zeros(k)])
                self.velocity_at = np.concatenate([self.velocity_at, np.zeros(k)])
                for i, a in enumerate(self.author[n0:].tolist()):
                    self.by_author[a].append(n0 + i)
            for row in old.iter_rows(named=True):
                r = self.row_of[int(row["item_id"])]
                if "safety_label" in row:
                    self.safety[r] = SAFETY_CODES.get(row["safety_label"], 0)
                if "maturity" in row:
                    self.maturity[r] = int(row["maturity"])
                if "caption" in row:
                    self.captions[r] = row["caption"]
            self._fresh_cache = (-1, self._fresh_cache[1])
            self._generated_rows = None

    def set_vectors(self, item_ids: np.ndarray, matrix: np.ndarray) -> None:
        """Store caption vectors for clips (unknown ids are ignored)."""
        with self.lock:
            if matrix.shape[1] != self.dim:
                self.dim = matrix.shape[1]
                self.vectors = np.zeros((len(self.item_ids), self.dim), dtype=np.float32)
                self.has_vector[:] = False
            rows = self.rows(item_ids)
            ok = rows >= 0
            self.vectors[rows[ok]] = matrix[ok]
            self.has_vector[rows[ok]] = True
            self._user_vec.clear()
            self._generated_rows = None

    def generated_rows(self) -> np.ndarray:
        """Rows of AI-generated clips that have a caption vector (cached until clips or vectors
        change: a page without a mood asks for them, and a scan is ~3 ms at 1M clips)."""
        with self.lock:
            if self._generated_rows is None:
                self._generated_rows = np.flatnonzero(self.generated & self.has_vector)
            return self._generated_rows

    def rows(self, item_ids: np.ndarray | list[int]) -> np.ndarray:
        """Row numbers of clip ids (-1 for unknown)."""
        ids = np.asarray(item_ids, dtype=np.int64)
        sorted_ids = self._sorted_ids
        if ids.size == 0 or sorted_ids.size == 0:
            return np.full(ids.shape, -1, dtype=np.int64)
        pos = np.minimum(np.searchsorted(sorted_ids, ids), sorted_ids.size - 1)
        return np.where(sorted_ids[pos] == ids, self._sorted_rows[pos], -1)

    # -- graph --------------------------------------------------------------------------------
    def add_users(self, users: pl.DataFrame) -> None:
        """Record users the store now holds (``user_id`` plus optional profile columns)."""
        with self.lock:
            for row in users.iter_rows(named=True):
                uid = int(row["user_id"])
                self.users.add(uid)
                settings = row.get("settings") or "{}"
                self.profiles[uid] = {
                    "age_band": row.get("age_band") or "25-34",
                    "is_teen": bool(row.get("is_teen") or False),
                    "timezone": row.get("timezone") or "UTC",
                    "settings": json.loads(settings) if isinstance(settings, str) else settings,
                }

    def set_user_settings(self, user_id: int, settings: dict[str, Any]) -> None:
        """Replace a user's cached settings after the store committed them."""
        with self.lock:
            self.profiles.setdefault(
                user_id, {"age_band": "25-34", "is_teen": False, "timezone": "UTC"}
            )["settings"] = settings

    def add_follows(self, follows: pl.DataFrame) -> None:
        """Add directed follow edges."""
        with self.lock:
            for a, b in zip(
                follows["follower_id"].to_list(), follows["followee_id"].to_list(), strict=True
            ):
                self.following[a].add(b)
                self.followers[b].add(a)

    def remove_follow(self, follower_id: int, followee_id: int) -> None:
        """Remove one follow edge."""
        with self.lock:
            self.following[follower_id].discard(followee_id)
            self.followers[followee_id].discard(follower_id)

    def add_blocks(self, blocks: pl.DataFrame) -> None:
        """Add blocks and mutes (both hide the target's clips from the user)."""
        kinds = blocks["kind"].to_list() if "kind" in blocks.columns else ["block"] * blocks.height
        with self.lock:
            for u, t, k in zip(
                blocks["user_id"].to_list(), blocks["target_id"].to_list(), kinds, strict=True
            ):
                self.blocked[u].add(t)
                if k == "block":  # a block works both ways; a mute only hides the target
                    self.blocked[t].add(u)

    def friends(self, user_id: int) -> set[int]:
        """Mutual follows."""
        out = self.following.get(user_id)
        if not out:
            return set()
        return {f for f in out if user_id in self.following.get(f, ())}

    # -- events -------------------------------------------------------------------------------
    def apply_events(self, events: pl.DataFrame) -> None:
        """Update counters, seen sets, histories and velocities from committed events."""
        if events.height == 0:
            return
        cols = events.columns
        users = events["user_id"].to_list()
        items = events["item_id"].to_list() if "item_id" in cols else [None] * events.height
        targets = (
            events["target_user_id"].to_list() if "target_user_id" in cols else [None] * len(users)
        )
        types = events["event_type"].to_list()
        times = _epoch_col(events, "ts")
        fracs = events["watch_frac"].to_list() if "watch_frac" in cols else [None] * len(users)
        weights = events["weight"].to_list() if "weight" in cols else [None] * len(users)
        counter_idx = {c: i for i, c in enumerate(COUNTERS)}
        with self.lock:
            for u, item, tgt, et, ts, frac, w in zip(
                users, items, targets, types, times.tolist(), fracs, weights, strict=True
            ):
                if et == "follow" and tgt is not None:
                    self.following[u].add(tgt)
                    self.followers[tgt].add(u)
                if item is None:
                    continue
                r = self.row_of.get(item)
                if r is None:
                    continue
                c = _EVENT_TO_COUNTER.get(et)
                if c is not None:
                    self.counts[r, counter_idx[c]] += 1.0
                self.seen[u].add(item)
                strength = POSITIVE_WEIGHTS.get(et, 0.0)
                if et == "view":
                    f = float(frac) if frac is not None else 0.0
                    self.counts[r, counter_idx["watch_frac_sum"]] += f
                    scale = float(np.log1p(w)) if w else 1.0
                    strength = scale * (f if f >= LONG_VIEW_FRACTION else 0.0)
                elif et == "listen":
                    strength = float(np.log1p(w or 1.0))
                if strength > 0:
                    self._bump_velocity(r, strength, ts)
                    self.engagers[r].add(u)
                    h = self.history.get(u)
                    if h is None:
                        h = self.history[u] = UserHistory([], [], [])
                    h.rows.append(r)
                    h.weights.append(strength)
                    h.times.append(ts)
                    if len(h.rows) > MAX_HISTORY:
                        del h.rows[0], h.weights[0], h.times[0]
                    self._user_vec.pop(u, None)

    def _bump_velocity(self, r: int, amount: float, ts: float) -> None:
        last = self.velocity_at[r]
        if ts >= last:
            self.velocity[r] = (
                self.velocity[r] * 0.5 ** ((ts - last) / VELOCITY_HALF_LIFE_S) + amount
            )
            self.velocity_at[r] = ts
        else:
            self.velocity[r] += amount * 0.5 ** ((last - ts) / VELOCITY_HALF_LIFE_S)

    # -- derived ------------------------------------------------------------------------------
    def velocity_now(self, now: float, rows: np.ndarray | None = None) -> np.ndarray:
        """Engagement velocity decayed to ``now`` (positive engagement per 6 h half-life)."""
        v = self.velocity if rows is None else self.velocity[rows]
        at = self.velocity_at if rows is None else self.velocity_at[rows]
        return v * np.power(0.5, np.clip(now - at, 0.0, None) / VELOCITY_HALF_LIFE_S)

    def user_vector(self, user_id: int, now: float) -> np.ndarray | None:
        """Decayed mean of the caption vectors of clips the user engaged with (unit norm)."""
        with self.lock:
            if user_id in self._user_vec:
                return self._user_vec[user_id]
            h = self.history.get(user_id)
            vec: np.ndarray | None = None
            if h is not None and h.rows:
                rows = np.asarray(h.rows)
                ok = self.has_vector[rows]
                if ok.any():
                    age = np.clip(now - np.asarray(h.times)[ok], 0.0, None)
                    w = np.asarray(h.weights)[ok] * np.power(0.5, age / USER_VECTOR_HALF_LIFE_S)
                    v = (self.vectors[rows[ok]] * w[:, None].astype(np.float32)).sum(axis=0)
                    norm = float(np.linalg.norm(v))
                    vec = (v / norm).astype(np.float32) if norm > 0 else None
            self._user_vec[user_id] = vec
            return vec

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

    def freshest(self, *, k: int = 500) -> np.ndarray:
        """Rows of the newest clips (cached until clips are added)."""
        n, rows = self._fresh_cache
        if n == len(self.created):
            return rows
        k = min(k, len(self.created))
        if k == 0:
            return np.zeros(0, dtype=np.int64)
        top = np.argpartition(-self.created, k - 1)[:k]
        top = top[np.argsort(-self.created[top])]
        self._fresh_cache = (len(self.created), top)
        return top

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
        held: tuple[np.ndarray, dict[str, np.ndarray], float] | None = getattr(
            self, "_author_stats", None
        )
        authors = np.asarray(authors, dtype=np.int64)
        if held is None or name not in held[1] or len(held[0]) == 0:
            return np.full(len(authors), default, dtype=np.float64)
        ids, cols, _ = held
        pos = np.searchsorted(ids, authors).clip(0, len(ids) - 1)
        return np.where(ids[pos] == authors, cols[name][pos], default)

    def author_stats_computed_at(self) -> float | None:
        """Epoch seconds the author statistics were computed at (None before the first run)."""
        held = getattr(self, "_author_stats", None)
        return None if held is None else float(held[2])


def _col(df: pl.DataFrame, name: str, default: Any) -> np.ndarray:
    if name not in df.columns:
        return np.full(df.height, default)
    return df[name].fill_null(default).to_numpy()


def _list_col(df: pl.DataFrame, name: str, default: Any) -> list[Any]:
    if name not in df.columns:
        return [default] * df.height
    return [default if v is None else v for v in df[name].to_list()]


def _epoch_col(df: pl.DataFrame, name: str) -> np.ndarray:
    if name not in df.columns:
        return np.full(df.height, time.time())
    s = df[name]
    if s.dtype == pl.Datetime or isinstance(s.dtype, pl.Datetime):
        return s.dt.epoch("us").fill_null(0).to_numpy().astype(np.float64) / 1e6
    return s.fill_null(time.time()).to_numpy().astype(np.float64)
