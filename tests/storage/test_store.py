"""The DuckDB store: migrations, idempotent events, hashed keys."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import polars as pl
import pytest

from storage.migrations import MIGRATIONS, current_version
from storage.store import Store


def test_migrations_apply_once_and_reopen(tmp_path: Path) -> None:
    s = Store(tmp_path / "a.duckdb")
    assert current_version(s.cursor()) == MIGRATIONS[-1].version
    s.close()
    s2 = Store(tmp_path / "a.duckdb")
    assert s2.scalar("SELECT count(*) FROM schema_version") == len(MIGRATIONS)
    s2.close()


def _events(ids: list[str]) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "event_id": ids,
            "user_id": [1] * len(ids),
            "item_id": [10] * len(ids),
            "event_type": ["like"] * len(ids),
            "ts": [datetime(2026, 1, 1)] * len(ids),
        }
    )


def test_events_are_idempotent_by_event_id(tmp_path: Path) -> None:
    s = Store(tmp_path / "a.duckdb")
    assert s.append_events(_events(["a", "b"])) == 2
    assert s.append_events(_events(["b", "c"])) == 1
    assert s.count("events") == 3


def test_committed_events_survive_reopen(tmp_path: Path) -> None:
    s = Store(tmp_path / "a.duckdb")
    s.append_events(_events(["a"]))
    s.close()
    assert Store(tmp_path / "a.duckdb").count("events") == 1


def test_api_keys_are_stored_hashed(tmp_path: Path) -> None:
    s = Store(tmp_path / "a.duckdb")
    key = s.create_api_key("analyst")
    stored = s.query("SELECT key_hash FROM api_keys")["key_hash"].to_list()
    assert key not in stored and key.split("_")[-1] not in "".join(stored)
    found = s.lookup_api_key(key)
    assert found is not None and found[1] == "analyst"
    assert s.lookup_api_key(key + "x") is None
    with pytest.raises(ValueError, match="valid"):
        s.create_api_key("root")
    with pytest.raises(ValueError, match="user-id"):
        s.create_api_key("user")
