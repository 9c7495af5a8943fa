"""``/metrics`` after real traffic: pages, events, a survey card, a governor stop and a job.

The scrape is parsed with prometheus_client's own parser; each metric the operations doc
describes must be there with values that follow from the traffic sent in the test.
"""

from __future__ import annotations

import uuid
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from pipelines.serving.jobs import JobContext, run_job
from tests.conftest import make_key
from wellbeing.surveys import SamplingPolicy


def _scrape(
    client: Any, headers: dict[str, str]
) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    r = client.get("/metrics", headers=headers)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain")
    out: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in text_string_to_metric_families(r.text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def _value(samples: dict[Any, float], name: str, **labels: str) -> float:
    """Sum of the samples of ``name`` whose labels include ``labels``."""
    want = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and want <= set(ls))


def _user(client: Any) -> int:
    st = client.app.state.engine.state
    adults = [u for u, p in st.profiles.by_user.items() if not p.get("is_teen")]
    return int(
        max(
            adults,
            key=lambda u: len(st.activity.history[u].rows) if u in st.activity.history else 0,
        )
    )


def test_metrics_after_pages_events_surveys_and_a_job(client: Any) -> None:
    engine = client.app.state.engine
    analyst = make_key(client, "analyst")
    svc = make_key(client, "service")
    before = _scrape(client, analyst)
    uid = _user(client)
    surveys = engine.wellbeing.surveys
    surveys.policy = SamplingPolicy(rate_per_week=20.0, min_spacing_hours=0.0)
    surveys.pages_per_week_override = 1.0

    pages = []
    for _ in range(3):
        r = client.get("/v1/feed", params={"user_id": uid, "limit": 5}, headers=svc)
        assert r.status_code == 200, r.text
        pages.append(r.json())
    assert client.get("/v1/feed", params={"user_id": 10**15}, headers=svc).status_code == 404
    shown = [p["survey"] for p in pages if p["survey"] is not None]
    assert shown, "the sampling policy above shows a card on the first pages"
    r = client.post(f"/v1/surveys/{shown[0]['survey_id']}/answer", json={"answer": 4}, headers=svc)
    assert r.status_code == 200, r.text

    # The governor's session page cap stops the next page.
    r = client.patch(f"/v1/users/{uid}/governor", json={"max_pages_per_session": 1}, headers=svc)
    assert r.status_code == 200, r.text
    first = client.get("/v1/feed", params={"user_id": uid, "limit": 5}, headers=svc).json()
    stopped = client.get(
        "/v1/feed", params={"user_id": uid, "limit": 5, "cursor": first["next_cursor"]}, headers=svc
    ).json()
    assert stopped["stop_card"]["reason"] == "page_cap"

    item = int(engine.state.catalogue.item_ids[0])
    ev = [
        {"event_id": uuid.uuid4().hex, "user_id": uid, "event_type": "like", "item_id": item}
        for _ in range(4)
    ]
    assert client.post("/v1/events", json={"events": ev}, headers=svc).status_code == 200
    assert client.post("/v1/events", json={"events": ev[:1]}, headers=svc).status_code == 200
    engine.writer.flush()  # the impressions of the pages above are committed
    assert run_job("author_stats", JobContext(engine)).ok

    after = _scrape(client, analyst)

    def delta(name: str, **labels: str) -> float:
        return _value(after, name, **labels) - _value(before, name, **labels)

    served_pages = [*pages, first, stopped]
    n_stopped = sum(1 for p in served_pages if p["stop_card"] is not None)
    n_ok = sum(1 for p in served_pages if p["items"] and p["stop_card"] is None)
    assert n_stopped >= 1 and n_ok >= 1
    assert delta("steerfeed_pages_total", product="home", status="ok") == n_ok
    assert delta("steerfeed_pages_total", status="stopped") == n_stopped
    assert delta("steerfeed_pages_total", product="home", status="refused") == 1
    assert delta("steerfeed_governor_stops_total") == n_stopped
    assert delta("steerfeed_governor_stops_total", reason="page_cap") >= 1
    assert delta("steerfeed_page_seconds_count") == len(served_pages)
    assert 0 < delta("steerfeed_page_seconds_sum", product="home") < 60
    # A stage histogram per declared stage, and one per component of the page.
    for stage in ("query_hydrator", "source", "hydrator", "filter", "scorer", "selector"):
        assert delta("steerfeed_stage_seconds_count", product="home", stage=stage) >= n_ok, stage
    assert delta("steerfeed_component_seconds_count", product="home", component="select") == 0
    components = {
        dict(ls)["component"]
        for (n, ls), v in after.items()
        if n == "steerfeed_component_seconds_count" and v > _value(before, n, **dict(ls))
    }
    for prefix in ("qh.", "src.", "h.", "f.", "s.", "se."):
        assert any(c.startswith(prefix) for c in components), (prefix, components)
    assert delta("steerfeed_source_candidates_total", product="home") > 0
    served = sum(len(p["items"]) for p in served_pages)
    assert delta("steerfeed_impressions_written_total") >= served
    assert delta("steerfeed_impression_flush_lag_seconds_count") >= 1
    assert delta("steerfeed_events_ingested_total", outcome="new") == 4
    assert delta("steerfeed_events_ingested_total", outcome="duplicate") == 1
    n_cards = sum(1 for p in served_pages if p["survey"] is not None)
    assert delta("steerfeed_survey_cards_total", outcome="shown") == n_cards
    assert delta("steerfeed_survey_cards_total", outcome="answered") == 1
    assert delta("steerfeed_job_runs_total", job_name="author_stats", outcome="ok") == 1
    last_ok = "steerfeed_job_last_success_timestamp_seconds"
    assert _value(after, last_ok, job_name="author_stats") > 0
    assert delta("steerfeed_http_requests_total", route="/v1/feed", status="200") == 5
    assert delta("steerfeed_http_requests_total", route="/v1/feed", status="404") == 1
    assert delta("steerfeed_http_requests_total", route="/v1/events", method="POST") == 2
    # The serving state, read at the scrape.
    assert _value(after, "steerfeed_ready", part="store") == 1
    assert _value(after, "steerfeed_impression_queue_frames") == 0
    assert _value(after, "steerfeed_catalogue_clips") == len(engine.state.catalogue.item_ids)
    assert _value(after, "steerfeed_model_serving_info", version="hand_weighted") == 1
    assert ("steerfeed_generation_jobs", (("status", "queued"),)) in after


def test_request_id_is_the_pages_and_comes_back_in_a_header(client: Any) -> None:
    svc = make_key(client, "service")
    uid = _user(client)
    r = client.get(
        "/v1/feed", params={"user_id": uid}, headers={**svc, "X-Request-ID": "lb-abc.123"}
    )
    assert r.status_code == 200
    assert r.headers["x-request-id"] == "lb-abc.123" == r.json()["request_id"]
    # The server's own time comes back too (what the bench separates from the client's).
    timing = r.headers["server-timing"]
    assert timing.startswith("app;dur=") and float(timing.removeprefix("app;dur=")) > 0
    # An id that does not look like one (spaces, too long) is replaced by a fresh one.
    r = client.get("/v1/feed", params={"user_id": uid}, headers={**svc, "X-Request-ID": "a b"})
    assert r.headers["x-request-id"] == r.json()["request_id"] != "a b"
    assert len(r.json()["request_id"]) == 32


def test_metrics_need_an_operator_key(client: Any) -> None:
    assert client.get("/metrics").status_code == 401
    uid = _user(client)
    assert client.get("/metrics", headers=make_key(client, "user", uid)).status_code == 403
    assert client.get("/metrics", headers=make_key(client, "service")).status_code == 403
    assert client.get("/metrics", headers=make_key(client, "admin")).status_code == 200
