"""End to end through the real app: a tiny world on a real DuckDB file and Qdrant Edge shard."""

from __future__ import annotations

from typing import Any

import numpy as np

from tests.conftest import make_key


def _some_user(client: Any) -> int:
    eng = client.app.state.engine
    # A user with history, so every source has something to say.
    return int(
        max(eng.state.activity.history, key=lambda u: len(eng.state.activity.history[u].rows))
    )


def test_healthz_reports_index(client: Any) -> None:
    r = client.get("/healthz")
    assert r.status_code == 200
    assert r.json()["index"] == "ok"


def test_two_pages_never_repeat_and_explain_each_item(client: Any) -> None:
    h = make_key(client, "service")
    uid = _some_user(client)
    p1 = client.get("/v1/feed", params={"user_id": uid, "limit": 10}, headers=h).json()
    assert len(p1["items"]) == 10
    p2 = client.get(
        "/v1/feed", params={"user_id": uid, "limit": 10, "cursor": p1["next_cursor"]}, headers=h
    ).json()
    ids1 = {i["item_id"] for i in p1["items"]}
    ids2 = {i["item_id"] for i in p2["items"]}
    assert len(ids2) == 10 and not ids1 & ids2
    assert p2["session_id"] == p1["session_id"] and p2["page"] == 1
    for item in p1["items"] + p2["items"]:
        assert item["reason"] and item["source"]
        assert item["explanation"]["top_features"]


def test_blocked_author_never_appears(client: Any) -> None:
    h = make_key(client, "service")
    uid = _some_user(client)
    first = client.get("/v1/feed", params={"user_id": uid, "limit": 20}, headers=h).json()
    author = first["items"][0]["author_id"]
    r = client.post("/v1/blocks", json={"user_id": uid, "target_id": author}, headers=h)
    assert r.status_code == 201
    cursor = None
    for _ in range(4):
        params: dict[str, Any] = {"user_id": uid, "limit": 25}
        if cursor:
            params["cursor"] = cursor
        page = client.get("/v1/feed", params=params, headers=h).json()
        assert author not in {i["author_id"] for i in page["items"]}
        cursor = page["next_cursor"]


def test_violative_clip_never_appears(client: Any) -> None:
    h = make_key(client, "service")
    eng = client.app.state.engine
    violative = {
        int(eng.state.catalogue.item_ids[r]) for r in (eng.state.catalogue.safety == 2).nonzero()[0]
    }
    assert violative, "the tiny world should hold violative clips"
    for uid in list(eng.state.profiles.users)[:25]:
        page = client.get("/v1/feed", params={"user_id": uid, "limit": 30}, headers=h).json()
        assert not violative & {i["item_id"] for i in page["items"]}


def test_bad_inputs_get_clear_4xx(client: Any) -> None:
    h = make_key(client, "service")
    uid = _some_user(client)
    r = client.post(
        "/v1/events",
        json={
            "events": [
                {
                    "event_id": "x1",
                    "user_id": uid,
                    "event_type": "view",
                    "item_id": 1,
                    "watch_frac": "lots",
                }
            ]
        },
        headers=h,
    )
    assert r.status_code == 422
    assert "events.0.watch_frac" in r.json()["message"]
    r = client.post(
        "/v1/events",
        json={
            "events": [{"event_id": "x2", "user_id": uid, "event_type": "teleport", "item_id": 1}]
        },
        headers=h,
    )
    assert r.status_code == 422 and "event_type" in r.json()["message"]
    assert client.get("/v1/feed", params={"user_id": 10**9}, headers=h).status_code == 404
    assert (
        client.get("/v1/feed", params={"user_id": uid, "cursor": "nope"}, headers=h).status_code
        == 400
    )
    big = {
        "events": [
            {"event_id": f"b{i}", "user_id": uid, "event_type": "like", "item_id": 1}
            for i in range(1001)
        ]
    }
    assert client.post("/v1/events", json=big, headers=h).status_code == 413
    assert client.get("/v1/feed", params={"user_id": uid}).status_code == 401


def test_user_key_reads_only_its_own_feed(client: Any) -> None:
    uid = _some_user(client)
    other = next(u for u in client.app.state.engine.state.profiles.users if u != uid)
    h = make_key(client, "user", uid)
    assert client.get("/v1/feed", params={"user_id": uid}, headers=h).status_code == 200
    assert client.get("/v1/feed", params={"user_id": other}, headers=h).status_code == 403


def test_acknowledged_events_are_committed_once(client: Any) -> None:
    h = make_key(client, "service")
    eng = client.app.state.engine
    uid = _some_user(client)
    item = int(eng.state.catalogue.item_ids[0])
    batch = {
        "events": [
            {"event_id": f"ack-{i}", "user_id": uid, "event_type": "like", "item_id": item}
            for i in range(5)
        ]
    }
    r1 = client.post("/v1/events", json=batch, headers=h).json()
    r2 = client.post("/v1/events", json=batch, headers=h).json()
    assert r1 == {"accepted": 5, "duplicates": 0}
    assert r2 == {"accepted": 0, "duplicates": 5}
    n = eng.store.scalar("SELECT count(*) FROM events WHERE event_id LIKE 'ack-%'")
    assert n == 5


def test_repeats_within_a_batch_count_once(client: Any) -> None:
    from ranking.state import COUNTERS

    h = make_key(client, "service")
    eng = client.app.state.engine
    uid = _some_user(client)
    item = int(eng.state.catalogue.item_ids[1])
    row, col = int(eng.state.catalogue.rows(np.array([item]))[0]), COUNTERS.index("likes")
    before = float(eng.state.engagement.counts[row, col])
    ev = {"user_id": uid, "event_type": "like", "item_id": item}
    batch = {"events": [{"event_id": "rep-1", **ev}, {"event_id": "rep-1", **ev}]}
    assert client.post("/v1/events", json=batch, headers=h).json() == {
        "accepted": 1,
        "duplicates": 1,
    }
    assert float(eng.state.engagement.counts[row, col]) == before + 1.0  # the serving counter too


def test_new_clip_and_user_flow(client: Any) -> None:
    h = make_key(client, "admin")
    r = client.post(
        "/v1/users", json={"users": [{"user_id": 777777, "timezone": "Europe/Paris"}]}, headers=h
    )
    assert r.status_code == 201
    r = client.post(
        "/v1/users", json={"users": [{"user_id": 777778, "timezone": "Mars/Base"}]}, headers=h
    )
    assert r.status_code == 422 and "timezone" in r.json()["message"]
    clip = {
        "item_id": 888888,
        "author_id": 777777,
        "caption": "a sleepy cat in the sun",
        "topics": ["cats"],
    }
    assert client.post("/v1/clips", json={"clips": [clip]}, headers=h).status_code == 201
    assert client.post("/v1/clips", json={"clips": [clip]}, headers=h).status_code == 409
    page = client.get("/v1/feed", params={"user_id": 777777, "limit": 50}, headers=h)
    assert page.status_code == 200 and page.json()["items"]


def test_the_schema_documents_the_page_its_explanation_and_its_cards() -> None:
    from api.http.main import create_app

    schema = create_app().openapi()
    comp = schema["components"]["schemas"]
    ok = schema["paths"]["/v1/feed"]["get"]["responses"]["200"]["content"]["application/json"]
    page = comp[ok["schema"]["$ref"].rsplit("/", 1)[-1]]["properties"]
    item = comp[page["items"]["items"]["$ref"].rsplit("/", 1)[-1]]["properties"]
    explanation = comp[item["explanation"]["$ref"].rsplit("/", 1)[-1]]["properties"]
    for name in (
        "source",
        "top_features",
        "model",
        "why",
        "held_back",
        "rules_applied",
        "mood_match",
        "generated",
        "made_for_your_mood",
        "media_url",
    ):
        assert name in explanation, name
    assert explanation["top_features"]["items"]["$ref"].endswith("/FeatureContribution")

    def card(field: str) -> str:
        refs = [a.get("$ref", "") for a in page[field]["anyOf"]]
        return str(next(r for r in refs if r).rsplit("/", 1)[-1])

    assert "minutes_left" in comp[card("governor")]["properties"]
    assert "resumes_at" in comp[card("stop_card")]["properties"]
    assert "scale" in comp[card("survey")]["properties"]
