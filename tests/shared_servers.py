"""The servers that shared-state tests use: PostgreSQL and Redis on this machine, each skipped
with the reason when it does not answer.

``STEERFEED_TEST_POSTGRES_URL`` (default ``postgresql://$PGUSER@127.0.0.1:5432/postgres``) is
where a database ``steerfeed_test_<random>`` is created for a test module, migrated and dropped
after; ``STEERFEED_TEST_REDIS_URL`` (default ``redis://127.0.0.1:6379/0``) is used under a key
prefix of the test's own.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
import redis

from storage.factory import open_store

POSTGRES_ADMIN_URL = os.environ.get(
    "STEERFEED_TEST_POSTGRES_URL",
    f"postgresql://{os.environ.get('PGUSER', 'postgres')}@127.0.0.1:5432/postgres",
)
REDIS_URL = os.environ.get("STEERFEED_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def postgres_unreachable() -> str | None:
    """Why no PostgreSQL test can run, or ``None`` when the server answers."""
    try:
        with psycopg.connect(POSTGRES_ADMIN_URL, connect_timeout=3):
            return None
    except Exception as exc:
        return f"no PostgreSQL server at {POSTGRES_ADMIN_URL} ({type(exc).__name__}: {exc})"


def redis_unreachable() -> str | None:
    """Why no Redis test can run, or ``None`` when the server answers."""
    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=3, socket_timeout=3)
    try:
        client.ping()
        return None
    except redis.RedisError as exc:
        return f"no Redis server at {REDIS_URL} ({type(exc).__name__}: {exc})"
    finally:
        client.close()


@contextmanager
def migrated_postgres_database() -> Iterator[str]:
    """A fresh database with the store's migrations applied; its URL. Dropped after."""
    dbname = f"steerfeed_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {dbname}".encode())
    url = POSTGRES_ADMIN_URL.rsplit("/", 1)[0] + "/" + dbname
    try:
        open_store(url).close()
        yield url
    finally:
        with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {dbname} WITH (FORCE)".encode())


def forget_redis_keys(prefix: str) -> None:
    """Delete the test's keys (``<prefix>:*``)."""
    client = redis.Redis.from_url(REDIS_URL)
    try:
        for key in client.scan_iter(f"{prefix}:*"):
            client.delete(key)
    finally:
        client.close()
