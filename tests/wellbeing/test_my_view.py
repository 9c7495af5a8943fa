"""A person's own view over time, through the API: minutes, survey answers, what changed."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from tests.conftest import make_key


def _viewer(client: Any) -> int:
    """A user with view events in the last year."""
    since = datetime.now(UTC).replace(tzinfo=None) - timedelta(days=300)
    return int(
        client.app.state.engine.store.scalar(
            "SELECT user_id FROM events WHERE event_type = 'view' AND received_at >= ? "
            "GROUP BY 1 ORDER BY count(*) DESC LIMIT 1",
            [since],
        )
    )


def test_minutes_surveys_and_changes_are_the_persons_own(client: Any) -> None:
    eng = client.app.state.engine
    uid = _viewer(client)
    h = make_key(client, "user", uid)
    assert client.post(f"/v1/users/{uid}/mood", json={"text": "calm nature"}, headers=h).is_success
    r = client.post(
        f"/v1/users/{uid}/controls/rules", json={"text": "never horror after 21:00"}, headers=h
    )
    assert r.is_success, r.text
    assert client.put(
        f"/v1/users/{uid}/data-controls", json={"watch_time": False}, headers=h
    ).is_success
    assert client.patch(
        f"/v1/users/{uid}/governor", json={"daily_limit_min": 45}, headers=h
    ).is_success
    now = datetime.now(UTC).replace(tzinfo=None)
    with eng.store.write() as cur:
        cur.execute(
            "INSERT INTO survey_prompts (survey_id, user_id, question_key, kind, stratum, "
            "shown_at, page_probability, question_probability, inclusion_probability, status, "
            "answer) VALUES ('mv1', ?, 'life_better_6m', 'periodic', 's', ?, 1, 1, 1, "
            "'answered', 4)",
            [uid, now - timedelta(days=2)],
        )

    r = client.get(f"/v1/users/{uid}/my-view", params={"days": 366}, headers=h)
    assert r.status_code == 200, r.text
    view = r.json()
    assert len(view["minutes_per_day"]) == 366
    # Every view's watch time is counted once: the days add up to the event log's total.
    since = now - timedelta(days=367)
    expected = eng.store.scalar(
        "SELECT sum(watch_s) / 60 FROM events WHERE user_id = ? AND event_type = 'view' "
        "AND received_at >= ?",
        [uid, since],
    )
    total = sum(d["minutes"] for d in view["minutes_per_day"])
    assert expected > 0 and abs(total - expected) <= 0.05 * 366 + 0.5
    assert abs(sum(w["minutes"] for w in view["minutes_per_week"]) - total) < 1.0
    assert [s["answer"] for s in view["surveys"]] == [4]
    assert "six months" in view["surveys"][0]["question"]
    what = {c["what"]: c["detail"] for c in view["changes"]}
    assert what["mood set"] == "calm nature"
    assert what["rule saved"] == "never horror after 21:00"
    assert "watch_time" in what["data controls (current)"]
    assert "daily_limit_min=45" in what["time limits set by you"]

    exported = client.get(f"/v1/users/{uid}/my-view/export", headers=h)
    assert exported.status_code == 200
    assert "attachment" in exported.headers["content-disposition"]
    assert json.loads(exported.content)["days"] == 366


def test_only_the_person_and_bounded_days(client: Any) -> None:
    uid = _viewer(client)
    h = make_key(client, "user", uid)
    other = make_key(client, "user", uid + 1)
    assert client.get(f"/v1/users/{uid}/my-view", headers=other).status_code == 403
    for bad in (0, 367, "x"):
        r = client.get(f"/v1/users/{uid}/my-view", params={"days": bad}, headers=h)
        assert r.status_code == 422, r.text


def test_the_page_signs_in_with_the_persons_key(client: Any) -> None:
    uid = _viewer(client)
    key = make_key(client, "user", uid)["Authorization"].split(" ", 1)[1]
    assert "Sign in" in client.get("/me").text
    analyst = make_key(client, "analyst")["Authorization"].split(" ", 1)[1]
    refused = client.post("/me/login", data={"key": analyst}, follow_redirects=False)
    assert refused.status_code == 403
    r = client.post("/me/login", data={"key": key}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/me"
    page = client.get("/me")
    assert page.status_code == 200 and "minutes over the last 28 days" in page.text
    assert client.get("/me/export").status_code == 200
