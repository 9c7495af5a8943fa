"""The feed page written by orjson is the JSON FastAPI's pydantic path wrote, and is documented."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from api.http.json_response import OrjsonResponse
from pipelines.serving.page import Explanation, FeatureContribution, FeedItem, FeedPage
from tests.conftest import make_key
from wellbeing.cards import GovernorCard, StopCard, SurveyCard, SurveyScale


def _busy_user(client: Any) -> int:
    eng = client.app.state.engine
    return int(
        max(eng.state.activity.history, key=lambda u: len(eng.state.activity.history[u].rows))
    )


def _same(a: Any, b: Any, path: str = "$") -> None:
    """Equal values, equal JSON types (an int stays an int) and equal key order."""
    assert type(a) is type(b), f"{path}: {type(a).__name__} != {type(b).__name__}"
    if isinstance(a, dict):
        assert list(a) == list(b), path
        for k in a:
            _same(a[k], b[k], f"{path}.{k}")
    elif isinstance(a, list):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _same(x, y, f"{path}[{i}]")
    else:
        assert a == b, path


def test_orjson_body_is_the_pydantic_json_of_the_same_page(client: Any) -> None:
    eng = client.app.state.engine
    uid = _busy_user(client)
    cursor = None
    for _ in range(3):  # a few pages: explanations, cards and cursors vary between them
        page = eng.feed(uid, limit=20, cursor=cursor)
        assert page.items
        body = OrjsonResponse(page).body
        _same(json.loads(body), json.loads(page.model_dump_json()))
        assert body == page.model_dump_json().encode()  # byte for byte, as it happens
        cursor = page.next_cursor


def test_cards_times_and_floats_are_written_as_pydantic_writes_them() -> None:
    item = FeedItem(
        item_id=2**53 + 1,
        author_id=7,
        caption='caf\u00e9 \U0001f43c "quoted"\n',
        topics=["a", "b"],
        position=0,
        score=float("inf"),
        source="collab",
        reason="why",
        is_generated=True,
        explanation=Explanation(
            source="collab",
            top_features=[
                FeatureContribution(feature="f", contribution=v)
                for v in (1e-7, -0.0, 1e20, 0.1, float("nan"), 3.0)
            ],
            mood_match=0.5,
            media_url="https://x/y?sig=a&b=c",
        ),
    )
    for resumes in (
        datetime(2026, 12, 3, 22, 0, 0, 123456),
        datetime(2026, 12, 3, 22, 0, tzinfo=UTC),
        datetime(2026, 12, 3, 22, 0, tzinfo=timezone(timedelta(hours=-5))),
    ):
        page = FeedPage(
            user_id=1,
            request_id="r",
            session_id="s",
            page=0,
            pipeline="home",
            items=[item],
            next_cursor=None,
            degraded_sources=["ann_user_vector"],
            governor=GovernorCard(
                state="limit_reached",
                minutes_used=61.5,
                minutes_left=None,
                reason="sleep_hours",
                taper=1.0,
                resumes_at=resumes,
                pages_this_session=3,
                message="time to sleep",
            ),
            survey=SurveyCard(
                survey_id="sv",
                question_key="q",
                question="How?",
                kind="in_moment",
                scale=SurveyScale(min=1, max=5, labels={"1": "bad", "5": "good"}),
            ),
            stop_card=StopCard(reason="sleep_hours", message="stop", resumes_at=resumes),
        )
        assert OrjsonResponse(page).body == page.model_dump_json().encode()


def test_feed_route_serves_json_that_validates_as_the_documented_model(client: Any) -> None:
    h = make_key(client, "service")
    r = client.get("/v1/feed", params={"user_id": _busy_user(client), "limit": 20}, headers=h)
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/json"
    body = r.json()
    page = FeedPage.model_validate(body)
    _same(body, json.loads(page.model_dump_json()))
    assert body["items"] and body["items"][0]["explanation"]["top_features"]
    spec = client.get("/openapi.json").json()
    ok = spec["paths"]["/v1/feed"]["get"]["responses"]["200"]["content"]["application/json"]
    assert ok["schema"]["$ref"].endswith("/FeedPage")
    # Errors are still JSON with the documented body.
    bad = client.get("/v1/feed", params={"user_id": 10**9, "limit": 20}, headers=h)
    assert bad.status_code == 404 and "detail" in bad.json()
