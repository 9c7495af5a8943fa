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
# How much each event says "less like this" (the user vector and topic mix move away, with
# decay): an explicit "see less" counts fully, a report twice, a skip a little; a quick skip
# (events.QUICK_SKIP_FRACTION) more than a late one.
NEGATIVE_WEIGHTS = {"see_less": 1.0, "report": 2.0, "skip": 0.3}
QUICK_SKIP_WEIGHT = 0.6
NEGATIVE_HALF_LIFE_S = 3 * 86400.0
# Pull of the negative direction on the user vector: ``u - NEGATIVE_PULL * s / (s + 2) * n``
# for ``s`` decayed negative weight and ``n`` its mean direction (Rocchio's gamma term).
NEGATIVE_PULL = 0.6
MAX_NEGATIVE = 200


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
        # Recent negative feedback per user (see NEGATIVE_WEIGHTS), bounded like the history.
        self.negative: dict[int, UserHistory] = {}
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
            self._record_negative(batch)
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

    def _record_negative(self, batch: EventBatch) -> None:
        """Append see-less, report and skip events to the users' negative histories (a quick
        skip weighs more) and drop their cached vectors. Lock held."""
        weight = np.zeros(len(batch.rows))
        for et, w in NEGATIVE_WEIGHTS.items():
            weight[batch.masks[et]] = w
        weight[batch.quick_skip] = QUICK_SKIP_WEIGHT
        neg = weight > 0
        if not neg.any():
            return
        rn, wn = batch.rows[neg].tolist(), weight[neg].tolist()
        tn, un = batch.times[neg].tolist(), batch.users[neg].tolist()
        for r, w, t, u in zip(rn, wn, tn, un, strict=True):
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
            topics = self.catalogue.primary_topic[rows].tolist()
            for t, x in zip(topics, neg.tolist(), strict=True):
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
                topics = self.catalogue.primary_topic[h.rows].tolist()
                for t, x in zip(topics, w.tolist(), strict=True):
                    if t:
                        mix[t] += x
        against = self.topic_feedback(user_id, now)
        out = {t: v * float(np.exp(-sensitivity * against.get(t, 0.0))) for t, v in mix.items()}
        total = sum(mix.values())
        return {t: v / total for t, v in out.items() if v > 0} if total > 0 else {}

    def away_from_negative(self, user_id: int, vec: np.ndarray, now: float) -> np.ndarray:
        """``vec`` moved away from the mean direction of the user's negative feedback
        (:data:`NEGATIVE_PULL`), renormalised; unchanged without negative feedback."""
        rows, w = self.negative_weights(user_id, now)
        cat = self.catalogue
        ok = cat.has_vector[rows] if len(rows) else np.zeros(0, dtype=bool)
        if not ok.any():
            return vec
        n = (cat.vectors[rows[ok]] * w[ok, None].astype(np.float32)).sum(axis=0)
        nn = float(np.linalg.norm(n))
        if nn <= 0:
            return vec
        mass = float(w[ok].sum())
        out = vec - np.float32(NEGATIVE_PULL * mass / (mass + 2.0)) * (n / nn)
        norm = float(np.linalg.norm(out))
        return (out / norm).astype(np.float32) if norm > 0 else vec

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
            if vec is not None:
                vec = self.away_from_negative(user_id, vec, now)
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
            self.negative.pop(user_id, None)
            self._user_vec.clear()
