"""Floods are throttled: pending generation jobs per user, failed authentications per client
address (API and dashboard login), and the cache of unknown keys is bounded.

Before: one user key queued 549 jobs in 20 s, 3,000 wrong keys at 270/s and 500 login guesses
at 291/s met no 429, and every wrong key stayed in the key cache.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from api.http.auth import KeyCache, Principal
from api.http.ratelimit import FailedAuthThrottle
from api.http.settings import ApiSettings
from tests.conftest import make_key


def _client(world_dir: Path, *, address: str = "10.0.0.1", **settings: Any) -> Any:
    from fastapi.testclient import TestClient

    from api.http.main import create_app
    from pipelines.serving.engine import open_engine

    app = create_app(
        engine_factory=lambda: open_engine(world_dir),
        api_settings=ApiSettings(scheduler=False, **settings),
    )
    return TestClient(app, client=(address, 50000))


@pytest.fixture()
def throttled(world_dir: Path) -> Iterator[Any]:
    with _client(world_dir, auth_fail_burst=5, auth_fail_per_s=0.01) as c:
        yield c


def test_wrong_keys_from_one_address_get_429_after_the_burst(throttled: Any) -> None:
    uid = min(throttled.app.state.engine.state.profiles.users)
    good = make_key(throttled, "user", uid)
    codes = [
        throttled.get(
            "/v1/feed", params={"user_id": uid}, headers={"Authorization": f"Bearer sf_x_{i}"}
        ).status_code
        for i in range(8)
    ]
    assert codes == [401] * 5 + [429] * 3
    r = throttled.get("/v1/feed", params={"user_id": uid}, headers={"Authorization": "Bearer z"})
    assert r.status_code == 429
    assert int(r.headers["Retry-After"]) >= 1
    assert "failed authentications" in r.json()["detail"]
    # While throttled no key is looked up from that address, a valid one included.
    r = throttled.get("/v1/feed", params={"user_id": uid}, headers=good)
    assert r.status_code == 429
    # A request without a key costs nothing to check and is not counted: still 401.
    assert throttled.get("/v1/feed", params={"user_id": uid}).status_code == 401


def test_other_addresses_are_not_throttled_by_one_guesser(world_dir: Path) -> None:
    with _client(world_dir, address="10.0.0.9", auth_fail_burst=3, auth_fail_per_s=0.01) as bad:
        for i in range(5):
            bad.get("/v1/feed", params={"user_id": 1}, headers={"Authorization": f"Bearer {i}"})
        uid = min(bad.app.state.engine.state.profiles.users)
        good = make_key(bad, "user", uid)
        assert bad.get("/v1/feed", params={"user_id": uid}, headers=good).status_code == 429
        throttle = bad.app.state.auth_throttle
        assert throttle.wait("10.0.0.9") > 0
        assert throttle.wait("10.0.0.10") == 0.0


def test_dashboard_login_guesses_are_throttled(throttled: Any) -> None:
    codes = [
        throttled.post(
            "/dashboard/login", data={"key": f"sf_000000000000_guess{i}"}, follow_redirects=False
        ).status_code
        for i in range(7)
    ]
    assert codes == [401] * 5 + [429] * 2
    r = throttled.post("/dashboard/login", data={"key": "sf_x_y"}, follow_redirects=False)
    assert r.status_code == 429 and int(r.headers["Retry-After"]) >= 1
    assert "failed authentications" in r.text
    # The page's cookie goes through the same throttle.
    throttled.cookies.set("steerfeed_key", "sf_000000000000_cookie")
    assert throttled.get("/dashboard").status_code == 429


def test_login_body_is_small(throttled: Any) -> None:
    r = throttled.post("/dashboard/login", data={"key": "k" * 5000}, follow_redirects=False)
    assert r.status_code == 413


def test_throttle_refills_and_forgets_old_addresses() -> None:
    now = [0.0]
    t = FailedAuthThrottle(
        ApiSettings(auth_fail_per_s=1.0, auth_fail_burst=2, auth_fail_addresses=3),
        clock=lambda: now[0],
    )
    t.failed("a")
    t.failed("a")
    assert t.wait("a") == pytest.approx(1.0)
    now[0] += 1.0
    assert t.wait("a") == 0.0
    for addr in ("b", "c", "d", "e"):
        t.failed(addr)
    assert len(t) == 3  # bounded: the least recently failing address was dropped
    off = FailedAuthThrottle(ApiSettings(auth_fail_per_s=0))
    for _ in range(100):
        off.failed("a")
    assert off.wait("a") == 0.0 and len(off) == 0


def test_unknown_keys_cannot_grow_the_key_cache_or_evict_valid_keys() -> None:
    cache = KeyCache(ttl_s=30.0, max_known=10, max_unknown=100)
    p = Principal("k1", "user", 1)
    cache.put("valid", p, 0.0)
    for i in range(10_000):
        cache.put(f"wrong{i}", None, 1.0)
    assert cache.sizes() == (1, 100)
    assert cache.get("valid", 2.0) == (True, p)
    assert cache.get("wrong9999", 2.0) == (True, None)
    assert cache.get("wrong0", 2.0) == (False, None)  # evicted: looked up again
    assert cache.get("valid", 40.0) == (False, None)  # expired


def test_wrong_keys_through_the_api_stay_within_the_cache_bound(world_dir: Path) -> None:
    from api.http import deps

    deps.forget_cached_keys()
    bound = deps._key_cache.max_unknown
    with _client(world_dir, auth_fail_per_s=0) as c:
        for i in range(50):
            c.get("/v1/feed", params={"user_id": 1}, headers={"Authorization": f"Bearer k{i}"})
    _known, unknown = deps._key_cache.sizes()
    assert unknown <= bound
    assert unknown == 50


def test_a_user_can_have_only_a_few_generation_jobs_pending(world_dir: Path) -> None:
    with _client(world_dir, generation_max_pending_per_user=3, rate_limit_per_s=0) as c:
        users = sorted(c.app.state.engine.state.profiles.users)
        me, other = users[0], users[1]
        h = make_key(c, "user", me)
        codes = []
        for i in range(5):
            ask = {"user_id": me, "prompt": f"a calm lake at dawn, take {i}"}
            codes.append(c.post("/v1/generations", json=ask, headers=h).status_code)
        assert codes == [202, 202, 202, 429, 429]
        r = c.post("/v1/generations", json={"user_id": me, "prompt": "one more lake"}, headers=h)
        assert r.status_code == 429
        assert r.headers["Retry-After"] == "30"
        assert "at most 3" in r.json()["detail"]
        # Another user is not held back by this one's queue.
        ho = make_key(c, "user", other)
        ask = {"user_id": other, "prompt": "a forest in the rain"}
        assert c.post("/v1/generations", json=ask, headers=ho).status_code == 202
        # Once a job finishes, the user may queue one more.
        queue = c.app.state.engine.generation.queue
        job = next(j for j in queue.claim(10) if j.requested_by == me)
        queue.complete(job.job_id, item_id=0)
        ask = {"user_id": me, "prompt": "a calm lake at dusk"}
        assert c.post("/v1/generations", json=ask, headers=h).status_code == 202
        assert c.post("/v1/generations", json=ask, headers=h).status_code == 429
