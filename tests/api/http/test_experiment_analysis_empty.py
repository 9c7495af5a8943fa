"""Analyses and reports of experiments with no data yet answer 200 with empty figures, never a
500: a new experiment, one just started, an interleaving one, one whose every exposed user is
in the holdback, and the dashboard that shows them.

Before: ``GET /v1/experiments/{id}/analysis`` on a new or just-started experiment answered 500
(polars ``ColumnNotFoundError: "minutes"``: the empty per-user frame had no metric columns).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from ranking.pipeline import FeedQuery
from tests.conftest import make_key

TWO_ARMS = {
    "salt": "empty-salt",
    "arms": [{"name": "control"}, {"name": "treatment", "overrides": {"mood_strength": 0.5}}],
}


def _create(client: Any, admin: dict[str, str], name: str, **extra: Any) -> None:
    r = client.post("/v1/experiments", json={"name": name, **TWO_ARMS, **extra}, headers=admin)
    assert r.status_code == 201, r.text


def _analysis(client: Any, admin: dict[str, str], name: str) -> dict[str, Any]:
    r = client.get(f"/v1/experiments/{name}/analysis", headers=admin)
    assert r.status_code == 200, r.text
    return dict(r.json())


def _serve(client: Any, n_users: int = 12) -> None:
    engine = client.app.state.engine
    engine.experiments.running()
    now = datetime.now(UTC).replace(tzinfo=None)
    for uid in sorted(engine.state.profiles.users)[:n_users]:
        res = engine.products["home"].run(
            FeedQuery(user_id=uid, limit=5, now=now, session_id=f"empty-{uid}")
        )
        for f in res.effects:
            f.result()
    engine.writer.flush()


def _assert_empty(report: dict[str, Any]) -> None:
    assert report["exposed_users"] == 0
    assert [a["users"] for a in report["arms"]] == [0, 0]
    assert all(v is None for a in report["arms"] for v in a["means"].values())
    assert report["srm"] is None
    (comp,) = report["comparisons"]
    assert comp["msprt"] is None
    assert all("error" in m for m in comp["metrics"].values())
    assert comp["guardrails"]["status"] == "inconclusive"


def test_analysis_of_a_new_experiment_is_empty_not_a_server_error(client: Any) -> None:
    admin = make_key(client, "admin")
    _create(client, admin, "brand-new")
    _assert_empty(_analysis(client, admin, "brand-new"))


def test_analysis_of_a_just_started_experiment_is_empty(client: Any) -> None:
    admin = make_key(client, "admin")
    _create(client, admin, "just-started")
    assert client.post("/v1/experiments/just-started/start", headers=admin).status_code == 200
    report = _analysis(client, admin, "just-started")
    _assert_empty(report)
    assert report["status"] == "running"
    # The saved empty report renders on the dashboard (HTML and JSON).
    page = client.get("/dashboard", headers=admin)
    assert page.status_code == 200 and "just-started" in page.text
    r = client.get("/v1/dashboard/experiments", headers=admin)
    assert r.status_code == 200
    assert r.json()["experiments"][0]["analysis"]["exposed_users"] == 0


def test_analysis_of_a_new_interleaving_experiment_is_empty(client: Any) -> None:
    admin = make_key(client, "admin")
    _create(client, admin, "interleaved", interleave=["control", "treatment"])
    report = _analysis(client, admin, "interleaved")
    _assert_empty(report)


def test_analysis_when_every_exposed_user_is_held_back(client: Any) -> None:
    admin = make_key(client, "admin")
    _create(client, admin, "all-held", holdback=0.999)
    assert client.post("/v1/experiments/all-held/start", headers=admin).status_code == 200
    _serve(client)
    report = _analysis(client, admin, "all-held")
    assert report["exposed_users"] == 0
    assert report["holdback"]["users"] >= 1


def test_off_policy_and_reports_on_an_experiment_without_pages(client: Any) -> None:
    admin = make_key(client, "admin")
    _create(client, admin, "no-pages")
    r = client.get(
        "/v1/experiments/off-policy",
        params={"since": "2999-01-01T00:00:00", "until": "2999-01-02T00:00:00"},
        headers=admin,
    )
    assert r.status_code == 200, r.text
    assert _analysis(client, admin, "no-pages")["off_policy"] is None
