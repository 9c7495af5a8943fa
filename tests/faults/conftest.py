"""The world a fault test serves, on each store backend: the tiny DuckDB world, and the same
size of world built into a PostgreSQL database the test creates and drops (skipped, with the
reason, when no PostgreSQL server answers; see tests/postgres_server.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from pipelines.offline.demo import build_demo
from tests.faults.served_world import ServedWorld
from tests.postgres_server import postgres_unreachable, scratch_database

_PG_SKIP = postgres_unreachable()


@pytest.fixture(
    params=[
        "duckdb",
        pytest.param(
            "postgres", marks=pytest.mark.skipif(_PG_SKIP is not None, reason=str(_PG_SKIP))
        ),
    ]
)
def served_world(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ServedWorld]:
    """The tiny world on DuckDB (a private copy), or built into a scratch PostgreSQL database
    with the tiny world's sizes and seed (its vectors and keys in a data folder of its own)."""
    if request.param == "duckdb":
        world_dir: Path = request.getfixturevalue("world_dir")  # built only when asked for
        yield ServedWorld(world_dir, str(world_dir / "steerfeed.duckdb"))
        return
    with scratch_database("steerfeed_test_faults_") as url, pytest.MonkeyPatch.context() as mp:
        mp.setenv("STEERFEED_DB_URL", url)  # build_demo reads the store from the settings
        data_dir = tmp_path / "pg-world"
        build_demo(data_dir, n_users=150, n_clips=800, n_events=15_000, seed=3)
        yield ServedWorld(data_dir, url)
