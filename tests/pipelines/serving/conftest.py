"""A small demo world built into a PostgreSQL database, for tests of several workers."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.storage.test_store_contract import _PG_SKIP, ADMIN_URL

#: The signing and pseudonym secrets every worker of a test deployment shares.
SECRET = "s" * 40
PSEUDONYM = "p" * 24


@pytest.fixture(scope="module")
def pg_world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """A demo world (60 users, 300 clips) in a fresh database, and its data folder (one per
    test module; skipped with the reason when no PostgreSQL server answers)."""
    if _PG_SKIP is not None:
        pytest.skip(_PG_SKIP)
    import psycopg

    from pipelines.offline.demo import build_demo

    dbname = f"steerfeed_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {dbname}".encode())
    url = ADMIN_URL.rsplit("/", 1)[0] + "/" + dbname
    d = tmp_path_factory.mktemp("pg_world")
    old = os.environ.get("STEERFEED_DB_URL")
    os.environ["STEERFEED_DB_URL"] = url
    try:
        build_demo(d, n_users=60, n_clips=300, n_events=4_000, seed=5)
    finally:
        if old is None:
            os.environ.pop("STEERFEED_DB_URL", None)
        else:
            os.environ["STEERFEED_DB_URL"] = old
    yield url, d
    with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {dbname} WITH (FORCE)".encode())
