"""The DuckDB store: migrations, idempotent events, hashed keys."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import polars as pl
import pytest

from storage.errors import UnknownEntityError
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


def test_event_ids_are_unique_per_user_not_across_users(tmp_path: Path) -> None:
    s = Store(tmp_path / "a.duckdb")
    assert s.append_new_events(_events(["e1", "e2"])) == [(1, "e1"), (1, "e2")]
    other = _events(["e1", "e3"]).with_columns(pl.lit(5, dtype=pl.Int64).alias("user_id"))
    assert s.append_new_events(other) == [(5, "e1"), (5, "e3")]  # user 1's "e1" is not theirs
    assert s.append_events(other) == 0  # user 5's retry is a repeat
    assert s.count("events") == 4
    s.close()


def test_migration_9_keeps_the_events_and_scopes_their_ids(tmp_path: Path) -> None:
    import duckdb

    from storage.migrations import migrate

    path = tmp_path / "old.duckdb"
    con = duckdb.connect(str(path))
    migrate(con, tuple(m for m in MIGRATIONS if m.version < 9))  # a store before the change
    con.execute(
        "INSERT INTO events (event_id, user_id, item_id, event_type, ts, received_at) VALUES "
        "('e1', 1, 10, 'like', '2026-01-01', '2026-01-01 00:00:01'), "
        "('e2', 1, 11, 'view', '2026-01-02', '2026-01-02 00:00:01')"
    )
    con.execute("CREATE VIEW likes AS SELECT * FROM events WHERE event_type = 'like'")
    con.close()
    s = Store(path)  # applies migration 9
    try:
        rows = s.query("SELECT event_id, user_id, item_id, received_at FROM events ORDER BY 1")
        assert rows["event_id"].to_list() == ["e1", "e2"]
        assert rows["received_at"].to_list() == [
            datetime(2026, 1, 1, 0, 0, 1),
            datetime(2026, 1, 2, 0, 0, 1),
        ]
        other = _events(["e1"]).with_columns(pl.lit(5, dtype=pl.Int64).alias("user_id"))
        assert s.append_events(other) == 1 and s.append_events(_events(["e1"])) == 0
        assert s.scalar("SELECT count(*) FROM likes") == 2  # a view over events still works
    finally:
        s.close()


def test_committed_events_survive_reopen(tmp_path: Path) -> None:
    s = Store(tmp_path / "a.duckdb")
    s.append_events(_events(["a"]))
    s.close()
    assert Store(tmp_path / "a.duckdb").count("events") == 1


def test_api_keys_are_stored_hashed(tmp_path: Path) -> None:
    s = Store(tmp_path / "a.duckdb")
    key = s.create_api_key("analyst")
    stored = s.query("SELECT key_hash FROM api_keys")["key_hash"].to_list()
    # the secret is everything after "sf_<key id>_" (it may itself contain "_")
    assert key not in stored and key.split("_", 2)[2] not in "".join(stored)
    found = s.lookup_api_key(key)
    assert found is not None and found[1] == "analyst"
    assert s.lookup_api_key(key + "x") is None
    with pytest.raises(ValueError, match="valid"):
        s.create_api_key("root")
    with pytest.raises(ValueError, match="user-id"):
        s.create_api_key("user")


def test_listed_keys_carry_no_hash_and_a_revoked_key_is_refused(tmp_path: Path) -> None:
    s = Store(tmp_path / "a.duckdb")
    admin = s.create_api_key("admin")
    user = s.create_api_key("user", user_id=7)
    listed = s.list_api_keys()
    assert [(k["role"], k["user_id"], k["revoked"]) for k in listed] == [
        ("admin", None, False),
        ("user", 7, False),
    ]
    assert all(set(k) == {"key_id", "role", "user_id", "created_at", "revoked"} for k in listed)
    user_id = user.split("_")[1]
    assert s.revoke_api_key(user_id) is True
    assert s.lookup_api_key(user) is None
    assert s.lookup_api_key(admin) is not None
    assert s.revoke_api_key(user_id) is False  # revoking twice changes nothing
    assert [k["revoked"] for k in s.list_api_keys()] == [False, True]
    with pytest.raises(UnknownEntityError, match="unknown key"):
        s.revoke_api_key("nosuchkey")


def test_vectors_round_trip_across_read_batches(tmp_path: Path) -> None:
    import numpy as np

    store = Store(tmp_path / "v.duckdb")
    rng = np.random.default_rng(0)
    ids = rng.permutation(250_001).astype(np.int64)  # more rows than one read batch
    mat = rng.standard_normal((ids.size, 4)).astype(np.float32)
    store.put_vectors("caption", ids, mat)
    got = store.get_vectors("caption")
    assert got is not None
    got_ids, got_mat = got
    order = np.argsort(ids)
    assert np.array_equal(got_ids, ids[order])
    assert np.array_equal(got_mat, mat[order]) and got_mat.dtype == np.float32
    assert store.get_vectors("collab") is None
    store.close()


def test_duckdb_memory_limit_is_applied_and_checked(tmp_path: Path) -> None:
    store = Store(tmp_path / "m.duckdb", memory_limit="512MB")
    assert store.scalar("SELECT current_setting('memory_limit')") == "488.2 MiB"
    store.close()
    with pytest.raises(ValueError, match="memory limit"):
        Store(tmp_path / "n.duckdb", memory_limit="lots")


def test_release_memory_drops_cached_blocks_and_keeps_the_limit(tmp_path: Path) -> None:
    import numpy as np

    store = Store(tmp_path / "r.duckdb", memory_limit="1GB")
    ids = np.arange(200_000, dtype=np.int64)
    rng = np.random.default_rng(0)
    store.put_vectors("caption", ids, rng.standard_normal((ids.size, 64)).astype(np.float32))
    store.checkpoint()
    assert store.get_vectors("caption") is not None
    cached = (
        "SELECT coalesce(sum(memory_usage_bytes), 0) FROM duckdb_memory() WHERE tag = 'BASE_TABLE'"
    )
    before = store.scalar(cached)
    store.release_memory()
    assert store.scalar(cached) < before
    assert store.scalar("SELECT current_setting('memory_limit')") == "953.6 MiB"
    got = store.get_vectors("caption")
    assert got is not None and got[1].shape == (200_000, 64)
    store.close()


def test_a_chained_cursor_call_keeps_its_cursor_open(tmp_path: Path) -> None:
    # store.cursor() returns a gated cursor that closes itself when dropped; a chained call
    # must keep it alive until the chain ends (it used to close before execute ran).
    store = Store(tmp_path / "s.duckdb")
    try:
        assert store.cursor().execute("SELECT 41 + 1").fetchall() == [(42,)]
    finally:
        store.close()
