"""Training examples: features as logged at the impression, labels from what followed."""

from __future__ import annotations

import json
from datetime import datetime, timedelta

import numpy as np
import polars as pl
import pytest

from features.registry import feature_names
from pipelines.offline.demo_world import World, WorldConfig, build_world
from ranking.learned.replay import ReplayTables, replay_features
from ranking.learned.training import (
    TrainingError,
    build_examples,
    ndcg_at_k,
    time_split,
)

T0 = datetime(2025, 6, 1, 12)


def _event(
    eid: str, user: int, item: int, et: str, ts: datetime, **extra: object
) -> dict[str, object]:
    return {
        "event_id": eid,
        "user_id": user,
        "item_id": item,
        "event_type": et,
        "ts": ts,
        "request_id": extra.get("request_id"),
        "position": extra.get("position"),
        "source": extra.get("source"),
        "features": extra.get("features"),
        "watch_frac": extra.get("watch_frac"),
    }


def _frame(rows: list[dict[str, object]]) -> pl.DataFrame:
    return pl.DataFrame(
        rows,
        schema={
            "event_id": pl.String,
            "user_id": pl.Int64,
            "item_id": pl.Int64,
            "event_type": pl.String,
            "ts": pl.Datetime("us"),
            "request_id": pl.String,
            "position": pl.Int32,
            "source": pl.String,
            "features": pl.String,
            "watch_frac": pl.Float64,
        },
    )


def test_examples_use_the_features_logged_at_the_impression() -> None:
    # The clip's like rate was 0.01 when user 1 saw it and 0.5 a day later for user 2.
    rows = [
        _event(
            "i1",
            1,
            7,
            "impression",
            T0,
            request_id="r1",
            position=0,
            features=json.dumps({"like_rate": 0.01, "follows_author": 1.0}),
        ),
        _event(
            "i2",
            2,
            7,
            "impression",
            T0 + timedelta(days=1),
            request_id="r2",
            position=0,
            features=json.dumps({"like_rate": 0.5}),
        ),
        _event("l1", 1, 7, "like", T0 + timedelta(minutes=1)),
    ]
    ex = build_examples(_frame(rows)).frame.sort("request_id")
    assert ex["like_rate"].to_list() == [0.01, 0.5]
    assert ex["follows_author"].to_list()[0] == 1.0
    assert ex["like"].to_list() == [1, 0]


def test_actions_before_the_impression_or_after_the_window_are_not_labels() -> None:
    rows = [
        _event("l0", 1, 7, "like", T0 - timedelta(minutes=5)),
        _event("i1", 1, 7, "impression", T0, request_id="r1", position=0, features="{}"),
        _event("s1", 1, 7, "share", T0 + timedelta(hours=30)),
        _event("v1", 1, 7, "view", T0 + timedelta(seconds=20), watch_frac=0.3),
    ]
    ex = build_examples(_frame(rows), label_window_h=24).frame
    assert ex["like"].item() == 0 and ex["share"].item() == 0
    assert ex["long_view"].item() == 0  # 30% watched is not a long view
    assert ex["relevance"].item() == 0


def test_an_action_is_credited_to_the_latest_earlier_impression_only() -> None:
    rows = [
        _event("i1", 1, 7, "impression", T0, request_id="r1", position=0, features="{}"),
        _event(
            "i2",
            1,
            7,
            "impression",
            T0 + timedelta(hours=2),
            request_id="r2",
            position=3,
            features="{}",
        ),
        _event("c1", 1, 7, "comment", T0 + timedelta(hours=2, minutes=1)),
    ]
    ex = build_examples(_frame(rows)).frame.sort("request_id")
    assert ex["comment"].to_list() == [0, 1]


def test_no_impressions_is_an_error_that_says_so() -> None:
    with pytest.raises(TrainingError, match="no logged impressions"):
        build_examples(_frame([_event("l", 1, 7, "like", T0)]))


@pytest.fixture(scope="module")
def small_world() -> World:
    return build_world(WorldConfig(n_users=60, n_clips=300, n_events=4000, seed=5))


def test_replayed_features_never_see_events_after_the_impression(small_world: World) -> None:
    """Replaying the whole log or only its first half gives the same features to the first half.

    A feature computed with anything that happened after its impression (a later like, a
    later follow, author statistics of a later moment) would differ and fail this test.
    """
    w = small_world
    ev = w.events.sort("ts")
    cut = ev["ts"][ev.height // 2]
    first = ev.filter(pl.col("ts") < cut)

    def replay(events: pl.DataFrame) -> pl.DataFrame:
        out = replay_features(ReplayTables(w.users, w.clips, w.follows, w.blocks, events))
        return out.filter(pl.col("event_type") == "impression").select("event_id", "features")

    full = replay(ev)
    half = replay(first)
    # Requests that straddle the cut are cut short in ``half``; compare whole earlier requests.
    early_req = (
        ev.filter(pl.col("event_type") == "impression")
        .group_by("request_id")
        .agg(pl.col("ts").max())
        .filter(pl.col("ts") < cut)["request_id"]
    )
    ids = ev.filter(pl.col("request_id").is_in(early_req.implode()))["event_id"]
    a = full.filter(pl.col("event_id").is_in(ids.implode())).sort("event_id")
    b = half.filter(pl.col("event_id").is_in(ids.implode())).sort("event_id")
    assert a.height == b.height > 100
    names = feature_names()
    fa = a["features"].str.json_decode().struct.unnest().select(names)
    fb = b["features"].str.json_decode().struct.unnest().select(names)
    assert fa.equals(fb)
    # And the replay did produce real, varied values.
    assert fa["views_log"].n_unique() > 5 and fa["author_credibility"].n_unique() > 1


def test_time_split_holds_out_whole_later_requests(small_world: World) -> None:
    replayed = replay_features(
        ReplayTables(
            small_world.users,
            small_world.clips,
            small_world.follows,
            small_world.blocks,
            small_world.events,
        )
    )
    ex = build_examples(replayed)
    train, later, cutoff = time_split(ex, 0.25)
    assert train.frame["req_ts"].max() < cutoff <= later.frame["req_ts"].min()  # type: ignore[operator]
    assert not set(train.frame["request_id"]) & set(later.frame["request_id"])


def test_ndcg_is_one_for_the_ideal_order_and_lower_for_the_reverse() -> None:
    rid = ["a"] * 4
    rel = np.array([3.0, 2.0, 0.0, 1.0])
    assert ndcg_at_k(rid, np.array([4.0, 3.0, 1.0, 2.0]), rel)[0] == pytest.approx(1.0)
    worse = ndcg_at_k(rid, np.array([1.0, 2.0, 4.0, 3.0]), rel)[0]
    assert worse is not None and worse < 0.7
