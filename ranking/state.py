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
# How much each event says "less like this" (the user vector and topic mix move away, with
# decay): an explicit "see less" counts fully, a report twice, a skip a little; a quick skip
# (a skip before QUICK_SKIP_FRACTION of the clip) more than a late one.
NEGATIVE_WEIGHTS = {"see_less": 1.0, "report": 2.0, "skip": 0.3}
QUICK_SKIP_FRACTION = 0.2
QUICK_SKIP_WEIGHT = 0.6
NEGATIVE_HALF_LIFE_S = 3 * 86400.0
# Pull of the negative direction on the user vector: ``u - NEGATIVE_PULL * s / (s + 2) * n``
# for ``s`` decayed negative weight and ``n`` its mean direction (Rocchio's gamma term).
NEGATIVE_PULL = 0.6
MAX_NEGATIVE = 200
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
        self._strings: dict[str, str] = {}  # interned captions, topics and tags
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
        # Recent negative feedback per user (see NEGATIVE_WEIGHTS), bounded like the history.
        self.negative: dict[int, UserHistory] = {}
        # Users who engaged with each clip row: tuples, not sets (a set is 216 bytes even for
        # one user; 0.8 GB for 2.8M engagements at a million clips, ~0.2 GB as tuples).
        self.engagers: dict[int, tuple[int, ...]] = {}
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
                # One object per distinct string: a million clips share a few thousand
                # captions and tags (0.6 GB of copies at that size).
                pool = self._strings
                self.captions.extend(pool.setdefault(c, c) for c in new["caption"].to_list())
                new_topics = [
                    [pool.setdefault(t, t) for t in ts] for ts in _list_col(new, "topics", [])
                ]
                self.topics.extend(new_topics)
                first = np.empty(k, dtype=object)
                first[:] = [t[0] if t else "" for t in new_topics]
                self.primary_topic = np.concatenate([self.primary_topic, first])
                self.hashtags.extend(
                    [pool.setdefault(t, t) for t in ts] for ts in _list_col(new, "hashtags", [])
                )
                self.cameos.extend([list(c or []) for c in _list_col(new, "cameo_user_ids", [])])
                zeros = np.zeros((k, self.dim), dtype=np.float32)  # untouched pages cost no RAM
                self.vectors = zeros if n0 == 0 else np.concatenate([self.vectors, zeros])
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
        """Store caption vectors for clips (unknown ids are ignored).

        A float32 matrix with one row per clip in row order is taken over, not copied (at
        start-up that is the store's matrix: a copy would hold 1.5 GB twice at a million
        clips); the caller must not change it afterwards.
        """
        with self.lock:
            if matrix.shape[1] != self.dim:
                self.dim = matrix.shape[1]
                self.vectors = np.zeros((len(self.item_ids), self.dim), dtype=np.float32)
                self.has_vector[:] = False
            rows = self.rows(item_ids)
            ok = rows >= 0
            if (
                len(rows) == len(self.item_ids)
                and matrix.dtype == np.float32
                and matrix.flags.c_contiguous
                and np.array_equal(rows, np.arange(len(rows)))
            ):
                self.vectors = matrix
            else:
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
        """Update counters, seen sets, histories and velocities from committed events.

        Array-at-a-time (counters and velocities with numpy, sets and histories updated once
        per user or clip, not once per event): ~2.5x faster than an event loop, which made
        loading 20M events and bulk ingestion slow. The rules are the event-at-a-time ones
        (``tests/ranking/test_state_apply.py`` holds them as a reference); a clip's velocity
        is its value at the latest engagement seen, whatever order events arrive in.
        """
        n = events.height
        if n == 0:
            return
        cols = events.columns
        types = events["event_type"]
        users = events["user_id"].to_numpy()
        counter_idx = {c: i for i, c in enumerate(COUNTERS)}
        with self.lock:
            if "target_user_id" in cols:
                follows = events.filter(
                    (types == "follow").to_numpy()
                    & events["target_user_id"].is_not_null().to_numpy()
                )
                for u, t in zip(
                    follows["user_id"].to_list(), follows["target_user_id"].to_list(), strict=True
                ):
                    self.following[u].add(t)
                    self.followers[t].add(u)
            if "item_id" not in cols:
                return
            item_s = events["item_id"]
            item_ids = item_s.fill_null(-1).to_numpy().astype(np.int64)
            rows = self.rows(item_ids)
            if item_s.null_count():
                rows[item_s.is_null().to_numpy()] = -1
            known = rows >= 0
            if not known.any():
                return
            masks = {t: (types == t).to_numpy() & known for t in (*_EVENT_TO_COUNTER, "listen")}
            for et, c in _EVENT_TO_COUNTER.items():
                if masks[et].any():
                    np.add.at(self.counts[:, counter_idx[c]], rows[masks[et]], 1.0)
            strength = np.zeros(n)
            for et, w in POSITIVE_WEIGHTS.items():
                strength[masks[et]] = w
            weights = _float_col(events, "weight")
            view, listen = masks["view"], masks["listen"]
            if view.any():
                frac = _float_col(events, "watch_frac")
                np.add.at(self.counts[:, counter_idx["watch_frac_sum"]], rows[view], frac[view])
                scale = np.where(weights != 0.0, np.log1p(np.where(weights != 0.0, weights, 0)), 1)
                strength[view] = (scale * np.where(frac >= LONG_VIEW_FRACTION, frac, 0.0))[view]
            if listen.any():
                strength[listen] = np.log1p(np.where(weights != 0.0, weights, 1.0))[listen]
            seen = self.seen
            for u, part in _groups(users[known], item_ids[known]):
                seen[u].update(part)
            self._record_negative(events, masks, rows, users)
            pos = known & (strength > 0)
            if not pos.any():
                return
            times = _epoch_col(events, "ts")
            rp, tp, ap, up = rows[pos], times[pos], strength[pos], users[pos]
            self._bump_velocities(rp, ap, tp)
            engagers, history = self.engagers, self.history
            for r, part in _groups(rp, up):
                old = engagers.get(r)
                engagers[r] = tuple(dict.fromkeys((*old, *part) if old else part))
            order = np.argsort(up, kind="stable")  # per user, in batch order
            rows_l, w_l, t_l = rp[order].tolist(), ap[order].tolist(), tp[order].tolist()
            for u, lo, hi in _runs(up[order]):
                h = history.get(u)
                if h is None:
                    h = history[u] = UserHistory([], [], [])
                h.rows.extend(rows_l[lo:hi])
                h.weights.extend(w_l[lo:hi])
                h.times.extend(t_l[lo:hi])
                if len(h.rows) > MAX_HISTORY:
                    del h.rows[:-MAX_HISTORY], h.weights[:-MAX_HISTORY], h.times[:-MAX_HISTORY]
                self._user_vec.pop(u, None)

    def _record_negative(
        self,
        events: pl.DataFrame,
        masks: dict[str, np.ndarray],
        rows: np.ndarray,
        users: np.ndarray,
    ) -> None:
        """Append see-less, report and skip events to the users' negative histories (a quick
        skip weighs more) and drop their cached vectors. Called by :meth:`apply_events`."""
        weight = np.zeros(len(rows))
        for et, w in NEGATIVE_WEIGHTS.items():
            weight[masks[et]] = w
        skip = masks["skip"]
        if skip.any() and "watch_frac" in events.columns:
            frac = events["watch_frac"].cast(pl.Float64).fill_null(1.0).to_numpy()
            weight[skip & (frac < QUICK_SKIP_FRACTION)] = QUICK_SKIP_WEIGHT
        neg = weight > 0
        if not neg.any():
            return
        times = _epoch_col(events, "ts")[neg]
        rn, wn, un = rows[neg].tolist(), weight[neg].tolist(), users[neg].tolist()
        for r, w, t, u in zip(rn, wn, times.tolist(), un, strict=True):
            h = self.negative.get(u)
            if h is None:
                h = self.negative[u] = UserHistory([], [], [])
            h.rows.append(r)
            h.weights.append(w)
            h.times.append(t)
            if len(h.rows) > MAX_NEGATIVE:
                del h.rows[:-MAX_NEGATIVE], h.weights[:-MAX_NEGATIVE], h.times[:-MAX_NEGATIVE]
            self._user_vec.pop(u, None)

    def negative_weights(self, user_id: int, now: float) -> tuple[np.ndarray, np.ndarray]:
        """Rows of the user's recent negative feedback and their weights decayed to ``now``
        (half-life :data:`NEGATIVE_HALF_LIFE_S`)."""
        with self.lock:
            h = self.negative.get(user_id)
            if h is None or not h.rows:
                return np.zeros(0, dtype=np.int64), np.zeros(0)
            rows = np.asarray(h.rows, dtype=np.int64)
            age = np.clip(now - np.asarray(h.times), 0.0, None)
            return rows, np.asarray(h.weights) * np.power(0.5, age / NEGATIVE_HALF_LIFE_S)

    def topic_feedback(self, user_id: int, now: float) -> dict[str, float]:
        """Decayed negative feedback per primary topic (see :data:`NEGATIVE_WEIGHTS`)."""
        rows, neg = self.negative_weights(user_id, now)
        against: dict[str, float] = defaultdict(float)
        with self.lock:
            for t, x in zip(self.primary_topic[rows].tolist(), neg.tolist(), strict=True):
                if t:
                    against[t] += x
        return dict(against)

    def topic_mix(self, user_id: int, now: float, *, sensitivity: float = 0.3) -> dict[str, float]:
        """The user's interest mix over primary topics (empty without history).

        Each topic's share of the decayed positive history, multiplied by
        ``exp(-sensitivity * negative)`` where ``negative`` is the topic's decayed negative
        feedback (:meth:`topic_feedback`): six "see less" on a topic keep ~17% of its weight,
        one skip ~91%. The shares sum to at most 1: what negative feedback took away is not
        given to the other topics of the history (a person whose history is all cats and who
        says "see less" to the cats would get cats back) but left free, for exploration.
        """
        with self.lock:
            mix: dict[str, float] = defaultdict(float)
            h = self.history.get(user_id)
            if h is not None and h.rows:
                age = np.clip(now - np.asarray(h.times), 0.0, None)
                w = np.asarray(h.weights) * np.power(0.5, age / USER_VECTOR_HALF_LIFE_S)
                for t, x in zip(self.primary_topic[h.rows].tolist(), w.tolist(), strict=True):
                    if t:
                        mix[t] += x
        against = self.topic_feedback(user_id, now)
        out = {t: v * float(np.exp(-sensitivity * against.get(t, 0.0))) for t, v in mix.items()}
        total = sum(mix.values())
        return {t: v / total for t, v in out.items() if v > 0} if total > 0 else {}

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
            if vec is not None:
                vec = self._away_from_negative(user_id, vec, now)
            self._user_vec[user_id] = vec
            return vec

    def _away_from_negative(self, user_id: int, vec: np.ndarray, now: float) -> np.ndarray:
        """``vec`` moved away from the mean direction of the user's negative feedback
        (:data:`NEGATIVE_PULL`), renormalised; unchanged without negative feedback."""
        rows, w = self.negative_weights(user_id, now)
        ok = self.has_vector[rows] if len(rows) else np.zeros(0, dtype=bool)
        if not ok.any():
            return vec
        n = (self.vectors[rows[ok]] * w[ok, None].astype(np.float32)).sum(axis=0)
        nn = float(np.linalg.norm(n))
        if nn <= 0:
            return vec
        mass = float(w[ok].sum())
        out = vec - np.float32(NEGATIVE_PULL * mass / (mass + 2.0)) * (n / nn)
        norm = float(np.linalg.norm(out))
        return (out / norm).astype(np.float32) if norm > 0 else vec

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


def _float_col(df: pl.DataFrame, name: str) -> np.ndarray:
    """A nullable number column as float64 (nulls as 0)."""
    if name not in df.columns:
        return np.zeros(df.height)
    return df[name].fill_null(0.0).to_numpy().astype(np.float64)


def _runs(sorted_keys: np.ndarray) -> list[tuple[int, int, int]]:
    """``(key, start, stop)`` of each run of equal keys in a sorted array."""
    if sorted_keys.size == 0:
        return []
    cuts = np.flatnonzero(sorted_keys[1:] != sorted_keys[:-1]) + 1
    starts = np.concatenate([[0], cuts])
    stops = np.concatenate([cuts, [sorted_keys.size]])
    return list(zip(sorted_keys[starts].tolist(), starts.tolist(), stops.tolist(), strict=True))


def _groups(keys: np.ndarray, values: np.ndarray) -> list[tuple[int, list[int]]]:
    """The values of each key (keys ascending, values in their original order)."""
    order = np.argsort(keys, kind="stable")
    vals = values[order].tolist()
    return [(k, vals[lo:hi]) for k, lo, hi in _runs(keys[order])]


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
