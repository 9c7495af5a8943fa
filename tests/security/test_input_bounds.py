"""Every input is bounded at the schema, and cleaning is linear: one request cannot hold a core.

``PUT /v1/users/{id}/controls`` with 100k muted words took 150 s to answer 422 (de-duplication
was quadratic and ran before the cap). Now every list, string, number and map of every request
body and parameter has a bound in the OpenAPI schema (checked here for all operations), the
controls lists are capped at the schema, and the cleaning stops at the cap.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from api.http.main import create_app
from steering.controls import MAX_RULES, Controls, _clean_words
from tests.conftest import make_key

#: String formats whose parser reads a fixed, short shape.
BOUNDED_FORMATS = {"date-time", "date", "time"}


def _resolve(schema: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        node = schema["components"]["schemas"][node["$ref"].rsplit("/", 1)[-1]]
    return node


def unbounded(
    schema: dict[str, Any], node: dict[str, Any], where: str, *, seen: frozenset[str] = frozenset()
) -> Iterator[str]:
    """Paths (``where``) of every part of ``node`` with no upper bound."""
    ref = node.get("$ref", "")
    if ref in seen:
        return
    node = _resolve(schema, node)
    seen = seen | {ref} if ref else seen
    for key in ("anyOf", "oneOf", "allOf"):
        for i, option in enumerate(node.get(key, [])):
            yield from unbounded(schema, option, f"{where}|{i}", seen=seen)
    if "enum" in node or "const" in node or any(k in node for k in ("anyOf", "oneOf", "allOf")):
        return
    t = node.get("type")
    if t == "string":
        if "maxLength" not in node and node.get("format") not in BOUNDED_FORMATS:
            yield f"{where}: string without maxLength"
    elif t in ("integer", "number"):
        if not ({"maximum", "exclusiveMaximum"} & set(node)) or not (
            {"minimum", "exclusiveMinimum"} & set(node)
        ):
            yield f"{where}: {t} without both bounds"
    elif t == "array":
        if "maxItems" not in node:
            yield f"{where}: array without maxItems"
        yield from unbounded(schema, node.get("items", {}), f"{where}[]", seen=seen)
    elif t == "object" or "properties" in node:
        yield from _unbounded_object(schema, node, where, seen=seen)
    elif t is None and node:
        yield f"{where}: value of no declared type"


def _unbounded_object(
    schema: dict[str, Any], node: dict[str, Any], where: str, *, seen: frozenset[str]
) -> Iterator[str]:
    """:func:`unbounded` for an object: its properties, and its size when it is a map."""
    for name, prop in node.get("properties", {}).items():
        yield from unbounded(schema, prop, f"{where}.{name}", seen=seen)
    extra = node.get("additionalProperties", True)
    if extra is not False:
        if "maxProperties" not in node:
            yield f"{where}: map without maxProperties"
        if "properties" not in node and "maxLength" not in node.get("propertyNames", {}):
            yield f"{where}: map keys without maxLength"
        # Free-form values ({} = any JSON) are bounded in bytes by the model's validator.
        if isinstance(extra, dict) and extra:
            yield from unbounded(schema, extra, f"{where}{{value}}", seen=seen)


def test_every_request_input_is_bounded_in_the_schema() -> None:
    schema = create_app().openapi()
    problems: list[str] = []
    n_ops = 0
    for path, ops in schema["paths"].items():
        for method, op in ops.items():
            n_ops += 1
            name = f"{method.upper()} {path}"
            for p in op.get("parameters", []):
                where = f"{name} {p['in']}:{p['name']}"
                problems += unbounded(schema, p.get("schema", {}), where)
            for media, content in op.get("requestBody", {}).get("content", {}).items():
                problems += unbounded(schema, content.get("schema", {}), f"{name} body({media})")
    assert n_ops >= 50
    assert not problems, "unbounded inputs:\n" + "\n".join(problems)


def test_controls_with_100k_muted_words_is_refused_at_the_schema(client: Any) -> None:
    uid = min(client.app.state.engine.state.profiles.users)
    headers = make_key(client, "user", uid)
    words = [f"word{i}" for i in range(100_000)]
    r = client.put(f"/v1/users/{uid}/controls", json={"muted_words": words}, headers=headers)
    assert r.status_code == 422
    body = r.json()
    assert body["detail"][0]["loc"] == ["body", "muted_words"]  # the schema, not the cleaning
    assert "at most 100" in body["message"]
    long_word = "x" * 1000
    r = client.put(f"/v1/users/{uid}/controls", json={"never_show": [long_word]}, headers=headers)
    assert r.status_code == 422
    assert r.json()["detail"][0]["loc"][:2] == ["body", "never_show"]
    r = client.put(
        f"/v1/users/{uid}/controls", json={"muted_authors": list(range(1001))}, headers=headers
    )
    assert r.status_code == 422
    # A full list at the cap is still accepted and cleaned.
    ok = [f"  Word{i}  " for i in range(MAX_RULES)]
    r = client.put(f"/v1/users/{uid}/controls", json={"muted_words": ok}, headers=headers)
    assert r.status_code == 200, r.text
    assert r.json()["muted_words"][:2] == ["word0", "word1"]


def test_cleaning_stops_at_the_first_entry_past_the_cap() -> None:
    pulled = 0

    def words() -> Iterator[str]:
        nonlocal pulled
        for i in range(100_000):
            pulled += 1
            yield f"w{i}"

    with pytest.raises(ValueError, match=f"at most {MAX_RULES}"):
        _clean_words(words())
    assert pulled == MAX_RULES + 1
    # Repeats and blanks do not count towards the cap; order is kept.
    assert _clean_words(["B", "b", " ", "a  c", "A C"] * 50) == ["b", "a c"]


def test_stored_controls_over_the_cap_are_refused_too() -> None:
    with pytest.raises(ValueError, match="at most"):
        Controls(muted_words=[f"w{i}" for i in range(MAX_RULES + 1)])


def test_user_settings_are_bounded(client: Any) -> None:
    headers = make_key(client, "service")
    big = {"settings": {"blob": "x" * 20_000}, "user_id": 10**9}
    r = client.post("/v1/users", json={"users": [big]}, headers=headers)
    assert r.status_code == 422 and "at most 16384" in r.text
    many = {"settings": {f"k{i}": 1 for i in range(65)}, "user_id": 10**9}
    assert client.post("/v1/users", json={"users": [many]}, headers=headers).status_code == 422


def test_event_batch_over_the_cap_is_413_without_validating_every_event(client: Any) -> None:
    headers = make_key(client, "service")
    junk = {"events": [{"nonsense": True}] * 20_000}  # every item invalid: checked 0 of them
    r = client.post("/v1/events", json=junk, headers=headers)
    assert r.status_code == 413
    assert "at most 1000" in r.json()["detail"]


def test_experiment_definitions_are_bounded(client: Any) -> None:
    headers = make_key(client, "admin")
    base = {"name": "bounded", "salt": "s", "arms": [{"name": "control"}, {"name": "b"}]}
    r = client.post("/v1/experiments", json={**base, "guardrails": ["satisfaction"] * 200_000})
    assert r.status_code == 401  # no key: refused before the body is read
    r = client.post(
        "/v1/experiments",
        json={**base, "guardrails": ["satisfaction"] * 200_000},
        headers=headers,
    )
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "guardrails"]
    r = client.post("/v1/experiments", json={**base, "anything": 1}, headers=headers)
    assert r.status_code == 422 and "anything" in r.text
    r = client.post("/v1/experiments", json=base, headers=headers)
    assert r.status_code == 201, r.text
    r = client.get(
        "/v1/experiments/off-policy", params={"target_rate": [0.1] * 11}, headers=headers
    )
    assert r.status_code == 422


@pytest.mark.slow
def test_worst_controls_request_probe(client: Any) -> None:
    """The report's worst request: controls with 100k distinct muted words, five times, and,
    as a reference measured in the same run, another user's page. Prints the figures with
    ``STEERFEED_PROBE_PRINT=1``; asserts the answers only (speed is not asserted)."""
    import os
    import statistics
    import time

    users = sorted(client.app.state.engine.state.profiles.users)
    uid, other = users[0], users[1]
    headers, other_h = make_key(client, "user", uid), make_key(client, "user", other)
    body = {"muted_words": [f"word{i}" for i in range(100_000)]}
    took = []
    for _ in range(5):
        t0 = time.perf_counter()
        r = client.put(f"/v1/users/{uid}/controls", json=body, headers=headers)
        took.append(time.perf_counter() - t0)
        assert r.status_code == 422
    pages = []
    for _ in range(20):
        t0 = time.perf_counter()
        r = client.get("/v1/feed", params={"user_id": other, "limit": 20}, headers=other_h)
        pages.append(time.perf_counter() - t0)
        assert r.status_code == 200
    if os.environ.get("STEERFEED_PROBE_PRINT"):
        print(
            f"controls 100k muted words: median {statistics.median(took) * 1000:.0f} ms, "
            f"max {max(took) * 1000:.0f} ms; another user's page p50 "
            f"{statistics.median(pages) * 1000:.0f} ms"
        )
