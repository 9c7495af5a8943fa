"""Roles are enforced on every endpoint, whoever wrote the route."""

from __future__ import annotations

import re
from typing import Any

from tests.conftest import make_key


def _operations(client: Any) -> list[tuple[str, str, list[str]]]:
    """Every (method, path template, tags) in the app's OpenAPI schema."""
    out = []
    for path, ops in client.app.openapi()["paths"].items():
        for method, op in ops.items():
            out.append((method.upper(), path, op.get("tags", [])))
    return out


def _fill(path: str, **values: object) -> str:
    for name, v in values.items():
        path = path.replace("{" + name + "}", str(v))
    return re.sub(r"\{[^}]+\}", "1", path)


def _two_users(client: Any) -> tuple[int, int]:
    users = sorted(client.app.state.engine.state.profiles.users)
    return users[0], users[1]


def test_every_non_public_route_rejects_a_missing_key(client: Any) -> None:
    from api.http.auth import PUBLIC_PATHS, PUBLIC_TAG

    checked = 0
    for method, path, tags in _operations(client):
        if path in PUBLIC_PATHS or PUBLIC_TAG in tags:
            continue
        r = client.request(method, _fill(path), params={"user_id": 1})
        assert r.status_code == 401, f"{method} {path} answered {r.status_code}"
        assert "API key" in r.json()["detail"]
        checked += 1
    assert checked >= 10


def test_user_key_cannot_read_another_users_feed(client: Any) -> None:
    me, other = _two_users(client)
    headers = make_key(client, "user", me)
    assert client.get("/v1/feed", params={"user_id": me}, headers=headers).status_code == 200
    r = client.get("/v1/feed", params={"user_id": other}, headers=headers)
    assert r.status_code == 403
    assert f"user {other}" in r.json()["detail"]


def test_user_key_cannot_touch_another_users_user_scoped_routes(client: Any) -> None:
    me, other = _two_users(client)
    headers = make_key(client, "user", me)
    user_ops = [(m, p) for m, p, _ in _operations(client) if "{user_id}" in p]
    assert len(user_ops) >= 5, "expected user-scoped routes (settings, moods, interests)"
    for method, path in user_ops:
        r = client.request(method, _fill(path, user_id=other), headers=headers, json={})
        assert r.status_code == 403, f"{method} {path} answered {r.status_code}"
        assert "may not act for user" in r.json()["detail"]


def test_analyst_is_read_only(client: Any) -> None:
    headers = make_key(client, "analyst")
    r = client.post("/v1/users", json={"users": [{"user_id": 10**9}]}, headers=headers)
    assert r.status_code == 403
    assert "read-only" in r.json()["detail"]
    assert client.get("/v1/analytics/reports", headers=headers).status_code == 200


def test_admin_areas_need_an_admin_key(client: Any) -> None:
    me, _ = _two_users(client)
    for role, uid in (("user", me), ("service", None)):
        headers = make_key(client, role, uid)
        r = client.get("/v1/experiments", headers=headers)
        assert r.status_code == 403, role
        assert "admin" in r.json()["detail"]
    r = client.post("/v1/experiments/anything/start", headers=make_key(client, "analyst"), json={})
    assert r.status_code == 403
    assert client.get("/v1/experiments", headers=make_key(client, "admin")).status_code == 200


def test_route_policy_names_the_rule() -> None:
    import pytest
    from fastapi import HTTPException

    from api.http.auth import Principal, check_route_policy

    analyst = Principal("k", "analyst", None)
    with pytest.raises(HTTPException) as e:
        check_route_policy(analyst, method="PUT", path="/v1/models/{version}", params={})
    assert e.value.status_code == 403
    check_route_policy(analyst, method="GET", path="/v1/models/{version}", params={})
    service = Principal("k", "service", None)
    with pytest.raises(HTTPException):
        check_route_policy(service, method="POST", path="/v1/registries/x", params={})
    user = Principal("k", "user", 5)
    check_route_policy(user, method="GET", path="/v1/feed", params={"user_id": "5"})
    with pytest.raises(HTTPException):
        check_route_policy(user, method="GET", path="/v1/feed", params={"user_id": "6"})


def test_keys_are_stored_only_as_hashes(client: Any) -> None:
    store = client.app.state.engine.store
    key = make_key(client, "admin")["Authorization"].split(" ", 1)[1]
    for table_col in store.query(
        "SELECT table_name, column_name FROM information_schema.columns "
        "WHERE table_schema = 'main' AND data_type = 'VARCHAR'"
    ).iter_rows():
        t, c = table_col
        n = store.scalar(f'SELECT count(*) FROM "{t}" WHERE "{c}" = ?', [key])
        assert n == 0, f"raw key found in {t}.{c}"
    from storage.store import hash_key

    assert store.scalar("SELECT count(*) FROM api_keys WHERE key_hash = ?", [hash_key(key)]) == 1
