"""Admin actions land in the audit log; reads and other roles' writes do not."""

from __future__ import annotations

from typing import Any

from tests.conftest import make_key


def test_admin_writes_are_audited_with_route_and_status(client: Any) -> None:
    admin = make_key(client, "admin")
    client.post("/v1/users", json={"users": [{"user_id": 555_000_001}]}, headers=admin)
    client.post("/v1/users", json={"users": [{"user_id": 555_000_002}]}, headers=admin)  # ok
    client.post("/v1/users", json={"users": [{"user_id": 555_000_001}]}, headers=admin)  # 409
    client.get("/v1/experiments", headers=admin)
    client.post(
        "/v1/users", json={"users": [{"user_id": 555_000_003}]}, headers=make_key(client, "service")
    )
    entries = client.get("/v1/admin/audit-log", headers=admin).json()["entries"]
    assert [(e["action"], e["status"], e["role"]) for e in entries] == [
        ("POST /v1/users", 409, "admin"),
        ("POST /v1/users", 201, "admin"),
        ("POST /v1/users", 201, "admin"),
    ]


def test_record_helper_for_routes_and_jobs(engine: Any) -> None:
    from api.http.audit import recent, record

    record(engine.store, principal=None, action="model.promote", target="v3", details={"a": 1})
    (e,) = recent(engine.store)
    assert (e["role"], e["action"], e["target"], e["details"]) == (
        "system",
        "model.promote",
        "v3",
        '{"a": 1}',
    )
