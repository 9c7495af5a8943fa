"""The wellbeing wiring inside real feeds: governor on every page, limits, taper, surveys, head."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import polars as pl
import pytest

from ranking.overrides import RequestOverrides
from ranking.pipeline import FeedQuery
from wellbeing.governor import GovernorSettings, Usage, evaluate
from wellbeing.satisfaction import SAT_CLIP_FEATURES, SAT_SESSION_FEATURES, SatisfactionModel
from wellbeing.scorers.governor_taper import GovernorTaperScorer
from wellbeing.scorers.satisfaction_head import SatisfactionHeadScorer
from wellbeing.service import GovernorView, SatisfactionService
from wellbeing.surveys import SamplingPolicy

_ids = itertools.count()


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def _user(engine: Any, *, teen: bool) -> int:
    st = engine.state
    users = [u for u, p in st.profiles.by_user.items() if bool(p.get("is_teen")) == teen]
    return int(
        max(
            users, key=lambda u: len(st.activity.history[u].rows) if u in st.activity.history else 0
        )
    )


def _views(
    engine: Any, user_id: int, minutes: float, *, at: datetime, n: int = 4, **kw: Any
) -> None:
    """Commit ``n`` view events adding up to ``minutes``, received at ``at``."""
    items = engine.state.catalogue.item_ids[:n].tolist()
    rows = [
        {
            "event_id": f"wb-test-{next(_ids)}",
            "user_id": user_id,
            "item_id": int(i),
            "event_type": "view",
            "ts": kw.get("ts", at),
            "received_at": at - timedelta(seconds=n - k),
            "session_id": kw.get("session_id", "device-a"),
            "watch_s": minutes * 60.0 / n,
            "watch_frac": 0.9,
        }
        for k, i in enumerate(items)
    ]
    engine.ingest_events(
        pl.DataFrame(
            rows, schema_overrides={"ts": pl.Datetime("us"), "received_at": pl.Datetime("us")}
        )
    )


def test_every_page_carries_the_governor(engine: Any) -> None:
    uid = _user(engine, teen=False)
    page = engine.feed(uid, limit=5)
    gov = page.governor
    assert gov is not None and gov.state == "ok"
    assert gov.minutes_used >= 0
    assert page.items and page.stop_card is None


def test_daily_limit_gives_an_empty_page_and_a_stop_card(engine: Any) -> None:
    uid = _user(engine, teen=False)
    engine.wellbeing.governor.update_own(uid, {"daily_limit_min": 30})
    now = _now()
    first = engine.feed(uid, limit=5, now=now)
    assert first.items and first.governor.minutes_left <= 30
    _views(engine, uid, 31, at=now)
    page = engine.feed(uid, limit=5, now=now + timedelta(seconds=5))
    assert page.items == [] and page.next_cursor is None
    assert page.governor.state == "limit_reached"
    assert page.governor.minutes_left == 0
    assert page.stop_card.reason == "daily_limit"
    assert page.stop_card.resumes_at


def test_two_devices_watching_at_once_share_one_budget(engine: Any) -> None:
    uid = _user(engine, teen=False)
    engine.wellbeing.governor.update_own(uid, {"session_limit_min": 20})
    now = _now()
    engine.feed(uid, limit=5, now=now)  # the tracker knows the user from here on
    _views(engine, uid, 12, at=now, session_id="phone")
    assert engine.feed(uid, limit=5, now=now).governor.state == "ok"
    _views(engine, uid, 12, at=now + timedelta(seconds=10), session_id="tablet")
    page = engine.feed(uid, limit=5, now=now + timedelta(seconds=11))
    assert page.governor.state == "limit_reached"
    assert page.stop_card.reason == "session_limit"


def test_break_reminder_keeps_serving_with_a_message(engine: Any) -> None:
    uid = _user(engine, teen=False)
    engine.wellbeing.governor.update_own(uid, {"break_every_min": 10})
    now = _now()
    engine.feed(uid, limit=5, now=now)
    _views(engine, uid, 11, at=now)
    page = engine.feed(uid, limit=5, now=now + timedelta(seconds=5))
    assert page.items and page.stop_card is None
    assert page.governor.state == "break_suggested"
    assert "break" in page.governor.message
    rested = engine.feed(uid, limit=5, now=now + timedelta(minutes=6))  # a 5-minute gap
    assert rested.governor.state == "ok"


def test_sleep_hours_follow_the_teens_own_timezone(engine: Any) -> None:
    uid = _user(engine, teen=True)
    tz = ZoneInfo(engine.state.profiles.by_user[uid]["timezone"])
    day = datetime.now(tz).date()
    late = datetime(day.year, day.month, day.day, 23, 30, tzinfo=tz).astimezone(UTC)
    noon = datetime(day.year, day.month, day.day, 12, 0, tzinfo=tz).astimezone(UTC)
    asleep = engine.feed(uid, limit=5, now=late.replace(tzinfo=None))
    assert asleep.items == []
    assert asleep.stop_card.reason == "sleep_hours"
    resumes = asleep.stop_card.resumes_at
    assert resumes is not None
    assert resumes.astimezone(tz).hour == 7
    awake = engine.feed(uid, limit=5, now=noon.replace(tzinfo=None))
    assert awake.stop_card is None or awake.stop_card.reason != "sleep_hours"
    assert awake.governor.reason != "sleep_hours"


def test_daily_budget_resets_at_local_midnight_on_a_25_hour_day(engine: Any) -> None:
    ny = "America/New_York"
    uid = next(
        u
        for u, p in sorted(engine.state.profiles.by_user.items())
        if p.get("timezone") == ny and not p.get("is_teen")
    )
    engine.wellbeing.governor.update_own(uid, {"daily_limit_min": 30})
    tz = ZoneInfo(ny)

    def utc(y: int, mo: int, d: int, h: int, mi: int, fold: int = 0) -> datetime:
        local = datetime(y, mo, d, h, mi, tzinfo=tz, fold=fold)
        return local.astimezone(UTC).replace(tzinfo=None)

    _views(engine, uid, 31, at=utc(2025, 11, 1, 23, 40))  # Saturday night, EDT
    late = engine.feed(uid, limit=5, now=utc(2025, 11, 1, 23, 45))
    assert late.stop_card.reason == "daily_limit"
    assert late.stop_card.resumes_at == datetime(2025, 11, 2, 4, 0, tzinfo=UTC)  # local midnight
    after_midnight = engine.feed(uid, limit=5, now=utc(2025, 11, 2, 0, 10))
    assert after_midnight.governor.state == "ok"
    assert after_midnight.items
    # Clocks fall back at 02:00; watching in the repeated hour still counts for that day.
    _views(engine, uid, 31, at=utc(2025, 11, 2, 1, 30, fold=1))
    night = engine.feed(uid, limit=5, now=utc(2025, 11, 2, 23, 30))  # 24.5 h after midnight
    assert night.governor.reason == "daily_limit"


def test_page_cap_holds_across_cursors_and_fresh_sessions(engine: Any) -> None:
    uid = _user(engine, teen=False)
    engine.wellbeing.governor.update_own(uid, {"max_pages_per_session": 2})
    p1 = engine.feed(uid, limit=4)
    p2 = engine.feed(uid, limit=4, cursor=p1.next_cursor)
    assert p1.items and p2.items
    p3 = engine.feed(uid, limit=4, cursor=p2.next_cursor)
    assert p3.items == [] and p3.stop_card.reason == "page_cap"
    fresh = engine.feed(uid, limit=4)  # dropping the cursor does not start a new session
    assert fresh.items == [] and fresh.governor.state == "limit_reached"


def test_generated_clip_cap_is_counted_per_day(engine: Any) -> None:
    uid = _user(engine, teen=False)
    engine.wellbeing.governor.update_own(uid, {"max_generated_per_day": 2})
    gen = [i.is_generated for p in range(4) for i in engine.feed(uid, limit=10).items]
    assert sum(gen) <= 2
    assert len(gen) > 2


def _view(taper_used_s: float) -> GovernorView:
    settings = GovernorSettings(daily_limit_min=60, taper_start_fraction=0.5)
    usage = Usage(seconds_today=taper_used_s)
    decision = evaluate(settings, usage, now_utc=datetime(2025, 6, 2, 12), timezone="UTC")
    return GovernorView(decision, settings, usage)


def test_taper_lifts_calm_and_connected_clips_as_the_budget_runs_out() -> None:
    cands = pl.DataFrame(
        {
            "item_id": [1, 2, 3],
            "score": [1.0, 0.8, 0.6],
            "intensity": [0.95, 0.1, 0.5],
            "follows_author": [0.0, 0.0, 1.0],
        }
    )
    scorer = GovernorTaperScorer(strength=1.0)
    fresh = FeedQuery(user_id=1, limit=3, now=datetime(2025, 6, 2), session_id="s")
    fresh.context.put(_view(10 * 60))
    assert np.array_equal(scorer.score(fresh, cands), cands["score"].to_numpy())
    tired = FeedQuery(user_id=1, limit=3, now=datetime(2025, 6, 2), session_id="s")
    tired.context.put(_view(55 * 60))
    tapered = scorer.score(tired, cands)
    assert np.argsort(-tapered).tolist()[0] == 1  # the calm clip now leads
    gain = tapered - cands["score"].to_numpy()
    assert gain[0] < 0 and gain[1] > 0 and gain[2] > 0
    off = FeedQuery(
        user_id=1,
        limit=3,
        now=datetime(2025, 6, 2),
        session_id="s",
        overrides=RequestOverrides(governor_taper=0.0),
    )
    off.context.put(_view(55 * 60))
    assert np.array_equal(scorer.score(off, cands), cands["score"].to_numpy())


def _fitted_model(rng: np.random.Generator) -> SatisfactionModel:
    n = 400
    data = {c: rng.random(n) for c in (*SAT_CLIP_FEATURES, *SAT_SESSION_FEATURES)}
    frame = pl.DataFrame(data)
    answers = np.clip(3.0 + 2.5 * (0.5 - data["intensity"]) + rng.normal(0, 0.3, n), 1, 5)
    return SatisfactionModel().fit(frame, answers)


def test_satisfaction_head_adds_weight_times_predicted_satisfaction(engine: Any) -> None:
    model = _fitted_model(np.random.default_rng(0))
    assert model.coefficients()["intensity"] < 0
    svc = SatisfactionService(engine.wellbeing.repo)
    svc.set_model(model)
    cands = pl.DataFrame({"item_id": [1, 2], "score": [1.0, 0.9], "intensity": [0.9, 0.1]})
    scorer = SatisfactionHeadScorer(svc, weight=0.0)
    q = FeedQuery(user_id=1, limit=2, now=datetime(2025, 6, 2), session_id="s")
    assert np.array_equal(scorer.score(q, cands), [1.0, 0.9])
    q.overrides = RequestOverrides(satisfaction_weight=2.0)
    boosted = scorer.score(q, cands)
    head = model.clip_head(cands)
    np.testing.assert_allclose(boosted, [1.0, 0.9] + 2.0 * 0.05 * head)
    assert boosted[1] > boosted[0]
    # Served through the real pipeline the head is one of the home feed's scorers.
    engine.wellbeing.satisfaction.set_model(model)
    page = engine.feed(
        _user(engine, teen=False), limit=5, overrides=RequestOverrides(satisfaction_weight=1.0)
    )
    assert page.items and "s.satisfaction_head" in page.diagnostics.timings_ms


def test_survey_card_is_placed_by_the_sampling_policy(engine: Any) -> None:
    surveys = engine.wellbeing.surveys
    uid = _user(engine, teen=False)
    surveys.policy = SamplingPolicy(rate_per_week=1.0, min_spacing_hours=24.0)
    surveys.pages_per_week_override = 1e9  # a per-page rate of ~0: no card
    assert engine.feed(uid, limit=3).survey is None
    surveys.policy = SamplingPolicy(rate_per_week=20.0, min_spacing_hours=0.0)
    surveys.pages_per_week_override = 1.0  # a per-page rate of 1: always a card
    page = engine.feed(uid, limit=3)
    card = page.survey
    assert card is not None and card.question
    assert card.scale.min == 1 and card.scale.max == 5
    row = surveys.repo.prompt(card.survey_id)
    assert row is not None and row["status"] == "shown" and row["request_id"] == page.request_id
    assert row["inclusion_probability"] == pytest.approx(
        row["page_probability"] * row["question_probability"]
    )


def test_wellbeing_components_reach_the_following_only_feed(engine: Any) -> None:
    following = engine.products["following_only"]
    assert "governor" in [q.name for q in following.query_hydrators]
    assert "governor_stop" in [f.name for f in following.filters]
    assert "governor_page" in [f.name for f in following.post_filters]
    assert "governor_page_count" in [e.name for e in following.side_effects]
    assert engine.health()["wellbeing"]["satisfaction_model"] is None
