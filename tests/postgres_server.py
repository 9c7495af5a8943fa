"""The PostgreSQL server tests run against, and scratch databases on it.

The server is ``STEERFEED_TEST_POSTGRES_URL`` (default
``postgresql://$PGUSER@127.0.0.1:5432/postgres``, user ``postgres`` when ``PGUSER`` is unset), as
in the store contract suite. A test that needs it is skipped, with :func:`postgres_unreachable`'s
reason, when no server answers there.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg

ADMIN_URL = os.environ.get(
    "STEERFEED_TEST_POSTGRES_URL",
    f"postgresql://{os.environ.get('PGUSER', 'postgres')}@127.0.0.1:5432/postgres",
)
SERVER_URL = ADMIN_URL.rsplit("/", 1)[0]
"""The server without a database (``steerfeed bench --db-url`` then makes its own)."""


def postgres_unreachable() -> str | None:
    """Why no test can use the server, or ``None`` when it answers."""
    try:
        with psycopg.connect(ADMIN_URL, connect_timeout=3):
            return None
    except Exception as exc:
        return f"no PostgreSQL server at {ADMIN_URL} ({type(exc).__name__}: {exc})".strip()


def database_exists(name: str) -> bool:
    """Whether the server has a database of that name."""
    with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
        row = admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone()
    return row is not None


@contextmanager
def scratch_database(prefix: str = "steerfeed_test_") -> Iterator[str]:
    """A new empty database ``<prefix><random>`` for the block; its URL. Dropped after (with
    FORCE: a server killed by the test may have left connections behind)."""
    name = f"{prefix}{uuid.uuid4().hex[:12]}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {name}".encode())
    try:
        yield f"{SERVER_URL}/{name}"
    finally:
        with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)".encode())
