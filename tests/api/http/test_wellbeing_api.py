"""Wellbeing through the real app: governor on pages, own limits, parental controls, surveys,
client clock skew and analytics access."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from tests.conftest import make_key
from wellbeing.surveys import SamplingPolicy

PARENT_ID = 9_000_001


def _user(client: Any, *, teen: bool) -> int:
    st = client.app.state.engine.state
    users = [u for u, p in st.profiles.by_user.items() if bool(p.get("is_teen")) == teen]
    return int(
        max(
            users, key=lambda u: len(st.activity.history[u].rows) if u in st.activity.history else 0
        )
    )


def _feed(client: Any, h: dict[str, str], uid: int, **params: Any) -> dict[str, Any]:
    r = client.get("/v1/feed", params={"user_id": uid, "limit": 5, **params}, headers=h)
    assert r.status_code == 200, r.text
    return dict(r.json())


def test_page_json_carries_the_governor(client: Any) -> None:
    uid = _user(client, teen=False)
    page = _feed(client, make_key(client, "user", uid), uid)
    assert page["governor"]["state"] in ("ok", "break_suggested")
    assert {"minutes_used", "minutes_left"} <= set(page["governor"])


def test_teen_cannot_loosen_own_limits_but_can_tighten(client: Any) -> None:
    teen = _user(client, teen=True)
    h = make_key(client, "user", teen)
    r = client.patch(f"/v1/users/{teen}/governor", json={"daily_limit_min": 240}, headers=h)
    assert r.status_code == 403
    assert "daily_limit_min 60 -> 240" in r.json()["detail"]
    assert "parent" in r.json()["detail"]
    r = client.patch(
        f"/v1/users/{teen}/governor", json={"sleep_start": None, "sleep_end": None}, headers=h
    )
    assert r.status_code == 403
    r = client.patch(f"/v1/users/{teen}/governor", json={"daily_limit_min": 45}, headers=h)
    assert r.status_code == 200
    assert r.json()["settings"]["daily_limit_min"] == 45
    r = client.patch(f"/v1/users/{teen}/governor", json={"bedtime": "21:00"}, headers=h)
    assert r.status_code == 422 and "bedtime" in r.text
    other = _user(client, teen=False)
    assert (
        client.patch(
            f"/v1/users/{other}/governor", json={"daily_limit_min": 45}, headers=h
        ).status_code
        == 403
    )


def test_parent_controls_a_linked_teen(client: Any) -> None:
    teen = _user(client, teen=True)
    admin = make_key(client, "admin")
    parent = make_key(client, "parent", PARENT_ID)
    teen_h = make_key(client, "user", teen)
    path = f"/v1/parental/children/{teen}/controls"
    assert client.patch(path, json={"max_pages_per_session": 1}, headers=parent).status_code == 403
    r = client.post(
        "/v1/parental/links", json={"parent_id": PARENT_ID, "child_id": teen}, headers=parent
    )
    assert r.status_code == 403  # only an admin links accounts
    r = client.post(
        "/v1/parental/links", json={"parent_id": PARENT_ID, "child_id": teen}, headers=admin
    )
    assert r.status_code == 201
    # A user key can never change parental controls, not even its own.
    r = client.patch(path, json={"daily_limit_min": 300}, headers=teen_h)
    assert r.status_code == 403 and "user key" in r.json()["detail"]
    body = {
        "personalized": False,
        "max_pages_per_session": 1,
        "max_generated_per_day": 0,
        "daily_limit_min": 90,
        "sleep_start": None,
        "sleep_end": None,
    }
    r = client.patch(path, json=body, headers=parent)
    assert r.status_code == 200, r.text
    s = r.json()["settings"]
    assert s["daily_limit_min"] == 90 and s["sleep_start"] is None and not s["personalized"]
    kids = client.get("/v1/parental/children", headers=parent).json()["children"]
    assert [k["user_id"] for k in kids] == [teen]
    # The teen now gets the non-personalized feed, no generated clips, one page per session.
    first = _feed(client, teen_h, teen)
    assert first["pipeline"] == "following_only"
    assert not any(i["is_generated"] for i in first["items"])
    assert first["items"], "the teen should follow someone with clips"
    second = _feed(client, teen_h, teen, cursor=first["next_cursor"])
    assert second["items"] == [] and second["stop_card"]["reason"] == "page_cap"
    # Within the parent's ceiling the teen may tighten, never loosen.
    r = client.patch(f"/v1/users/{teen}/governor", json={"daily_limit_min": 120}, headers=teen_h)
    assert r.status_code == 403
    r = client.patch(f"/v1/users/{teen}/governor", json={"personalized": True}, headers=teen_h)
    assert r.status_code == 403
    # Switching personalization back on through the steering controls does not undo it either.
    client.put(f"/v1/users/{teen}/controls", json={"personalized": True}, headers=teen_h)
    assert _feed(client, teen_h, teen)["pipeline"] == "following_only"
    # The parent may read the linked teen's feed; a stranger's it may not.
    stranger = _user(client, teen=False)
    assert client.get("/v1/feed", params={"user_id": stranger}, headers=parent).status_code == 403


def test_client_clock_skew_does_not_escape_the_limit(client: Any) -> None:
    uid = _user(client, teen=False)
    h = make_key(client, "user", uid)
    r = client.patch(f"/v1/users/{uid}/governor", json={"daily_limit_min": 20}, headers=h)
    assert r.status_code == 200
    assert _feed(client, h, uid)["governor"]["state"] != "limit_reached"
    item = int(client.app.state.engine.state.catalogue.item_ids[0])
    skewed = datetime.now(UTC) - timedelta(days=3)  # a device clock set three days back
    events = [
        {
            "event_id": f"skew-{k}",
            "user_id": uid,
            "item_id": item,
            "event_type": "view",
            "ts": skewed.isoformat(),
            "watch_s": 300.0,
            "watch_frac": 1.0,
        }
        for k in range(5)
    ]
    r = client.post("/v1/events", json={"events": events}, headers=h)
    assert r.status_code == 200, r.text
    page = _feed(client, h, uid)
    assert page["items"] == []
    assert page["governor"]["state"] == "limit_reached"
    assert page["governor"]["minutes_used"] >= 25
    assert page["stop_card"]["reason"] == "daily_limit"


def test_survey_card_answer_dismiss_and_non_response(client: Any) -> None:
    uid = _user(client, teen=False)
    h = make_key(client, "user", uid)
    surveys = client.app.state.engine.wellbeing.surveys
    surveys.policy = SamplingPolicy(rate_per_week=20.0, min_spacing_hours=0.0)
    surveys.pages_per_week_override = 1.0
    first = _feed(client, h, uid)["survey"]
    second = _feed(client, h, uid)["survey"]
    third = _feed(client, h, uid)["survey"]
    assert first["question"] and first["scale"]["max"] == 5
    r = client.post(f"/v1/surveys/{first['survey_id']}/answer", json={"answer": 4}, headers=h)
    assert r.status_code == 200 and r.json()["status"] == "answered"
    r = client.post(f"/v1/surveys/{first['survey_id']}/answer", json={"answer": 2}, headers=h)
    assert r.status_code == 409
    r = client.post(f"/v1/surveys/{second['survey_id']}/answer", json={"answer": 9}, headers=h)
    assert r.status_code == 422
    r = client.post(f"/v1/surveys/{second['survey_id']}/dismiss", headers=h)
    assert r.status_code == 200 and r.json()["status"] == "dismissed"
    other = make_key(client, "user", _user(client, teen=True))
    r = client.post(f"/v1/surveys/{third['survey_id']}/answer", json={"answer": 3}, headers=other)
    assert r.status_code == 403
    assert client.post("/v1/surveys/nope/dismiss", headers=h).status_code == 404
    # A card left alone past the response window is logged as a non-response.
    expired = surveys.expire(datetime.now(UTC) + timedelta(days=2))
    assert expired >= 1
    row = surveys.repo.prompt(third["survey_id"])
    assert row["status"] == "expired" and row["answer"] is None


def test_analytics_reports_need_an_analyst_key(client: Any) -> None:
    analyst = make_key(client, "analyst")
    listed = client.get("/v1/analytics/reports", headers=analyst).json()["reports"]
    names = {r["name"] for r in listed}
    assert {"weekly_satisfaction_by_cohort", "regret_proxy", "by_experiment_arm"} <= names
    r = client.get("/v1/analytics/reports/time_spent_vs_satisfaction", headers=analyst)
    assert r.status_code == 200 and "imputed_mean" in r.json()["columns"]
    assert client.get("/v1/analytics/reports/nope", headers=analyst).status_code == 404
    user = make_key(client, "user", _user(client, teen=False))
    assert client.get("/v1/analytics/reports", headers=user).status_code == 403
