"""Keys, job runs and the satisfaction report over HTTP, and the local credential the CLI uses
beside a running server: who may call them, what bad input answers, and that a revoked key is
refused at once."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.http.local_access import LOCAL_TOKEN_HEADER, announce_server, withdraw_server
from api.http.main import create_app
from api.http.settings import ApiSettings
from pipelines.serving.engine import open_engine
from tests.conftest import make_key

ADMIN_ROUTES = [
    ("POST", "/v1/admin/keys", {"role": "analyst"}),
    ("GET", "/v1/admin/keys", None),
    ("DELETE", "/v1/admin/keys/abc123", None),
    ("GET", "/v1/admin/jobs", None),
    ("POST", "/v1/admin/jobs/wellbeing_refresh/run", None),
]


def _call(c: Any, method: str, path: str, body: Any, headers: dict[str, str]) -> Any:
    return c.request(method, path, json=body, headers=headers)


@pytest.mark.parametrize(("method", "path", "body"), ADMIN_ROUTES)
def test_admin_routes_need_a_key_and_the_admin_role(
    client: Any, method: str, path: str, body: Any
) -> None:
    assert _call(client, method, path, body, {}).status_code == 401
    for role, uid in (("service", None), ("analyst", None), ("user", 1), ("parent", 2)):
        r = _call(client, method, path, body, make_key(client, role, user_id=uid))
        assert r.status_code == 403, (role, r.text)


def test_a_created_key_works_lists_without_its_secret_and_is_refused_once_revoked(
    client: Any,
) -> None:
    admin = make_key(client, "admin")
    r = client.post("/v1/admin/keys", json={"role": "analyst"}, headers=admin)
    assert r.status_code == 201, r.text
    created = r.json()
    assert created["role"] == "analyst" and created["user_id"] is None
    key, key_id = created["key"], created["key_id"]
    analyst = {"Authorization": f"Bearer {key}"}
    assert client.get("/v1/models", headers=analyst).status_code == 200  # now cached as valid

    listed = client.get("/v1/admin/keys", headers=admin)
    assert listed.status_code == 200
    rows = {k["key_id"]: k for k in listed.json()["keys"]}
    assert rows[key_id] == {**rows[key_id], "role": "analyst", "revoked": False}
    assert set(rows[key_id]) == {"key_id", "role", "user_id", "created_at", "revoked"}
    assert key.split("_", 2)[2] not in listed.text and "hash" not in listed.text

    r = client.delete(f"/v1/admin/keys/{key_id}", headers=admin)
    assert r.json() == {"key_id": key_id, "revoked": True, "already_revoked": False}
    # Refused on the very next request, although its lookup was cached as valid.
    assert client.get("/v1/models", headers=analyst).status_code == 401
    rows = {k["key_id"]: k for k in client.get("/v1/admin/keys", headers=admin).json()["keys"]}
    assert rows[key_id]["revoked"] is True
    again = client.delete(f"/v1/admin/keys/{key_id}", headers=admin)
    assert again.status_code == 200 and again.json()["already_revoked"] is True


def test_a_user_key_made_over_http_acts_for_its_user_only(client: Any) -> None:
    admin = make_key(client, "admin")
    r = client.post("/v1/admin/keys", json={"role": "user", "user_id": 1}, headers=admin)
    assert r.status_code == 201 and r.json()["user_id"] == 1
    own = {"Authorization": f"Bearer {r.json()['key']}"}
    assert client.get("/v1/feed", params={"user_id": 1, "limit": 3}, headers=own).status_code == 200
    assert client.get("/v1/feed", params={"user_id": 2, "limit": 3}, headers=own).status_code == 403


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ({"role": "wizard"}, "unknown role 'wizard'; valid: service, user, analyst, admin, parent"),
        ({"role": "user"}, "acts for one user"),
        ({"role": "parent"}, "acts for one user"),
        ({"role": "service", "user_id": 3}, "acts for no single user"),
        ({"role": "admin", "extra": 1}, "extra"),
        ({"role": "user", "user_id": -1}, "greater than or equal"),
    ],
)
def test_bad_key_requests_are_422_with_what_to_fix(client: Any, body: Any, says: str) -> None:
    r = client.post("/v1/admin/keys", json=body, headers=make_key(client, "admin"))
    assert r.status_code == 422
    assert says in r.text


def test_revoking_an_unknown_or_malformed_key_id_is_a_4xx(client: Any) -> None:
    admin = make_key(client, "admin")
    r = client.delete("/v1/admin/keys/abc123", headers=admin)
    assert r.status_code == 404 and "unknown key 'abc123'" in r.json()["detail"]
    assert client.delete("/v1/admin/keys/NOT-AN-ID", headers=admin).status_code == 422


def test_jobs_run_over_http_report_and_an_unknown_job_lists_the_valid_ones(client: Any) -> None:
    admin = make_key(client, "admin")
    names = [j["name"] for j in client.get("/v1/admin/jobs", headers=admin).json()["jobs"]]
    assert "train" in names and "wellbeing_refresh" in names
    r = client.post("/v1/admin/jobs/wellbeing_refresh/run", headers=admin)
    assert r.status_code == 200, r.text
    assert r.json()["name"] == "wellbeing_refresh" and r.json()["ok"] is True
    r = client.post("/v1/admin/jobs/nope/run", headers=admin)
    assert r.status_code == 404 and "valid: " in r.json()["detail"]


def test_the_satisfaction_report_page_is_for_analysts_and_admins(client: Any) -> None:
    r = client.get("/v1/analytics/satisfaction-report", headers=make_key(client, "analyst"))
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert "How people feel about their time" in r.text
    r = client.get("/v1/analytics/satisfaction-report", headers=make_key(client, "service"))
    assert r.status_code == 403


@pytest.fixture()
def served(world_dir: Path) -> Iterator[tuple[Path, str]]:
    """The app over ``world_dir`` as ``steerfeed serve`` starts it: the data folder holds this
    process's ``server.json`` and local token. Yields (data folder, token)."""
    announce_server(world_dir, host="127.0.0.1", port=8000)
    try:
        yield world_dir, (world_dir / "server.token").read_text()
    finally:
        withdraw_server(world_dir)


def _app(world_dir: Path) -> Any:
    return create_app(
        engine_factory=lambda: open_engine(world_dir), api_settings=ApiSettings(scheduler=False)
    )


def test_the_local_token_is_owner_only_and_acts_as_admin_from_loopback_only(
    served: tuple[Path, str],
) -> None:
    world_dir, token = served
    assert (world_dir / "server.token").stat().st_mode & 0o777 == 0o600
    local = {LOCAL_TOKEN_HEADER: token}
    with TestClient(_app(world_dir), client=("127.0.0.1", 40000)) as c:
        r = c.post("/v1/admin/keys", json={"role": "admin"}, headers=local)
        assert r.status_code == 201, r.text
        assert c.get("/v1/admin/keys", headers=local).status_code == 200
        wrong = {LOCAL_TOKEN_HEADER: token[:-1] + ("A" if token[-1] != "A" else "B")}
        assert c.get("/v1/admin/keys", headers=wrong).status_code == 401
        # The admin action is audited under the local credential's id.
        audit = c.get("/v1/admin/audit-log", headers=local).json()
        assert any(e.get("key_id") == "local-cli" for e in audit["entries"]), audit
    with TestClient(_app(world_dir), client=("10.1.2.3", 40000)) as c:
        r = c.get("/v1/admin/keys", headers=local)
        assert r.status_code == 401 and "loopback" in r.json()["detail"]


def test_an_app_not_started_by_serve_accepts_no_local_token(world_dir: Path) -> None:
    # A token file from a server that is gone (another pid) is not this app's.
    announce_server(world_dir, host="127.0.0.1", port=8000)
    token = (world_dir / "server.token").read_text()
    raw = (world_dir / "server.json").read_text()
    (world_dir / "server.json").write_text(raw.replace(f'"pid": {os.getpid()}', '"pid": 1'))
    with TestClient(_app(world_dir), client=("127.0.0.1", 40000)) as c:
        r = c.get("/v1/admin/keys", headers={LOCAL_TOKEN_HEADER: token})
        assert r.status_code == 401
