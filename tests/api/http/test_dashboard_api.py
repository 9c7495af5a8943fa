"""The experiments admin API and the dashboard (HTML and JSON) through the real app, on a
store seeded through the real serving path."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from ranking.pipeline import FeedQuery
from tests.conftest import make_key

EXPERIMENT = {
    "name": "dash-exp",
    "salt": "dash-salt",
    "guardrails": ["satisfaction", "report_rate"],
    "arms": [
        {"name": "control"},
        {"name": "wellbeing", "overrides": {"satisfaction_weight": 1.0, "governor_taper": 2.0}},
    ],
}
#: Seeded in-the-moment answers per day (the page must show these daily means).
ANSWERS = {datetime(2025, 6, 10, 12): [4, 4, 5], datetime(2025, 6, 11, 12): [2, 3]}


def seed_dashboard(client: Any, admin: dict[str, str], *, n_users: int = 40) -> dict[str, Any]:
    """Create and start the experiment over the API, serve pages to ``n_users`` users through
    the home pipeline (impressions logged with arm and propensity), write survey answers,
    then analyse over the API; returns the analysis."""
    r = client.post("/v1/experiments", json=EXPERIMENT, headers=admin)
    assert r.status_code == 201, r.text
    r = client.post("/v1/experiments/dash-exp/start", headers=admin)
    assert r.status_code == 200 and r.json()["status"] == "running"
    engine = client.app.state.engine
    engine.experiments.running()  # fresh cache: the start was through the same repository
    now = datetime.now(UTC).replace(tzinfo=None)
    served = 0
    for uid in sorted(engine.state.profiles.users)[:n_users]:
        res = engine.products["home"].run(
            FeedQuery(user_id=uid, limit=6, now=now, session_id=f"dash-{uid}")
        )
        # A teen in their sleep hours (by the wall clock) gets a stop card and no exposure.
        served += int(res.page.height > 0)
        for f in res.effects:
            f.result()
    engine.writer.flush()
    with engine.store.write() as cur:
        for day, answers in ANSWERS.items():
            for k, a in enumerate(answers):
                cur.execute(
                    "INSERT INTO survey_prompts (survey_id, user_id, question_key, kind, stratum, "
                    "shown_at, page_probability, question_probability, inclusion_probability, "
                    "status, answer, responded_at) VALUES (?, ?, 'session_feel', 'in_moment', "
                    "'light', ?, 0.1, 0.5, 0.05, 'answered', ?, ?)",
                    [uuid.uuid4().hex, k + 1, day, a, day + timedelta(minutes=1)],
                )
    r = client.get("/v1/experiments/dash-exp/analysis", headers=admin)
    assert r.status_code == 200, r.text
    return {**r.json(), "served": served}


def test_experiment_admin_api_validates_and_needs_admin(client: Any) -> None:
    admin = make_key(client, "admin")
    analyst = make_key(client, "analyst")
    bad = {**EXPERIMENT, "arms": [{"name": "a", "overrides": {"steer": 1}}]}
    r = client.post("/v1/experiments", json=bad, headers=admin)
    assert r.status_code == 422 and "unknown override 'steer'" in r.text
    assert "governor_taper" in r.text
    assert client.post("/v1/experiments", json=EXPERIMENT, headers=analyst).status_code == 403
    assert client.post("/v1/experiments", json=EXPERIMENT, headers=admin).status_code == 201
    assert client.post("/v1/experiments", json=EXPERIMENT, headers=admin).status_code == 409
    r = client.get("/v1/experiments", headers=analyst)
    assert [e["name"] for e in r.json()["experiments"]] == ["dash-exp"]
    assert client.post("/v1/experiments/nope/start", headers=admin).status_code == 404
    assert client.post("/v1/experiments/dash-exp/start", headers=analyst).status_code == 403
    r = client.post("/v1/experiments/dash-exp/stop", headers=admin)
    assert r.json()["status"] == "stopped"


def test_dashboard_shows_the_seeded_experiment_and_satisfaction(client: Any) -> None:
    admin = make_key(client, "admin")
    analyst = make_key(client, "analyst")
    report = seed_dashboard(client, admin)
    users = {a["name"]: a["users"] for a in report["arms"]}
    assert report["served"] >= 30
    assert sum(users.values()) == report["served"] and min(users.values()) > 0
    assert report["srm"]["alarm"] is False

    r = client.get("/v1/dashboard/experiments", headers=analyst)
    assert r.status_code == 200
    item = r.json()["experiments"][0]
    assert item["analysis"]["arms"][0]["users"] == users["control"]
    r = client.get("/v1/dashboard/satisfaction", headers=analyst)
    days = r.json()["days"]
    assert [round(d["mean"], 2) for d in days] == [4.33, 2.5]

    page = client.get("/dashboard", headers=analyst)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    text = page.text
    assert "dash-exp" in text and "<svg" in text
    cells = re.findall(r"<td class='users'>(\d+)</td>", text)
    assert [int(c) for c in cells] == [users["control"], users["wellbeing"]]
    assert re.findall(r"<td class='sat-mean'>([\d.]+)</td>", text) == ["4.33", "2.50"]
    assert "data-srm='ok'" in text and "data-verdict=" in text
    assert "http://" not in text.replace("http://www.w3.org/2000/svg", "")  # nothing external


def test_dashboard_page_needs_an_analyst_key_or_cookie(client: Any) -> None:
    r = client.get("/dashboard")
    assert r.status_code == 200 and "<form" in r.text and "dash-exp" not in r.text
    user = make_key(client, "user", 1)
    assert client.get("/dashboard", headers=user).status_code == 403
    assert client.get("/v1/dashboard/experiments", headers=user).status_code == 403
    analyst = make_key(client, "analyst")
    key = analyst["Authorization"].split()[1]
    r = client.post(
        "/dashboard/login",
        content=f"key={key}",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
        follow_redirects=False,
    )
    assert r.status_code == 303 and "steerfeed_key" in r.headers["set-cookie"]
    assert "HttpOnly" in r.headers["set-cookie"]
    r = client.get("/dashboard")  # the client keeps the cookie
    assert r.status_code == 200 and "Experiments" in r.text
    client.cookies.clear()
    r = client.post(
        "/dashboard/login",
        content="key=wrong",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert r.status_code == 401
