"""The time-limit governor and usage accounting: timezones, DST, devices, skew, permissions."""

from __future__ import annotations

import itertools
import json
import logging
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import polars as pl
import pytest

from storage.store import Store
from tests.wellbeing.conftest import GENERATED, PLAIN
from wellbeing.errors import GovernorPermissionError, GovernorSettingsError
from wellbeing.governor import (
    GovernorSettings,
    Usage,
    apply_overrides,
    check_self_change,
    defaults_for,
    effective_settings,
    evaluate,
    local_day_start,
    taper_for,
)
from wellbeing.usage import UsageTracker, compute_usage

NY = "America/New_York"
_ids = itertools.count()


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


def local(tz: str, year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    """An aware UTC instant from a local wall time (fold=0 for ambiguous times)."""
    return datetime(year, month, day, hour, minute, tzinfo=ZoneInfo(tz)).astimezone(UTC)


def add_events(store: Store, rows: list[dict[str, Any]]) -> None:
    """Append events; ``at`` is the server receive time, ``ts`` defaults to it."""
    frame = pl.DataFrame(
        [
            {
                "event_id": f"e{next(_ids)}",
                "user_id": r.get("user_id", 1),
                "item_id": r.get("item_id", PLAIN),
                "event_type": r.get("type", "view"),
                "ts": r.get("ts", r["at"]).astimezone(UTC).replace(tzinfo=None),
                "received_at": r["at"].astimezone(UTC).replace(tzinfo=None),
                "session_id": r.get("session_id", "s1"),
                "request_id": r.get("request_id"),
                "watch_s": r.get("watch_s", 60.0 if r.get("type", "view") == "view" else None),
            }
            for r in rows
        ],
        schema_overrides={"request_id": pl.String, "watch_s": pl.Float64},
    )
    store.append_events(frame)


# -- settings ---------------------------------------------------------------------------------


def test_unknown_setting_is_rejected_with_the_valid_options() -> None:
    with pytest.raises(ValueError, match="valid: daily_limit_min"):
        GovernorSettings.model_validate({"daily_limt_min": 30})
    with pytest.raises(GovernorSettingsError, match="daily_limt_min"):
        apply_overrides(GovernorSettings(), {"daily_limt_min": 30})


def test_sleep_hours_must_be_hhmm_and_come_in_pairs() -> None:
    with pytest.raises(ValueError, match="'HH:MM'"):
        GovernorSettings(sleep_start="25:00", sleep_end="07:00")
    with pytest.raises(ValueError, match="set together"):
        GovernorSettings(sleep_start="22:00")
    with pytest.raises(GovernorSettingsError, match="must differ"):
        apply_overrides(GovernorSettings(), {"sleep_start": "22:00", "sleep_end": "22:00"})


def test_teens_get_limits_and_adults_get_none() -> None:
    teen = defaults_for("16-17", True)
    assert (teen.daily_limit_min, teen.break_every_min) == (60, 30)
    assert (teen.sleep_start, teen.sleep_end) == ("22:00", "07:00")
    assert defaults_for("13-15", False) == teen  # a teen age band is enough
    assert defaults_for("25-34", False) == GovernorSettings()


# -- who may change what ----------------------------------------------------------------------


def test_teen_loosening_their_own_limit_is_refused() -> None:
    ceiling = defaults_for("16-17", True)
    looser: list[dict[str, Any]] = [
        {"daily_limit_min": 90},
        {"daily_limit_min": None},
        {"sleep_start": "23:00"},
        {"sleep_start": None, "sleep_end": None},
        {"taper_start_fraction": 0.9},
    ]
    for change in looser:
        with pytest.raises(GovernorPermissionError, match="stricter"):
            check_self_change(ceiling, apply_overrides(ceiling, change), is_teen=True)
        with pytest.raises(GovernorPermissionError):
            effective_settings(ceiling, change, None, is_teen=True)
    # an adult may do all of it
    for change in looser:
        check_self_change(ceiling, apply_overrides(ceiling, change), is_teen=False)


def test_teen_tightening_their_own_limit_is_allowed() -> None:
    defaults = defaults_for("16-17", True)
    stricter = {
        "daily_limit_min": 45,
        "sleep_start": "21:30",
        "sleep_end": "07:30",
        "max_pages_per_session": 10,
        "personalized": False,
    }
    check_self_change(defaults, apply_overrides(defaults, stricter), is_teen=True)
    got = effective_settings(defaults, stricter, None, is_teen=True)
    assert (got.daily_limit_min, got.sleep_start, got.sleep_end) == (45, "21:30", "07:30")
    assert got.max_pages_per_session == 10 and got.personalized is False
    assert got.break_every_min == 30  # untouched defaults stay


def test_parent_change_is_applied_and_bounds_the_teen() -> None:
    defaults = defaults_for("13-15", True)
    parent = {"daily_limit_min": 120, "sleep_start": "23:00", "sleep_end": "07:00"}
    got = effective_settings(defaults, None, parent, is_teen=True)
    assert (got.daily_limit_min, got.sleep_start) == (120, "23:00")
    # within the parent's allowance the teen may go stricter, not looser
    assert (
        effective_settings(defaults, {"daily_limit_min": 90}, parent, is_teen=True).daily_limit_min
        == 90
    )
    with pytest.raises(GovernorPermissionError, match="daily_limit_min 120 -> 150"):
        effective_settings(defaults, {"daily_limit_min": 150}, parent, is_teen=True)


def test_parent_tightening_after_a_stored_teen_choice_wins_when_serving() -> None:
    defaults = defaults_for("16-17", True)
    teen_choice = {"daily_limit_min": 45}
    parent = {"daily_limit_min": 30}
    with pytest.raises(GovernorPermissionError):
        effective_settings(defaults, teen_choice, parent, is_teen=True)
    got = effective_settings(defaults, teen_choice, parent, is_teen=True, on_looser="ignore")
    assert got.daily_limit_min == 30


def test_parent_overrides_win_for_adults_too() -> None:
    got = effective_settings(
        GovernorSettings(), {"daily_limit_min": 300}, {"daily_limit_min": 100}, is_teen=False
    )
    assert got.daily_limit_min == 100


# -- the decision -----------------------------------------------------------------------------


def test_taper_is_monotone_and_reaches_one_at_the_limit() -> None:
    settings = GovernorSettings(daily_limit_min=60, session_limit_min=40, taper_start_fraction=0.75)
    tapers = [
        taper_for(settings, Usage(seconds_today=s, session_seconds=s / 2))
        for s in range(0, 3601, 30)
    ]
    assert all(b >= a for a, b in itertools.pairwise(tapers))
    assert tapers[0] == 0.0 and tapers[-1] == 1.0
    assert taper_for(settings, Usage(seconds_today=0.75 * 3600)) == 0.0
    assert taper_for(settings, Usage(seconds_today=0.875 * 3600)) == pytest.approx(0.5)
    # the tightest budget drives it: the session is 90% used although the day is only 10%
    assert taper_for(settings, Usage(seconds_today=360, session_seconds=0.9 * 2400)) == (
        pytest.approx(0.6)
    )
    assert taper_for(GovernorSettings(), Usage(seconds_today=10**6)) == 0.0


def test_sleep_window_crossing_midnight() -> None:
    s = GovernorSettings(sleep_start="22:00", sleep_end="07:00")
    london = "Europe/London"
    at = {
        (21, 59): "ok",
        (22, 0): "limit_reached",
        (23, 59): "limit_reached",
        (0, 0): "limit_reached",
        (3, 0): "limit_reached",
        (6, 59): "limit_reached",
        (7, 0): "ok",
    }
    for (h, m), state in at.items():
        d = evaluate(s, Usage(), now_utc=local(london, 2026, 1, 10, h, m), timezone=london)
        assert d.state == state, (h, m)
        assert d.reason == ("sleep_hours" if state != "ok" else None)
    d = evaluate(s, Usage(), now_utc=local(london, 2026, 1, 10, 23, 0), timezone=london)
    assert d.resumes_at == local(london, 2026, 1, 11, 7, 0) and d.minutes_left == 0.0
    before = evaluate(s, Usage(), now_utc=local(london, 2026, 1, 10, 21, 30), timezone=london)
    assert before.minutes_left == pytest.approx(30.0)


def test_sleep_hours_follow_local_wall_time_across_dst() -> None:
    s = defaults_for("16-17", True)
    # spring forward: 07:00 EDT is 11:00 UTC (a fixed EST offset would say 12:00)
    assert (
        evaluate(s, Usage(), now_utc=utc(2026, 3, 8, 10, 59), timezone=NY).reason == "sleep_hours"
    )
    assert evaluate(s, Usage(), now_utc=utc(2026, 3, 8, 11, 0), timezone=NY).state == "ok"
    night = evaluate(s, Usage(), now_utc=utc(2026, 3, 8, 6, 0), timezone=NY)  # 01:00 EST
    assert night.resumes_at == utc(2026, 3, 8, 11, 0)
    # fall back: 07:00 EST is 12:00 UTC
    assert evaluate(s, Usage(), now_utc=utc(2026, 11, 1, 11, 59), timezone=NY).state == (
        "limit_reached"
    )
    assert evaluate(s, Usage(), now_utc=utc(2026, 11, 1, 12, 0), timezone=NY).state == "ok"


def test_limits_break_page_cap_and_generated_cap() -> None:
    s = GovernorSettings(
        daily_limit_min=60, break_every_min=30, max_pages_per_session=5, max_generated_per_day=3
    )
    now = utc(2026, 1, 10, 12)
    ok = evaluate(s, Usage(seconds_today=600), now_utc=now, timezone="UTC")
    assert (ok.state, ok.minutes_left, ok.allow_generated) == ("ok", 50.0, True)
    brk = evaluate(
        s, Usage(seconds_today=1900, seconds_since_break=1800), now_utc=now, timezone="UTC"
    )
    assert (brk.state, brk.reason) == ("break_suggested", "break_reminder")
    day = evaluate(s, Usage(seconds_today=3600), now_utc=now, timezone="UTC")
    assert (day.state, day.reason, day.taper) == ("limit_reached", "daily_limit", 1.0)
    assert day.resumes_at == utc(2026, 1, 11)
    pages = evaluate(s, Usage(pages_this_session=5, generated_today=3), now_utc=now, timezone="UTC")
    assert (pages.reason, pages.allow_generated) == ("page_cap", False)
    json.dumps(day.to_dict())


def test_unknown_timezone_falls_back_to_utc_with_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    s = GovernorSettings(sleep_start="22:00", sleep_end="07:00")
    with caplog.at_level(logging.WARNING, logger="wellbeing.governor"):
        d = evaluate(s, Usage(), now_utc=utc(2026, 1, 10, 23), timezone="Mars/Olympus_Mons")
    assert d.reason == "sleep_hours"
    assert "Mars/Olympus_Mons" in caplog.text and "UTC" in caplog.text


# -- usage from the event log -----------------------------------------------------------------


def test_same_utc_instant_falls_on_different_local_days(store: Store) -> None:
    add_events(store, [{"at": utc(2026, 1, 15, 3), "watch_s": 300.0}])
    add_events(store, [{"at": utc(2026, 1, 15, 12), "watch_s": 600.0}])
    now = utc(2026, 1, 15, 13)
    today = {
        tz: compute_usage(store, 1, now_utc=now, timezone=tz).seconds_today
        for tz in ("UTC", "Asia/Tokyo", "America/Los_Angeles", "Pacific/Kiritimati")
    }
    # Tokyo: both are on Jan 15; LA: 03:00 UTC was Jan 14; Kiritimati (UTC+14): now is Jan 16
    assert today == {
        "UTC": 900.0,
        "Asia/Tokyo": 900.0,
        "America/Los_Angeles": 600.0,
        "Pacific/Kiritimati": 600.0,
    }
    limit = GovernorSettings(daily_limit_min=12)
    for tz, state in (("Asia/Tokyo", "limit_reached"), ("America/Los_Angeles", "ok")):
        usage = compute_usage(store, 1, now_utc=now, timezone=tz)
        assert evaluate(limit, usage, now_utc=now, timezone=tz).state == state


def test_midnight_rollover_resets_daily_usage_but_not_the_session(store: Store) -> None:
    berlin = "Europe/Berlin"
    add_events(
        store,
        [
            {"at": local(berlin, 2026, 2, 3, 23, 40), "watch_s": 500.0},
            {"at": local(berlin, 2026, 2, 3, 23, 50), "watch_s": 300.0},
        ],
    )
    late = local(berlin, 2026, 2, 3, 23, 59)
    after_midnight = local(berlin, 2026, 2, 4, 0, 5)
    before = compute_usage(store, 1, now_utc=late, timezone=berlin)
    after = compute_usage(store, 1, now_utc=after_midnight, timezone=berlin)
    assert before.seconds_today == 800.0
    assert after.seconds_today == 0.0 and after.session_seconds == 800.0
    limit = GovernorSettings(daily_limit_min=10)
    stopped = evaluate(limit, before, now_utc=late, timezone=berlin)
    assert (stopped.state, stopped.resumes_at) == ("limit_reached", local(berlin, 2026, 2, 4))
    assert evaluate(limit, after, now_utc=after_midnight, timezone=berlin).state == "ok"


def test_spring_forward_day_is_23_hours(store: Store) -> None:
    assert local_day_start(utc(2026, 3, 9, 3, 59), ZoneInfo(NY)) == utc(2026, 3, 8, 5)
    add_events(
        store,
        [
            {"at": utc(2026, 3, 8, 4, 30), "watch_s": 1000.0},  # 23:30 EST on Mar 7
            {"at": utc(2026, 3, 8, 5, 30), "watch_s": 120.0},  # 00:30 EST on Mar 8
            {"at": utc(2026, 3, 9, 3, 30), "watch_s": 60.0},  # 23:30 EDT on Mar 8
        ],
    )
    assert (
        compute_usage(store, 1, now_utc=utc(2026, 3, 9, 3, 59), timezone=NY).seconds_today == 180.0
    )
    # 04:30 UTC is already 00:30 EDT on Mar 9 (a fixed EST offset would still say Mar 8)
    assert compute_usage(store, 1, now_utc=utc(2026, 3, 9, 4, 30), timezone=NY).seconds_today == 0.0


def test_fall_back_day_is_25_hours(store: Store) -> None:
    add_events(
        store,
        [
            {"at": utc(2026, 11, 1, 3, 30), "watch_s": 1000.0},  # 23:30 EDT on Oct 31
            {"at": utc(2026, 11, 1, 4, 30), "watch_s": 100.0},  # 00:30 EDT
            {"at": utc(2026, 11, 1, 5, 30), "watch_s": 10.0},  # 01:30 EDT
            {"at": utc(2026, 11, 1, 6, 30), "watch_s": 20.0},  # 01:30 EST, the repeated hour
            {"at": utc(2026, 11, 2, 4, 30), "watch_s": 1.0},  # 23:30 EST on Nov 1
        ],
    )
    late = compute_usage(store, 1, now_utc=utc(2026, 11, 2, 4, 50), timezone=NY)
    assert late.seconds_today == 131.0
    assert (
        compute_usage(store, 1, now_utc=utc(2026, 11, 2, 5, 10), timezone=NY).seconds_today == 0.0
    )


def test_two_devices_at_once_add_up_in_one_session(store: Store) -> None:
    start = utc(2026, 4, 1, 18)
    add_events(store, [{"at": start - timedelta(hours=3), "watch_s": 999.0, "session_id": "old"}])
    rows: list[dict[str, Any]] = []
    for i in range(10):
        for device, offset in (("phone", 0), ("tablet", 20)):
            at = start + timedelta(seconds=60 * i + offset)
            rows.append({"at": at, "watch_s": 45.0, "session_id": device})
            if i % 5 == 0:
                page = f"{device}-page-{i}"
                rows += [
                    {"at": at, "type": "impression", "request_id": page, "session_id": device}
                    for _ in range(3)
                ]
    add_events(store, rows)
    u = compute_usage(store, 1, now_utc=start + timedelta(minutes=12), timezone="UTC")
    assert u.seconds_today == 999.0 + 20 * 45.0
    assert u.session_seconds == 20 * 45.0  # one session across both devices; the old one is over
    assert u.pages_this_session == 4
    assert u.seconds_since_break == 20 * 45.0


def test_session_gap_is_measured_across_devices(store: Store) -> None:
    t0 = utc(2026, 4, 2, 9)
    add_events(
        store,
        [
            {"at": t0, "session_id": "phone"},
            {"at": t0 + timedelta(minutes=20), "session_id": "laptop"},
            {"at": t0 + timedelta(minutes=40), "session_id": "phone"},
        ],
    )
    u = compute_usage(store, 1, now_utc=t0 + timedelta(minutes=41), timezone="UTC")
    assert u.session_seconds == 180.0  # the phone's own 40-minute gap was filled by the laptop
    later = compute_usage(store, 1, now_utc=t0 + timedelta(minutes=75), timezone="UTC")
    assert later.session_seconds == 0.0 and later.seconds_today == 180.0


def test_client_clock_skew_does_not_change_usage(store: Store) -> None:
    now = utc(2026, 5, 5, 12)
    at = now - timedelta(minutes=2)
    add_events(
        store,
        [
            {"at": at, "ts": utc(2099, 1, 1), "watch_s": 100.0, "user_id": 1},
            {"at": at, "ts": utc(1970, 1, 2), "watch_s": 50.0, "user_id": 1},
            {"at": at, "watch_s": 100.0, "user_id": 2},
            {"at": at, "watch_s": 50.0, "user_id": 2},
            # claims to be from today, but the server got it yesterday
            {"at": now - timedelta(days=1), "ts": now, "watch_s": 500.0, "user_id": 3},
        ],
    )
    skewed = compute_usage(store, 1, now_utc=now, timezone="UTC")
    honest = compute_usage(store, 2, now_utc=now, timezone="UTC")
    assert skewed == honest and skewed.seconds_today == 150.0
    assert compute_usage(store, 3, now_utc=now, timezone="UTC").seconds_today == 0.0


def test_break_and_generated_counts(store: Store) -> None:
    t0 = utc(2026, 6, 1, 8)
    add_events(
        store,
        [
            {"at": t0, "watch_s": 400.0},
            {"at": t0 + timedelta(minutes=10), "watch_s": 70.0},  # after a 10-minute break
            {"at": t0 + timedelta(minutes=11), "watch_s": 30.0},
            {
                "at": t0 + timedelta(minutes=11),
                "type": "impression",
                "item_id": GENERATED,
                "request_id": "r1",
            },
            {
                "at": t0 + timedelta(minutes=11),
                "type": "impression",
                "item_id": PLAIN,
                "request_id": "r1",
            },
            {
                "at": t0 - timedelta(days=2),
                "type": "impression",
                "item_id": GENERATED,
                "request_id": "r0",
            },
        ],
    )
    u = compute_usage(store, 1, now_utc=t0 + timedelta(minutes=12), timezone="UTC")
    assert (u.seconds_today, u.seconds_since_break, u.generated_today) == (500.0, 100.0, 1)
    idle = compute_usage(store, 1, now_utc=t0 + timedelta(minutes=17), timezone="UTC")
    assert idle.seconds_since_break == 0.0  # five idle minutes are a break


def test_tracker_agrees_with_the_event_log(store: Store) -> None:
    tz = NY
    t0 = utc(2026, 3, 8, 4, 40)  # 23:40 EST, just before a DST-day midnight
    add_events(store, [{"at": t0, "watch_s": 100.0}])
    tracker = UsageTracker(store)
    tracker.record_view(1, 100.0, t0)  # not seeded yet: ignored, seeding reads the store
    assert tracker.usage(1, now_utc=t0, timezone=tz) == compute_usage(
        store, 1, now_utc=t0, timezone=tz
    )
    steps = [
        (timedelta(minutes=25), "view", 50.0, None),  # 00:05 on the new local day
        (timedelta(minutes=26), "page", 0.0, "r1"),
        (timedelta(minutes=27), "view", 20.0, None),
        (timedelta(minutes=27), "page", 0.0, "r1"),  # the same page again
        (timedelta(minutes=90), "page", 0.0, "r2"),  # a new session
        (timedelta(minutes=91), "view", 30.0, None),
    ]
    for delta, kind, watch, request in steps:
        at = t0 + delta
        if kind == "view":
            add_events(store, [{"at": at, "watch_s": watch}])
            tracker.record_view(1, watch, at)
        else:
            add_events(
                store,
                [{"at": at, "type": "impression", "item_id": GENERATED, "request_id": request}],
            )
            tracker.record_page(1, str(request), at, 1)
        for later in (timedelta(0), timedelta(minutes=6), timedelta(minutes=40)):
            now = at + later
            assert tracker.usage(1, now_utc=now, timezone=tz) == compute_usage(
                store, 1, now_utc=now, timezone=tz
            ), (delta, later)


def test_tracker_without_a_store_starts_from_zero() -> None:
    tracker = UsageTracker()
    t0 = utc(2026, 7, 1, 10)
    tracker.record_view(5, 120.0, t0)
    tracker.record_page(5, "a", t0, 2)
    u = tracker.usage(5, now_utc=t0 + timedelta(minutes=1), timezone="UTC")
    assert u == Usage(
        seconds_today=120.0,
        session_seconds=120.0,
        seconds_since_break=120.0,
        pages_this_session=1,
        generated_today=2,
    )


def test_serving_keeps_the_stricter_sleep_hours_and_personalization() -> None:
    defaults = defaults_for("16-17", True)
    parent = {"sleep_start": "21:00", "sleep_end": "07:00", "personalized": False}
    stored = {"sleep_start": "22:00", "personalized": True, "daily_limit_min": 40}
    with pytest.raises(GovernorPermissionError, match="sleep hours 21:00-07:00 -> 22:00-07:00"):
        effective_settings(defaults, stored, parent, is_teen=True)
    got = effective_settings(defaults, stored, parent, is_teen=True, on_looser="ignore")
    assert (got.sleep_start, got.sleep_end, got.personalized) == ("21:00", "07:00", False)
    assert got.daily_limit_min == 40  # the stricter part of the teen's choice still applies


def test_tracker_rereads_the_store_after_max_age_so_other_replicas_views_count(
    store: Store,
) -> None:
    t0 = utc(2026, 7, 1, 10)
    add_events(store, [{"at": t0, "watch_s": 60.0}])
    fresh = UsageTracker(store, max_age_s=0.0)  # re-read on every request
    cached = UsageTracker(store)  # one replica: never re-read
    assert fresh.usage(1, now_utc=t0, timezone="UTC").seconds_today == 60.0
    assert cached.usage(1, now_utc=t0, timezone="UTC").seconds_today == 60.0
    # Another replica serves a view: it lands in the store, not in these trackers' memory.
    add_events(store, [{"at": t0 + timedelta(minutes=1), "watch_s": 300.0}])
    later = t0 + timedelta(minutes=2)
    assert fresh.usage(1, now_utc=later, timezone="UTC").seconds_today == 360.0
    assert cached.usage(1, now_utc=later, timezone="UTC").seconds_today == 60.0
