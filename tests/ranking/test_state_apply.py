"""FeedState.apply_events (array-at-a-time) against the event-at-a-time definition."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime, timedelta

import numpy as np
import polars as pl

from ranking.state import (
    COUNTERS,
    EVENT_TO_COUNTER,
    LONG_VIEW_FRACTION,
    MAX_HISTORY,
    POSITIVE_WEIGHTS,
    VELOCITY_HALF_LIFE_S,
    FeedState,
    UserHistory,
)

_COUNTER_OF = EVENT_TO_COUNTER


class Reference:
    """The serving state's rules, one event at a time (the definition apply_events keeps)."""

    def __init__(self, state: FeedState) -> None:
        n = len(state.catalogue.item_ids)
        self.row_of = dict(state.catalogue.row_of)
        self.counts = np.zeros((n, len(COUNTERS)))
        self.velocity = np.zeros(n)
        self.velocity_at = np.zeros(n)
        self.seen: dict[int, set[int]] = defaultdict(set)
        self.engagers: dict[int, set[int]] = defaultdict(set)
        self.history: dict[int, UserHistory] = {}
        self.following: dict[int, set[int]] = defaultdict(set)

    def apply(self, events: pl.DataFrame) -> None:
        idx = {c: i for i, c in enumerate(COUNTERS)}
        for e in events.iter_rows(named=True):
            u, item, et = e["user_id"], e["item_id"], e["event_type"]
            ts = (e["ts"] - datetime(1970, 1, 1)).total_seconds()
            if et == "follow" and e["target_user_id"] is not None:
                self.following[u].add(e["target_user_id"])
            r = self.row_of.get(item) if item is not None else None
            if r is None:
                continue
            if et in _COUNTER_OF:
                self.counts[r, idx[_COUNTER_OF[et]]] += 1.0
            self.seen[u].add(item)
            strength = POSITIVE_WEIGHTS.get(et, 0.0)
            w = e["weight"]
            if et == "view":
                f = e["watch_frac"] or 0.0
                self.counts[r, idx["watch_frac_sum"]] += f
                scale = float(np.log1p(w)) if w else 1.0
                strength = scale * (f if f >= LONG_VIEW_FRACTION else 0.0)
            elif et == "listen":
                strength = float(np.log1p(w or 1.0))
            if strength <= 0:
                continue
            last = self.velocity_at[r]
            if ts >= last:
                decay = 0.5 ** ((ts - last) / VELOCITY_HALF_LIFE_S)
                self.velocity[r] = self.velocity[r] * decay + strength
                self.velocity_at[r] = ts
            else:
                self.velocity[r] += strength * 0.5 ** ((last - ts) / VELOCITY_HALF_LIFE_S)
            self.engagers[r].add(u)
            h = self.history.setdefault(u, UserHistory([], [], []))
            h.rows.append(r)
            h.weights.append(strength)
            h.times.append(ts)
            h.views.append(et == "view")
            if len(h.rows) > MAX_HISTORY:
                del h.rows[0], h.weights[0], h.times[0], h.views[0]


def _events(rng: np.random.Generator, items: np.ndarray, n: int, t0: datetime) -> pl.DataFrame:
    types = ["impression", "view", "like", "comment", "remix", "share", "skip", "see_less"]
    types += ["report", "listen", "follow"]
    et = rng.choice(types, n, p=[0.3, 0.3, 0.06, 0.03, 0.02, 0.02, 0.1, 0.03, 0.01, 0.08, 0.05])
    item = rng.choice(np.concatenate([items, [10**9]]), n).astype(object)  # some unknown
    item[et == "follow"] = None
    frac = rng.uniform(0, 1.2, n).astype(object)
    frac[rng.uniform(size=n) < 0.1] = None
    weight = rng.choice([0.0, 1.0, 3.0, 12.0], n).astype(object)
    weight[rng.uniform(size=n) < 0.3] = None
    # out of order within and across batches: velocities must not depend on arrival order
    secs = rng.uniform(0, 3 * 86400, n)
    return pl.DataFrame(
        {
            "user_id": np.where(rng.uniform(size=n) < 0.4, 0, rng.integers(1, 40, n)),
            "item_id": pl.Series(item.tolist(), dtype=pl.Int64),
            "target_user_id": pl.Series(
                [
                    int(x) if t == "follow" else None
                    for x, t in zip(rng.integers(0, 40, n), et, strict=True)
                ],
                dtype=pl.Int64,
            ),
            "event_type": et.tolist(),
            "ts": [t0 + timedelta(seconds=float(s)) for s in secs],
            "watch_frac": pl.Series(frac.tolist(), dtype=pl.Float64),
            "weight": pl.Series(weight.tolist(), dtype=pl.Float64),
        }
    )


def test_apply_events_keeps_the_event_at_a_time_rules() -> None:
    rng = np.random.default_rng(3)
    items = np.arange(100, 160, dtype=np.int64)
    state = FeedState(dim=4)
    state.add_clips(pl.DataFrame({"item_id": items, "author_id": items % 7, "caption": "c"}))
    ref = Reference(state)
    t0 = datetime(2026, 11, 1)
    for size in (3000, 1, 700, 2500):  # one user passes MAX_HISTORY over the batches
        batch = _events(rng, items, size, t0)
        state.apply_events(batch)
        ref.apply(batch)
    assert np.array_equal(state.engagement.counts, ref.counts)
    assert np.allclose(state.engagement.velocity, ref.velocity, rtol=1e-9, atol=1e-12)
    assert np.array_equal(state.engagement.velocity_at, ref.velocity_at)
    assert dict(state.activity.seen) == dict(ref.seen)
    assert {r: set(s) for r, s in state.engagement.engagers.items()} == dict(ref.engagers)
    assert all(len(set(s)) == len(s) for s in state.engagement.engagers.values())  # no repeats
    assert dict(state.graph.following) == {u: s for u, s in ref.following.items() if s}
    assert state.activity.history.keys() == ref.history.keys()
    assert max(len(h.rows) for h in ref.history.values()) == MAX_HISTORY
    for u, h in ref.history.items():
        got = state.activity.history[u]
        assert got.rows == h.rows and got.times == h.times and got.views == h.views, u
        assert np.allclose(got.weights, h.weights)
