"""One behaviour suite for the rate limits and the failed-authentication throttle, run on each
bucket backend: this process's memory, Redis and the store's PostgreSQL (storage/buckets.py).

Two limiters made by one backend stand for two serving workers. On the shared backends they
share every bucket, so the two together grant one burst; in memory each grants its own (the
single-process default, per worker by design). The Redis and PostgreSQL halves are skipped, with
the reason, when their server does not answer (tests/shared_servers.py).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import REGISTRY

from api.http.ratelimit import (
    FailedAuthThrottle,
    FailOpenBuckets,
    LimitsConfigError,
    RateLimiter,
    limits_for,
    shared_buckets_url,
)
from api.http.settings import ApiSettings
from storage.buckets import PostgresBuckets, open_buckets
from storage.factory import open_store
from tests.conftest import make_key
from tests.shared_servers import (
    REDIS_URL,
    forget_redis_keys,
    migrated_postgres_database,
    postgres_unreachable,
    redis_unreachable,
)

_PG_SKIP = postgres_unreachable()
_REDIS_SKIP = redis_unreachable()
SHARED = [
    pytest.param(
        "redis", marks=pytest.mark.skipif(_REDIS_SKIP is not None, reason=str(_REDIS_SKIP))
    ),
    pytest.param("postgres", marks=pytest.mark.skipif(_PG_SKIP is not None, reason=str(_PG_SKIP))),
]
Clock = Callable[[], float]


def _fallbacks(limit: str) -> float:
    value = REGISTRY.get_sample_value("steerfeed_shared_limit_fallbacks_total", {"limit": limit})
    return value or 0.0


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    """A migrated database for this module (only made when a PostgreSQL test runs)."""
    if _PG_SKIP is not None:
        pytest.skip(_PG_SKIP)
    with migrated_postgres_database() as url:
        yield url


def _url(backend: str, request: pytest.FixtureRequest) -> str:
    return REDIS_URL if backend == "redis" else str(request.getfixturevalue("postgres_url"))


@dataclass
class Workers:
    """Makes the limiters of one 'worker' on the backend under test."""

    backend: str
    url: str | None
    namespace: str = field(default_factory=lambda: f"test-{uuid.uuid4().hex[:10]}")
    opened: list[FailOpenBuckets] = field(default_factory=list)

    @property
    def shared(self) -> bool:
        return self.url is not None

    def _buckets(self, clock: Clock | None) -> FailOpenBuckets | None:
        if self.url is None:
            return None
        buckets = FailOpenBuckets(open_buckets(self.url, namespace=self.namespace, clock=clock))
        self.opened.append(buckets)
        return buckets

    def limiter(self, settings: ApiSettings, clock: Clock | None = None) -> RateLimiter:
        """A worker's rate limiter (``clock``: None is the server's, or time.monotonic)."""
        return RateLimiter(settings, clock=clock or time.monotonic, shared=self._buckets(clock))

    def throttle(self, settings: ApiSettings, clock: Clock | None = None) -> FailedAuthThrottle:
        """A worker's failed-authentication throttle."""
        return FailedAuthThrottle(
            settings, clock=clock or time.monotonic, shared=self._buckets(clock)
        )


@pytest.fixture(params=[pytest.param("memory"), *SHARED])
def workers(request: pytest.FixtureRequest) -> Iterator[Workers]:
    backend = str(request.param)
    w = Workers(backend, None if backend == "memory" else _url(backend, request))
    before = (_fallbacks("rate"), _fallbacks("auth_fail"))
    yield w
    for buckets in w.opened:
        buckets.close()
    if backend == "redis":
        forget_redis_keys(w.namespace)
    # Every answer came from the backend under test, none from a worker's own fallback.
    assert (_fallbacks("rate"), _fallbacks("auth_fail")) == before


class FakeClock:
    """Seconds that move only when the test says."""

    def __init__(self, start: float = 1_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now


def _settings(**kw: Any) -> ApiSettings:
    return ApiSettings(**{"rate_limit_roles": {}, **kw})


# -- rate limits --------------------------------------------------------------------------------
def test_a_burst_is_granted_then_refused_with_the_wait(workers: Workers) -> None:
    clock = FakeClock()
    lim = workers.limiter(_settings(rate_limit_per_s=2.0, rate_limit_burst=3), clock)
    assert [lim.acquire("a", "user") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert lim.acquire("a", "user") == pytest.approx(0.5, abs=1e-4)
    assert lim.acquire("b", "user") == 0.0  # buckets are per key
    clock.now += 0.5
    assert lim.acquire("a", "user") == 0.0
    assert lim.acquire("a", "user") == pytest.approx(0.5, abs=1e-4)


def test_an_empty_bucket_refills_over_real_time(workers: Workers) -> None:
    lim = workers.limiter(_settings(rate_limit_per_s=20.0, rate_limit_burst=2))
    assert lim.acquire("a", "user") == 0.0
    assert lim.acquire("a", "user") == 0.0
    wait = lim.acquire("a", "user")
    assert 0.0 < wait <= 0.05 + 1e-3
    deadline = time.monotonic() + 10.0
    while (wait := lim.acquire("a", "user")) > 0 and time.monotonic() < deadline:
        time.sleep(wait)
    assert wait == 0.0  # a token came back while we waited as told


def test_each_role_has_its_rate(workers: Workers) -> None:
    clock = FakeClock()
    settings = _settings(
        rate_limit_per_s=1.0, rate_limit_burst=1, rate_limit_roles={"service": 0, "analyst": 100}
    )
    lim = workers.limiter(settings, clock)
    assert all(lim.acquire("s", "service") == 0.0 for _ in range(50))  # 0: not limited
    assert lim.acquire("u", "user") == 0.0
    assert lim.acquire("u", "user") == pytest.approx(1.0, abs=1e-4)
    assert lim.acquire("an", "analyst") == 0.0
    assert lim.acquire("an", "analyst") == pytest.approx(0.01, abs=1e-4)


def test_two_workers_together_grant_one_burst(workers: Workers) -> None:
    clock = FakeClock()
    settings = _settings(rate_limit_per_s=0.01, rate_limit_burst=4)
    one, two = workers.limiter(settings, clock), workers.limiter(settings, clock)
    granted = sum(lim.acquire("k", "user") == 0.0 for _ in range(10) for lim in (one, two))
    # Shared buckets: 4 across both workers. In memory each worker grants its own burst.
    assert granted == (4 if workers.shared else 8)


# -- failed authentications ---------------------------------------------------------------------
def test_failed_authentications_throttle_after_the_burst_and_refill(workers: Workers) -> None:
    clock = FakeClock()
    settings = _settings(auth_fail_per_s=1.0, auth_fail_burst=2)
    t = workers.throttle(settings, clock)
    assert t.wait("10.0.0.1") == 0.0  # never failed
    t.failed("10.0.0.1")
    assert t.wait("10.0.0.1") == 0.0
    t.failed("10.0.0.1")
    assert t.wait("10.0.0.1") == pytest.approx(1.0, abs=1e-4)
    t.failed("10.0.0.1")  # failing while throttled does not go below empty
    assert t.wait("10.0.0.1") == pytest.approx(1.0, abs=1e-4)
    assert t.wait("10.0.0.2") == 0.0  # per address
    clock.now += 1.0
    assert t.wait("10.0.0.1") == 0.0


def test_a_guesser_gets_one_budget_across_workers(workers: Workers) -> None:
    clock = FakeClock()
    settings = _settings(auth_fail_per_s=0.01, auth_fail_burst=3)
    one, two = workers.throttle(settings, clock), workers.throttle(settings, clock)
    one.failed("10.0.0.7")
    one.failed("10.0.0.7")
    two.failed("10.0.0.7")
    if workers.shared:
        assert one.wait("10.0.0.7") > 0 and two.wait("10.0.0.7") > 0
    else:  # each worker counts only its own failures
        assert one.wait("10.0.0.7") == 0.0 and two.wait("10.0.0.7") == 0.0


# -- choosing the backend -----------------------------------------------------------------------
def test_limits_url_picks_the_deployments_buckets() -> None:
    pg = "postgresql://u@db:5432/steerfeed"
    assert shared_buckets_url("auto", "/data/steerfeed.duckdb") is None
    assert shared_buckets_url("auto", pg) == pg
    assert shared_buckets_url("store", pg) == pg
    assert shared_buckets_url("memory", pg) is None
    assert shared_buckets_url("redis://r:6379/1", None) == "redis://r:6379/1"
    with pytest.raises(LimitsConfigError, match="needs a PostgreSQL store"):
        shared_buckets_url("store", "/data/steerfeed.duckdb")
    with pytest.raises(ValueError, match="valid: auto, memory, store"):
        ApiSettings(limits_url="memcached://m:11211")


def test_a_duckdb_store_keeps_the_buckets_in_the_process(tmp_path: Path) -> None:
    store = open_store(tmp_path / "one.duckdb")
    try:
        limiter, throttle, shared = limits_for(ApiSettings(), store)
        assert shared is None and limiter.shared is None and throttle.shared is None
        with pytest.raises(LimitsConfigError):
            limits_for(ApiSettings(limits_url="store"), store)
    finally:
        store.close()


@pytest.mark.skipif(_PG_SKIP is not None, reason=str(_PG_SKIP))
def test_a_postgres_store_shares_the_buckets_by_default(postgres_url: str) -> None:
    store = open_store(postgres_url)
    try:
        limiter, throttle, shared = limits_for(ApiSettings(), store)  # limits_url=auto
        assert shared is not None and limiter.shared is shared and throttle.shared is shared
        assert isinstance(shared.shared, PostgresBuckets)
        assert shared.shared.url == postgres_url
        shared.close()
        _l, _t, none = limits_for(ApiSettings(limits_url="memory"), store)
        assert none is None
    finally:
        store.close()


# -- through the app ----------------------------------------------------------------------------
def _app_client(world_dir: Path, limits_url: str, **settings: Any) -> Any:
    from fastapi.testclient import TestClient

    from api.http.main import create_app
    from pipelines.serving.engine import open_engine

    api = ApiSettings(scheduler=False, rate_limit_roles={}, limits_url=limits_url, **settings)
    app = create_app(engine_factory=lambda: open_engine(world_dir), api_settings=api)
    return TestClient(app, client=(f"10.9.{uuid.uuid4().int % 250}.1", 50000))


@pytest.mark.parametrize("backend", SHARED)
def test_the_app_limits_a_key_once_for_every_worker(
    backend: str, world_dir: Path, request: pytest.FixtureRequest
) -> None:
    url = _url(backend, request)
    settings = {"rate_limit_per_s": 0.01, "rate_limit_burst": 3}
    with _app_client(world_dir, url, **settings) as c:
        assert c.app.state.rate_limiter.shared is not None
        headers = make_key(c, "admin")
        key_id = headers["Authorization"].split("_")[1]  # sf_<key id>_<secret>
        codes = [c.get("/v1/experiments", headers=headers).status_code for _ in range(2)]
        # Another worker of the deployment spends the key's last token.
        other = FailOpenBuckets(open_buckets(url))
        assert RateLimiter(_settings(**settings), shared=other).acquire(key_id, "admin") == 0.0
        other.close()
        r = c.get("/v1/experiments", headers=headers)
    assert codes == [200, 200]
    assert r.status_code == 429 and int(r.headers["Retry-After"]) >= 1
    assert "rate limit" in r.json()["detail"]


def test_unreachable_shared_buckets_fall_back_to_the_workers_own(world_dir: Path) -> None:
    before = _fallbacks("rate")
    # Nothing listens on port 1: every shared call fails at once; limits hold per worker.
    with _app_client(
        world_dir, "redis://127.0.0.1:1/0", rate_limit_per_s=0.01, rate_limit_burst=3
    ) as c:
        headers = make_key(c, "admin")
        codes = [c.get("/v1/experiments", headers=headers).status_code for _ in range(4)]
    assert codes == [200, 200, 200, 429]
    assert _fallbacks("rate") >= before + 4
