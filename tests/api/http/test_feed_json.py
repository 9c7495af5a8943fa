"""The feed page written by orjson is the JSON FastAPI's pydantic path wrote, and is documented."""

from __future__ import annotations

import json
from typing import Any

from api.http.json_response import OrjsonResponse
from pipelines.serving.page import FeedPage
from tests.conftest import make_key


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
        _same(json.loads(OrjsonResponse(page).body), json.loads(page.model_dump_json()))
        cursor = page.next_cursor


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
