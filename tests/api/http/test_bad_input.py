"""Hostile input never gets a 5xx: oversized and deeply nested JSON, unicode edge cases in
prompts, SQL-looking strings in every text field of every operation."""

from __future__ import annotations

import itertools
from typing import Any

from tests.conftest import make_key

SQL = "'; DROP TABLE users; -- \" OR 1=1 /* ) UNION SELECT key_hash FROM api_keys"
UNICODE_PROMPTS = [
    "\u0000calm\u0000nature",  # NUL bytes
    "\u202enews on\u202c no",  # right-to-left override
    "\u200b\u200c\u200d\ufeff",  # only zero-width characters
    "👩‍👩‍👧‍👦" * 300,  # family emoji (ZWJ sequences)
    "e" + "\u0301" * 5000,  # one letter under 5000 combining accents
    "𝔠𝔞𝔩𝔪 ｎａｔｕｒｅ ＮＯ news",  # mathematical and full-width letters
    "\U0010ffff\U000e0001 tags",  # last code point, tag characters
    "calme, nature, pas d'actualités — 平静 自然 不要新闻 — هادئ",
    "x" * 10_000,  # at the length limit
]


def _status_ok(r: Any) -> None:
    assert r.status_code < 500, f"{r.request.method} {r.request.url} -> {r.status_code} {r.text}"


def _client_error(r: Any) -> None:
    """A 4xx (the request was wrong and the answer says so), not a success nor a 5xx."""
    assert 400 <= r.status_code < 500, (
        f"{r.request.method} {r.request.url} -> {r.status_code} {r.text[:300]}"
    )


def test_oversized_body_is_413_with_a_hint(client: Any) -> None:
    headers = make_key(client, "service")
    body = b'{"events": [' + b",".join([b'{"event_id": "x"}'] * 400_000) + b"]}"
    r = client.post(
        "/v1/events", content=body, headers={**headers, "content-type": "application/json"}
    )
    assert r.status_code == 413
    assert "smaller batches" in r.json()["detail"]


def test_deeply_nested_json_is_a_4xx(client: Any) -> None:
    headers = {**make_key(client, "admin"), "content-type": "application/json"}
    uid = min(client.app.state.engine.state.profiles.users)
    paths = ("/v1/events", "/v1/users", f"/v1/users/{uid}/mood", "/v1/experiments")
    for depth, path in itertools.product((1_000, 100_000), paths):
        nested = "[" * depth + "]" * depth
        r = client.post(path, content=nested.encode(), headers=headers)
        _client_error(r)
        assert r.status_code in (400, 413, 422)
        obj = '{"a":' * depth + "1" + "}" * depth
        r = client.post(path, content=obj.encode(), headers=headers)
        _client_error(r)


def test_invalid_utf8_and_lone_surrogates_are_a_4xx(client: Any) -> None:
    uid = min(client.app.state.engine.state.profiles.users)
    headers = {**make_key(client, "user", uid), "content-type": "application/json"}
    for raw in (b'{"text": "\xff\xfe calm"}', b'{"text": "\\ud800 calm"}', b'{"text": "\\udfff"}'):
        r = client.post(f"/v1/users/{uid}/mood", content=raw, headers=headers)
        _client_error(r)


def test_unicode_edge_cases_in_mood_prompts(client: Any) -> None:
    users = sorted(client.app.state.engine.state.profiles.users)
    for uid, prompt in zip(users, UNICODE_PROMPTS, strict=False):  # one user each: no mood cap
        headers = make_key(client, "user", uid)
        r = client.post(f"/v1/users/{uid}/mood", json={"text": prompt}, headers=headers)
        _status_ok(r)
        assert r.status_code in (201, 413, 422), r.text
        page = client.get("/v1/feed", params={"user_id": uid}, headers=headers)
        assert page.status_code == 200, (prompt[:20], page.text)


def _resolve(schema: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        name = node["$ref"].rsplit("/", 1)[-1]
        node = schema["components"]["schemas"][name]
    return node


def _fill(schema: dict[str, Any], node: dict[str, Any], uid: int, item: int, name: str = "") -> Any:
    """A value for ``node`` where every free string is the SQL payload."""
    node = _resolve(schema, node)
    for key in ("anyOf", "oneOf"):
        if key in node:
            options = [o for o in node[key] if _resolve(schema, o).get("type") != "null"]
            return _fill(schema, options[0], uid, item, name) if options else None
    if "enum" in node:
        return node["enum"][0]
    if "const" in node:
        return node["const"]
    t = node.get("type")
    if t == "object":
        props = node.get("properties", {})
        return {k: _fill(schema, v, uid, item, k) for k, v in props.items()}
    if t == "array":
        return [_fill(schema, node.get("items", {}), uid, item, name)]
    if t == "string":
        return SQL
    if t == "integer":
        return item if "item" in name or "clip" in name else uid
    if t == "number":
        return 0.5
    if t == "boolean":
        return True
    return SQL


def test_sql_looking_strings_in_every_text_field(client: Any) -> None:
    eng = client.app.state.engine
    uid = min(eng.state.profiles.users)
    item = int(eng.state.catalogue.item_ids[0])
    headers = make_key(client, "admin")
    schema = client.app.openapi()
    tables_before = set(eng.store.query("SHOW TABLES")["name"].to_list())
    users_before = eng.store.count("users")
    n = 0
    for path, ops in schema["paths"].items():
        for method, op in ops.items():
            if method == "delete" and path == "/v1/users/{user_id}":
                continue  # would erase the user this test probes with
            params: dict[str, Any] = {}
            url = path
            for p in op.get("parameters", []):
                value = _fill(schema, p.get("schema", {}), uid, item, p["name"])
                if p["in"] == "path":
                    url = url.replace("{" + p["name"] + "}", str(value))
                elif p["in"] == "query":
                    params[p["name"]] = value
            body = None
            content = op.get("requestBody", {}).get("content", {})
            if "application/json" in content:
                body = _fill(schema, content["application/json"]["schema"], uid, item)
            r = client.request(method.upper(), url, params=params, json=body, headers=headers)
            _status_ok(r)
            n += 1
    assert n >= 20
    assert set(eng.store.query("SHOW TABLES")["name"].to_list()) >= tables_before
    assert eng.store.count("users") == users_before
