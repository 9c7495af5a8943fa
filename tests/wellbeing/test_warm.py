"""Bulk warm-up of the wellbeing state: one scan serves every user's first page."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from typing import Any

import polars as pl
import pytest

from storage.store import Store
from tests.wellbeing.conftest import GENERATED, PLAIN
from wellbeing.governor import Usage
from wellbeing.repository import WellbeingRepository
from wellbeing.surveys import SurveyDraw
from wellbeing.usage import UsageTracker, compute_usage, usage_snapshot, usage_snapshots

NOW = datetime(2026, 3, 8, 15, 0, tzinfo=UTC)
ZONES = {1: "UTC", 2: "America/New_York", 3: "Asia/Tokyo", 4: "Europe/Berlin", 5: "UTC"}
_ids = itertools.count()


def _events(store: Store, rows: list[tuple[int, str, datetime, float | None, str | None]]) -> None:
    """Append ``(user_id, event_type, received_at, watch_s, request_id)`` events."""
    store.append_events(
        pl.DataFrame(
            [
                {
                    "event_id": f"w{next(_ids)}",
                    "user_id": u,
                    "item_id": GENERATED if et == "impression" else PLAIN,
                    "event_type": et,
                    "ts": at.replace(tzinfo=None),
                    "received_at": at.replace(tzinfo=None),
                    "session_id": "s",
                    "request_id": rid,
                    "watch_s": watch,
                }
                for u, et, at, watch, rid in rows
            ],
            schema_overrides={"request_id": pl.String, "watch_s": pl.Float64},
        )
    )


def _world(store: Store) -> None:
    """Five users: local days, sessions, breaks and generated impressions differ; user 5 has
    no event in the window (one three days old)."""
    rows: list[tuple[int, str, datetime, float | None, str | None]] = []
    for u in (1, 2, 3, 4):
        for k in range(6):
            at = NOW - timedelta(hours=20) + timedelta(minutes=37 * k * u)
            rows.append((u, "view", at, 30.0 * k + u, None))
            rows.append((u, "impression", at, None, f"r{u}-{k // 2}"))
    rows.append((1, "view", NOW - timedelta(minutes=3), 45.0, None))  # an open session
    rows.append((5, "view", NOW - timedelta(days=3), 99.0, None))
    _events(store, rows)


def test_bulk_usage_is_the_per_user_usage(store: Store) -> None:
    _world(store)
    bulk = usage_snapshots(store, ZONES, now_utc=NOW)
    assert set(bulk) == set(ZONES)
    for u, tz in ZONES.items():
        assert bulk[u] == usage_snapshot(store, u, now_utc=NOW, timezone=tz), u
    assert bulk[1].usage.session_seconds > 0 and bulk[4].usage.generated_today > 0
    assert bulk[5].usage == Usage() and bulk[5].last_event_at is None


def test_a_tracker_seeded_in_bulk_needs_no_query_per_user(store: Store) -> None:
    _world(store)
    tracker = UsageTracker(store)
    assert tracker.seed_all(ZONES, now_utc=NOW) == 4  # user 5 has nothing in the window
    store.close()  # from here on a per-user query would fail
    for u, tz in ZONES.items():
        assert 1 in tracker and 99 in tracker
        tracker.usage(u, now_utc=NOW, timezone=tz)
    # a user never seen before starts from zero, and their events are counted
    assert tracker.usage(99, now_utc=NOW, timezone="UTC") == Usage()
    tracker.record_view(99, 120.0, NOW + timedelta(seconds=5))
    assert tracker.usage(99, now_utc=NOW + timedelta(seconds=6), timezone="UTC").seconds_today == (
        120.0
    )


def test_seeded_in_bulk_the_tracker_follows_the_log(store: Store) -> None:
    _world(store)
    tracker = UsageTracker(store)
    tracker.seed_all(ZONES, now_utc=NOW)
    later = NOW + timedelta(minutes=2)
    _events(store, [(5, "view", later, 200.0, None), (1, "view", later, 10.0, None)])
    tracker.record_view(5, 200.0, later)
    tracker.record_view(1, 10.0, later)
    for u in (1, 5):
        assert tracker.usage(u, now_utc=later, timezone=ZONES[u]) == compute_usage(
            store, u, now_utc=later, timezone=ZONES[u]
        ), u
    # a forgotten user is read from the store again, events meanwhile are not double counted
    tracker.forget(1)
    assert 1 not in tracker
    tracker.record_view(1, 10.0, later)  # ignored: the store read below has it
    assert tracker.usage(1, now_utc=later, timezone="UTC") == compute_usage(
        store, 1, now_utc=later, timezone="UTC"
    )


def test_bulk_repository_reads_match_per_user_reads(store: Store) -> None:
    _world(store)
    repo = WellbeingRepository(store)
    store.add_users(pl.DataFrame({"user_id": [1, 2, 3, 4, 5]}))
    repo.save_overrides(2, "user", {"daily_limit_min": 30}, updated_by=2)
    repo.save_overrides(2, "parent", {"daily_limit_min": 20}, updated_by=9)
    for u, at in ((1, NOW - timedelta(days=2)), (1, NOW - timedelta(hours=1)), (3, NOW)):
        draw = SurveyDraw(
            user_id=u,
            question_key="worth_time",
            kind="periodic",
            stratum="light",
            page_probability=0.1,
            question_probability=1.0,
            inclusion_probability=0.1,
            drawn_at=at,
        )
        repo.insert_prompt(f"s{next(_ids)}", draw, request_id=None, session_id=None)
    overrides, history = repo.all_overrides(), repo.survey_histories()
    activity = repo.weekly_activities(NOW)
    assert set(overrides) == {2} and set(history) == {1, 3}
    assert set(activity) == {1, 2, 3, 4, 5}
    for u in (1, 2, 3, 4, 5):
        assert overrides.get(u, {}) == repo.overrides(u)
        assert activity[u] == repo.weekly_activity(u, NOW)
        if u in history:
            assert history[u] == repo.survey_history(u)
    assert history[1].last_survey_at == NOW - timedelta(hours=1)
    assert activity[1].minutes > 0 and activity[1].pages == 3
    # a user the users table does not know still gets their events counted
    assert repo.weekly_activity(42, NOW).created_at is None


def test_a_warm_engine_serves_first_pages_without_per_user_queries(engine: Any) -> None:
    svc = engine.wellbeing
    assert svc.governor.tracker.seeded_all_at is not None and svc.surveys.warmed_at is not None
    calls: list[str] = []

    def spy(name: str, fn: Any) -> Any:
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            calls.append(name)
            return fn(*args, **kwargs)

        return wrapped

    repo = svc.repo
    for name in ("overrides", "survey_history", "weekly_activity"):
        setattr(repo, name, spy(name, getattr(repo, name)))
    tracker = svc.governor.tracker
    tracker.seed = spy("seed", tracker.seed)
    users = sorted(engine.state.profiles.users)[:8]
    drawn = 0
    for u in users:
        page = engine.feed(u, limit=10)
        assert page.governor is not None
        drawn += page.survey is not None
    # only a page that drew a survey card reads back that user's survey history (it wrote it)
    assert calls == ["survey_history"] * drawn
    # a change of the user's own limits is read back at once (a write path may query)
    svc.governor.update_own(users[0], {"daily_limit_min": 15})
    assert svc.governor.settings_for(users[0]).daily_limit_min == 15


def test_refresh_reads_what_another_replica_wrote(engine: Any) -> None:
    svc = engine.wellbeing
    svc.settings.usage_max_age_s = 0.0
    u = sorted(engine.state.profiles.users)[0]
    now = datetime.now(UTC)
    tz = svc.governor.profile(u).timezone
    before = svc.governor.tracker.usage(u, now_utc=now, timezone=tz).seconds_today
    # another replica committed a view: this engine's listeners never saw it
    engine.store.append_events(
        pl.DataFrame(
            [
                {
                    "event_id": f"other-replica-{next(_ids)}",
                    "user_id": u,
                    "item_id": int(engine.state.catalogue.item_ids[0]),
                    "event_type": "view",
                    "ts": now.replace(tzinfo=None),
                    "received_at": now.replace(tzinfo=None),
                    "session_id": "other",
                    "watch_s": 300.0,
                }
            ]
        )
    )
    out = svc.refresh(now + timedelta(seconds=1))
    assert "users_with_recent_usage" in out  # the log holds an event this engine did not write
    after = svc.governor.tracker.usage(u, now_utc=now + timedelta(seconds=1), timezone=tz)
    assert after.seconds_today == pytest.approx(before + 300.0)


def test_refresh_skips_the_re_read_when_only_this_engine_wrote(engine: Any) -> None:
    svc = engine.wellbeing
    svc.settings.usage_max_age_s = 0.0
    u = sorted(engine.state.profiles.users)[0]
    now = datetime.now(UTC).replace(tzinfo=None)
    engine.ingest_events(
        pl.DataFrame(
            [
                {
                    "event_id": f"this-engine-{next(_ids)}",
                    "user_id": u,
                    "item_id": int(engine.state.catalogue.item_ids[0]),
                    "event_type": "view",
                    "ts": now,
                    "received_at": now,
                    "watch_s": 30.0,
                }
            ]
        )
    )
    engine.feed(u, limit=5)  # impressions go through the engine's writer
    engine.writer.flush()
    assert not svc.governor.others_wrote()
    assert "users_with_recent_usage" not in svc.refresh()
