"""A person's engagement history as the data controls allow it to be read.

The taste vector, the user x author affinity and the interests all weigh the same history
(:class:`~ranking.state.UserHistory`: clip rows, engagement strengths, times); this module
reads it once, decayed, without the entries a turned-off signal made (long views when watch
time is off), so the three never disagree about what they may use.
"""

from __future__ import annotations

import numpy as np

from ranking.signals import SignalGate
from ranking.state import USER_VECTOR_HALF_LIFE_S, FeedState


def decayed_history(
    state: FeedState,
    user_id: int,
    now: float,
    signals: SignalGate,
    *,
    half_life_s: float = USER_VECTOR_HALF_LIFE_S,
) -> tuple[np.ndarray, np.ndarray]:
    """``(rows, weights)`` of the user's usable history, weights decayed to ``now``.

    Empty when interaction history is off; without long views when watch time is off. The
    caller holds ``state.lock`` (or accepts a history changing underneath).
    """
    empty = (np.zeros(0, dtype=np.int64), np.zeros(0))
    if not signals.interaction_history:
        return empty
    h = state.activity.history.get(user_id)
    if h is None or not h.rows:
        return empty
    rows = np.asarray(h.rows, dtype=np.int64)
    age = np.clip(now - np.asarray(h.times, dtype=np.float64), 0.0, None)
    w = np.asarray(h.weights, dtype=np.float64) * np.power(0.5, age / half_life_s)
    if not signals.watch_time and len(h.views) == len(h.rows):
        keep = ~np.asarray(h.views, dtype=bool)
        rows, w = rows[keep], w[keep]
    return rows, w


def taste_vector(
    state: FeedState, user_id: int, now: float, signals: SignalGate
) -> np.ndarray | None:
    """The user's taste vector as the signals allow (the state's cached one when all are on).

    ``None`` when interaction history is off or nothing usable is left.
    """
    if not signals.interaction_history:
        return None
    if signals.watch_time:
        return state.activity.user_vector(user_id, now)
    with state.lock:
        rows, w = decayed_history(state, user_id, now, signals)
        ok = state.catalogue.has_vector[rows] if len(rows) else np.zeros(0, dtype=bool)
        if not ok.any():
            return None
        v = (state.catalogue.vectors[rows[ok]] * w[ok][:, None].astype(np.float32)).sum(axis=0)
    norm = float(np.linalg.norm(v))
    return (v / norm).astype(np.float32) if norm > 0 else None
