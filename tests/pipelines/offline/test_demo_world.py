"""The seeded demo world: reproducible, loadable into the store, and drawn from its ground truth."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from pipelines.offline.demo_world import (
    AGE_BANDS,
    MOODS,
    TEEN_BANDS,
    TOPICS,
    World,
    WorldConfig,
    WorldConfigError,
    build_world,
)
from storage.store import CLIP_COLUMNS, EVENT_COLUMNS, EVENT_TYPES, USER_COLUMNS, Store

TINY = WorldConfig(n_users=200, n_clips=1000, n_events=20_000, seed=7)


@pytest.fixture(scope="module")
def world() -> World:
    return build_world(TINY)


def _of_type(world: World, event_type: str) -> pl.DataFrame:
    return world.events.filter(pl.col("event_type") == event_type)


def test_same_seed_gives_the_same_world(world: World) -> None:
    again = build_world(TINY)
    for name in ("users", "clips", "follows", "blocks", "events"):
        assert getattr(again, name).equals(getattr(world, name)), name
    np.testing.assert_array_equal(again.user_topic_pref, world.user_topic_pref)


def test_another_seed_gives_another_world(world: World) -> None:
    other = build_world(
        WorldConfig(n_users=200, n_clips=1000, n_events=2_000, seed=8, now=TINY.now)
    )
    assert not np.array_equal(other.user_topic_pref, world.user_topic_pref)


def test_tables_load_into_a_real_store(world: World, tmp_path: Path) -> None:
    assert set(world.users.columns) == set(USER_COLUMNS)
    assert set(world.clips.columns) == set(CLIP_COLUMNS)
    assert set(world.events.columns) == set(EVENT_COLUMNS)
    store = Store(tmp_path / "x.duckdb")
    try:
        assert store.add_users(world.users) == world.users.height
        assert store.add_clips(world.clips) == world.clips.height
        assert store.add_follows(world.follows) == world.follows.height
        assert store.add_blocks(world.blocks) == world.blocks.height
        assert store.append_events(world.events) == world.events.height
        assert store.count("events") == world.events.height
        back = store.query("SELECT topics, hashtags, cameo_user_ids FROM clips LIMIT 1")
        assert back.schema["cameo_user_ids"] == pl.List(pl.Int64)
    finally:
        store.close()


def test_event_log_has_about_the_requested_rows_and_unique_ids(world: World) -> None:
    ev = world.events
    assert 0.9 * TINY.n_events <= ev.height <= TINY.n_events
    assert ev["event_id"].n_unique() == ev.height
    assert set(ev["event_type"].unique()) <= set(EVENT_TYPES)
    imp = _of_type(world, "impression")
    assert imp["request_id"].null_count() == 0
    assert set(imp["source"].unique()) == {"following", "trending", "fresh", "ann"}
    assert imp["position"].is_between(0, 9).all()
    assert (imp["pipeline"] == "demo").all()


def test_events_follow_their_clip_and_fall_in_the_period(world: World) -> None:
    created = world.clips.select("item_id", pl.col("created_at").alias("clip_created"))
    ev = world.events.join(created, on="item_id", how="left")
    assert ev["clip_created"].null_count() == 0
    assert (ev["ts"] > ev["clip_created"]).all()
    assert (ev["received_at"] == ev["ts"]).all()
    now = TINY.end
    assert ev["ts"].is_between(now - timedelta(days=TINY.days), now, closed="left").all()


def test_views_carry_watch_time_within_the_clip(world: World) -> None:
    views = _of_type(world, "view").join(world.clips.select("item_id", "duration_s"), on="item_id")
    assert views["watch_s"].null_count() == 0
    assert ((views["watch_frac"] > 0) & (views["watch_frac"] <= 1.0)).all()
    assert (views["watch_s"] <= views["duration_s"] + 0.01).all()


def test_liked_clips_are_truly_preferred_over_skipped_ones(world: World) -> None:
    def mean_affinity(df: pl.DataFrame) -> float:
        aff = world.true_affinity(df["user_id"].to_numpy(), df["item_id"].to_numpy())
        return float(aff.mean())

    liked, skipped = _of_type(world, "like"), _of_type(world, "skip")
    assert liked.height > 100 and skipped.height > 100
    assert mean_affinity(liked) > mean_affinity(skipped) + 0.2
    views = _of_type(world, "view")
    aff = world.true_affinity(views["user_id"].to_numpy(), views["item_id"].to_numpy())
    assert np.corrcoef(aff, views["watch_frac"].to_numpy())[0, 1] > 0.3


def test_reports_fall_mostly_on_unsafe_clips(world: World) -> None:
    reports = _of_type(world, "report").join(world.clips, on="item_id")
    assert reports.height > 0
    assert (reports["safety_label"] != "safe").mean() > 0.5  # type: ignore[operator]


def test_follow_events_name_the_author(world: World) -> None:
    follows = _of_type(world, "follow").join(
        world.clips.select("item_id", "author_id"), on="item_id"
    )
    assert follows.height > 0
    assert (follows["target_user_id"] == follows["author_id"]).all()


def test_social_graph_has_friends_and_popular_creators(world: World) -> None:
    f = world.follows
    mutual = f.join(
        f, left_on=["follower_id", "followee_id"], right_on=["followee_id", "follower_id"]
    )
    assert mutual.height > 0
    assert (f["follower_id"] != f["followee_id"]).all()
    followers = f.group_by("followee_id").len()["len"]
    assert followers.max() > 5 * followers.median()  # type: ignore[operator]
    assert world.blocks.height > 0


def test_clips_have_labels_remixes_and_cameos(world: World) -> None:
    clips = world.clips
    labels = set(clips["safety_label"].unique())
    assert {"safe", "borderline", "violative"} <= labels
    assert set(clips["maturity"].unique()) == {0, 1, 2}
    assert 0.4 < clips["is_generated"].mean() < 0.8  # type: ignore[operator]
    assert ((clips["duration_s"] >= 5) & (clips["duration_s"] <= 60)).all()
    remixes = clips.filter(pl.col("remix_of").is_not_null()).join(
        clips.select(pl.col("item_id").alias("remix_of"), pl.col("created_at").alias("src_at")),
        on="remix_of",
    )
    assert remixes.height > 0
    assert (remixes["created_at"] > remixes["src_at"]).all()
    assert (clips["cameo_user_ids"].list.len() > 0).any()
    assert clips["topics"].list.len().is_between(1, 2).all()
    assert clips["caption"].str.contains("#").all()
    assert clips["caption"].n_unique() <= clips.height


def test_users_include_teens_in_teen_bands(world: World) -> None:
    users = world.users
    assert users["is_teen"].sum() > 0
    assert set(users["age_band"].unique()) <= set(AGE_BANDS)
    expect = users["age_band"].is_in(list(TEEN_BANDS))
    assert (users["is_teen"] == expect).all()
    assert users["timezone"].n_unique() > 5
    assert (users["settings"] == "{}").all()


def test_teens_are_never_shown_adult_clips(world: World) -> None:
    teen_ids = world.users.filter("is_teen")["user_id"]
    shown = world.events.filter(pl.col("user_id").is_in(teen_ids.implode())).join(
        world.clips.select("item_id", "maturity"), on="item_id"
    )
    assert shown.height > 0
    assert (shown["maturity"] < 2).all()


def test_ground_truth_is_aligned_and_bounded(world: World) -> None:
    n_users, n_topics = world.user_topic_pref.shape
    assert n_users == TINY.n_users and n_topics == len(TOPICS) == len(world.topic_names)
    np.testing.assert_allclose(world.user_topic_pref.sum(axis=1), 1.0)
    assert len(world.clip_topic_idx) == len(world.item_ids) == TINY.n_clips
    assert ((world.clip_intensity >= 0) & (world.clip_intensity <= 1)).all()
    assert ((world.user_energy_pref >= -1) & (world.user_energy_pref <= 1)).all()
    assert all(-1 <= m.energy <= 1 for m in MOODS)
    aff = world.true_affinity(world.user_ids[:5], world.item_ids[:5])
    assert aff.shape == (5,) and ((aff >= 0) & (aff <= 1)).all()
    with pytest.raises(KeyError):
        world.true_affinity(np.array([10_000_000]), world.item_ids[:1])


def test_now_is_fixed_unless_given() -> None:
    cfg = WorldConfig(n_users=50, n_clips=100, n_events=500, now=datetime(2024, 3, 1))
    w = build_world(cfg)
    assert (w.events["ts"] < datetime(2024, 3, 1)).all()
    assert WorldConfig().end == WorldConfig().end


def test_invalid_config_names_every_bad_value() -> None:
    with pytest.raises(WorldConfigError, match=r"n_users=1.*teen_share=2"):
        build_world(WorldConfig(n_users=1, teen_share=2.0))
