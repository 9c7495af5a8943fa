"""The serving state's parts: each rebuilt alone from the store equals the live part, and
each forgets an erased user."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from ranking.state import (
    SAFETY_CODES,
    Catalogue,
    EngagementCounters,
    FeedState,
    Profiles,
    SocialGraph,
    UserActivity,
)
from storage.store import Store

T0 = datetime(2026, 11, 1)
N_USERS = 12


def _clips(ids: np.ndarray) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "item_id": ids,
            "author_id": ids % N_USERS,
            "caption": [f"clip {i}" for i in ids],
            "topics": [["cooking", "music"][i % 2 :] for i in range(len(ids))],
            "hashtags": [[f"tag{i % 3}"] for i in range(len(ids))],
            "cameo_user_ids": [[int(i % N_USERS + 1) % N_USERS] for i in ids],
            "created_at": [T0 - timedelta(hours=int(i)) for i in ids % 50],
            "prior_views": (ids % 5).astype(np.int64),
            "prior_likes": (ids % 3).astype(np.int64),
            "safety_label": ["safe"] * len(ids),
        }
    )


def _events(rng: np.random.Generator, items: np.ndarray, n: int, start: int) -> pl.DataFrame:
    types = np.array(["impression", "view", "like", "share", "skip", "listen", "follow"])
    et = rng.choice(types, n, p=[0.35, 0.3, 0.1, 0.05, 0.1, 0.05, 0.05])
    item = rng.choice(items, n).astype(object)
    item[et == "follow"] = None
    target = rng.integers(0, N_USERS, n).astype(object)
    target[et != "follow"] = None
    return pl.DataFrame(
        {
            "event_id": [f"e{start + i}" for i in range(n)],
            "user_id": rng.integers(0, N_USERS, n),
            "item_id": pl.Series(item.tolist(), dtype=pl.Int64),
            "target_user_id": pl.Series(target.tolist(), dtype=pl.Int64),
            "event_type": et.tolist(),
            # distinct times: the log replays in time order, live batches arrive in it
            "ts": [T0 + timedelta(seconds=start + i) for i in range(n)],
            "watch_frac": rng.uniform(0, 1.1, n),
            "weight": rng.choice([0.0, 2.0, 9.0], n),
        }
    )


@pytest.fixture()
def store(tmp_path: Path) -> Store:
    s = Store(tmp_path / "parts.duckdb")
    s.add_users(
        pl.DataFrame(
            {
                "user_id": np.arange(N_USERS),
                "age_band": ["16-17" if u % 4 == 0 else "25-34" for u in range(N_USERS)],
                "is_teen": [u % 4 == 0 for u in range(N_USERS)],
            }
        )
    )
    s.add_clips(_clips(np.arange(100, 160, dtype=np.int64)))
    s.add_follows(pl.DataFrame({"follower_id": [0, 1, 2, 3], "followee_id": [1, 0, 0, 5]}))
    s.add_blocks(pl.DataFrame({"user_id": [4, 6], "target_id": [7, 0], "kind": ["block", "mute"]}))
    s.append_events(_events(np.random.default_rng(5), np.arange(100, 160), 1500, 0))
    return s


def _live_state(store: Store) -> FeedState:
    """Loaded, then changed the way the server changes it: clips added at run time (rows no
    longer in id order) and events committed to the store and applied."""
    state = FeedState.load(store)
    late = _clips(np.array([90, 170, 95], dtype=np.int64))
    store.add_clips(late)
    state.add_clips(late)
    events = _events(np.random.default_rng(6), np.array([90, 95, 100, 130, 170]), 400, 5000)
    store.append_events(events)
    state.apply_events(events)
    return state


def test_each_part_rebuilt_alone_from_the_store_equals_the_live_part(store: Store) -> None:
    live = _live_state(store)
    lock = threading.RLock()

    cat = Catalogue(lock)
    cat.load(store)
    assert sorted(cat.item_ids.tolist()) == sorted(live.catalogue.item_ids.tolist())
    for item, r in live.catalogue.row_of.items():
        q = cat.row_of[item]
        assert cat.author[q] == live.catalogue.author[r]
        assert cat.topics[q] == live.catalogue.topics[r]
        assert cat.cameos[q] == live.catalogue.cameos[r]
        assert cat.created[q] == live.catalogue.created[r]

    # The parts keyed by clip row are rebuilt against the live catalogue's rows.
    eng = EngagementCounters(live.catalogue, lock)
    eng.load(store)
    assert np.array_equal(eng.counts, live.engagement.counts)
    assert np.allclose(eng.velocity, live.engagement.velocity, rtol=1e-9, atol=1e-12)
    assert np.array_equal(eng.velocity_at, live.engagement.velocity_at)
    assert np.array_equal(eng.prior_views, live.engagement.prior_views)
    assert np.array_equal(eng.prior_likes, live.engagement.prior_likes)
    assert {r: set(u) for r, u in eng.engagers.items()} == {
        r: set(u) for r, u in live.engagement.engagers.items()
    }
    assert live.engagement.counts[:, 0].sum() > 0  # the check is not vacuous

    act = UserActivity(live.catalogue, lock)
    act.load(store)
    assert dict(act.seen) == dict(live.activity.seen)
    assert act.history == live.activity.history
    some = max(act.history, key=lambda u: len(act.history[u].rows))
    now = (T0 + timedelta(days=1)).timestamp()
    a, b = act.user_vector(some, now), live.activity.user_vector(some, now)
    assert (a is None) == (b is None)

    graph = SocialGraph(lock)
    graph.load(store)

    def nonempty(d: dict[int, set[int]]) -> dict[int, set[int]]:
        return {k: v for k, v in d.items() if v}

    assert nonempty(graph.following) == nonempty(live.graph.following)
    assert nonempty(graph.followers) == nonempty(live.graph.followers)
    assert nonempty(graph.blocked) == nonempty(live.graph.blocked)
    assert len(nonempty(graph.following)) > 4  # follow events added edges to the table's

    prof = Profiles(lock)
    prof.load(store)
    assert prof.users == live.profiles.users and prof.by_user == live.profiles.by_user


def test_forget_user_leaves_the_user_in_no_part(store: Store) -> None:
    state = _live_state(store)
    uid = 0
    theirs = [int(i) for i in state.catalogue.item_ids if int(i) % N_USERS == uid]
    rows = state.catalogue.rows(theirs)
    other_seen = {u: set(s) for u, s in state.activity.seen.items() if u != uid}
    assert uid in state.graph.followers and uid in state.activity.history

    state.forget_user(uid, item_ids=theirs)

    assert uid not in state.profiles.users and uid not in state.profiles.by_user
    for edges in (state.graph.following, state.graph.followers, state.graph.blocked):
        assert uid not in edges and all(uid not in v for v in edges.values())
    assert uid not in state.activity.seen and uid not in state.activity.history
    assert all(uid not in e for e in state.engagement.engagers.values())
    assert not set(theirs) & set(state.catalogue.row_of)
    assert uid not in state.catalogue.by_author
    assert all(not set(rows.tolist()) & set(r) for r in state.catalogue.by_author.values())
    assert (state.catalogue.safety[rows] == SAFETY_CODES["violative"]).all()
    assert not state.catalogue.has_vector[rows].any()
    assert not state.engagement.counts[rows].any() and not state.engagement.velocity[rows].any()
    assert all(not state.catalogue.captions[r] for r in rows.tolist())
    assert {u: s for u, s in state.activity.seen.items() if u != uid} == other_seen
