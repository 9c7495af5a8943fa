"""Shared token buckets (storage/buckets.py) on Redis and on PostgreSQL: atomic under
concurrent callers, cleaned up once full again, and failing with one error type when the server
does not answer. Each half is skipped with the reason when its server does not answer."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator

import pytest
import redis

from storage.buckets import (
    BucketsUnavailableError,
    PostgresBuckets,
    RedisBuckets,
    SharedBuckets,
    open_buckets,
)
from tests.shared_servers import (
    REDIS_URL,
    forget_redis_keys,
    migrated_postgres_database,
    postgres_unreachable,
    redis_unreachable,
)

_PG_SKIP = postgres_unreachable()
_REDIS_SKIP = redis_unreachable()


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    if _PG_SKIP is not None:
        pytest.skip(_PG_SKIP)
    with migrated_postgres_database() as url:
        yield url


@pytest.fixture(
    params=[
        pytest.param(
            "redis", marks=pytest.mark.skipif(_REDIS_SKIP is not None, reason=str(_REDIS_SKIP))
        ),
        pytest.param(
            "postgres", marks=pytest.mark.skipif(_PG_SKIP is not None, reason=str(_PG_SKIP))
        ),
    ]
)
def url(request: pytest.FixtureRequest) -> str:
    if request.param == "redis":
        return REDIS_URL
    return str(request.getfixturevalue("postgres_url"))


def test_concurrent_callers_on_separate_connections_share_one_burst(url: str) -> None:
    namespace = f"test-{uuid.uuid4().hex[:10]}"
    clients: list[SharedBuckets] = [open_buckets(url, namespace=namespace) for _ in range(4)]
    granted: list[int] = []
    start = threading.Barrier(8)

    def worker(k: int) -> None:
        buckets = clients[k % 4]
        start.wait()
        mine = sum(buckets.call("hot", 0.001, 50) == 0.0 for _ in range(25))
        granted.append(mine)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for c in clients:
        c.close()
    forget_redis_keys(namespace)
    assert len(granted) == 8
    assert sum(granted) == 50  # 200 tries, one burst: no read-modify-write race


def test_redis_bucket_expires_once_it_would_be_full() -> None:
    if _REDIS_SKIP is not None:
        pytest.skip(_REDIS_SKIP)
    namespace = f"test-{uuid.uuid4().hex[:10]}"
    buckets = RedisBuckets(REDIS_URL, namespace=namespace)
    assert buckets.call("a", 1.0, 4) == 0.0  # 3 of 4 left: full again in 1 s
    client = redis.Redis.from_url(REDIS_URL)
    ttl_ms = client.pttl(f"{namespace}:a")
    client.close()
    buckets.close()
    forget_redis_keys(namespace)
    assert 0 < ttl_ms <= (1.0 + 10.0) * 1000  # the refill time plus the idle margin


def test_postgres_prune_deletes_only_buckets_full_again(postgres_url: str) -> None:
    now = [1000.0]
    buckets = PostgresBuckets(postgres_url, namespace=uuid.uuid4().hex[:10], clock=lambda: now[0])
    buckets.call("quick", 1.0, 2)  # full again at 1001
    buckets.call("slow", 0.001, 2)  # full again at 2000
    now[0] = 1001.0 + 10.0 + 1.0  # past the quick one's refill and the idle margin
    assert buckets.prune() == 1
    assert buckets.call("slow", 0.001, 2) == 0.0  # kept: one token left, taken now
    assert buckets.call("slow", 0.001, 2) > 0
    buckets.close()


def test_peek_reads_without_taking(url: str) -> None:
    buckets = open_buckets(url, namespace=f"test-{uuid.uuid4().hex[:10]}", clock=lambda: 50.0)
    assert buckets.call("p", 1.0, 1, "peek") == 0.0
    assert buckets.call("p", 1.0, 1, "peek") == 0.0
    assert buckets.call("p", 1.0, 1) == 0.0
    assert buckets.call("p", 1.0, 1, "peek") == pytest.approx(1.0, abs=1e-4)
    buckets.close()


def test_a_server_that_does_not_answer_is_one_error() -> None:
    down = [
        open_buckets("redis://127.0.0.1:1/0"),
        open_buckets("postgresql://postgres@127.0.0.1:1/steerfeed"),
    ]
    for buckets in down:
        with pytest.raises(BucketsUnavailableError, match="did not answer"):
            buckets.call("a", 1.0, 1)
        buckets.close()


def test_an_unknown_url_names_the_valid_ones() -> None:
    with pytest.raises(ValueError, match=r"redis://host:6379/0, rediss://\.\.\. or postgresql"):
        open_buckets("memcached://m:11211")
