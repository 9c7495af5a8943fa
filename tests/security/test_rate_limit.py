"""Per-key token buckets answer 429 with Retry-After."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from api.http.ratelimit import RateLimiter
from api.http.settings import ApiSettings
from tests.conftest import make_key


def test_bucket_grants_a_burst_then_asks_to_wait() -> None:
    now = [0.0]
    lim = RateLimiter(
        ApiSettings(rate_limit_per_s=2.0, rate_limit_burst=3, rate_limit_roles={}),
        clock=lambda: now[0],
    )
    assert [lim.acquire("a", "user") for _ in range(3)] == [0.0, 0.0, 0.0]
    wait = lim.acquire("a", "user")
    assert wait == pytest.approx(0.5)
    assert lim.acquire("b", "user") == 0.0  # buckets are per key
    now[0] += 0.5
    assert lim.acquire("a", "user") == 0.0


def test_role_override_and_zero_disables() -> None:
    lim = RateLimiter(
        ApiSettings(rate_limit_per_s=1.0, rate_limit_burst=1, rate_limit_roles={"service": 0})
    )
    assert all(lim.acquire("s", "service") == 0.0 for _ in range(100))
    lim.acquire("u", "user")
    assert lim.acquire("u", "user") > 0


@pytest.fixture()
def limited_client(world_dir: Path) -> Iterator[Any]:
    from fastapi.testclient import TestClient

    from api.http.main import create_app
    from pipelines.serving.engine import open_engine

    settings = ApiSettings(
        scheduler=False, rate_limit_per_s=0.01, rate_limit_burst=3, rate_limit_roles={}
    )
    app = create_app(engine_factory=lambda: open_engine(world_dir), api_settings=settings)
    with TestClient(app) as c:
        yield c


def test_fourth_request_over_a_burst_of_three_is_429(limited_client: Any) -> None:
    uid = min(limited_client.app.state.engine.state.profiles.users)
    headers = make_key(limited_client, "user", uid)
    codes = [
        limited_client.get("/v1/feed", params={"user_id": uid}, headers=headers).status_code
        for _ in range(4)
    ]
    assert codes == [200, 200, 200, 429]
    r = limited_client.get("/v1/feed", params={"user_id": uid}, headers=headers)
    assert int(r.headers["Retry-After"]) >= 1
    assert "rate limit" in r.json()["detail"]
    other = make_key(limited_client, "admin")
    assert limited_client.get("/v1/experiments", headers=other).status_code == 200
