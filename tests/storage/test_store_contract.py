"""One contract suite run against every store backend: DuckDB (a file in ``tmp_path``) and
PostgreSQL.

The PostgreSQL half connects to ``STEERFEED_TEST_POSTGRES_URL`` (default
``postgresql://$PGUSER@127.0.0.1:5432/postgres``, user ``postgres`` when ``PGUSER`` is unset),
creates a database ``steerfeed_test_<random>`` for each test and drops it after. When no server
answers there, those tests are skipped with the reason.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from storage.erasure import erase_user_rows, find_mentions
from storage.errors import DuplicateEntityError, StorageError, UnknownEntityError
from storage.factory import open_store
from storage.migrations import MIGRATIONS
from storage.store import Store

ADMIN_URL = os.environ.get(
    "STEERFEED_TEST_POSTGRES_URL",
    f"postgresql://{os.environ.get('PGUSER', 'postgres')}@127.0.0.1:5432/postgres",
)

Opener = Callable[[], Store]


def _postgres_unreachable() -> str | None:
    """Why the PostgreSQL half cannot run, or ``None`` when a server answers."""
    try:
        import psycopg

        with psycopg.connect(ADMIN_URL, connect_timeout=3):
            return None
    except Exception as exc:
        return f"no PostgreSQL server at {ADMIN_URL} ({type(exc).__name__}: {exc})".strip()


_PG_SKIP = _postgres_unreachable()


@pytest.fixture(
    params=[
        "duckdb",
        pytest.param(
            "postgres", marks=pytest.mark.skipif(_PG_SKIP is not None, reason=str(_PG_SKIP))
        ),
    ]
)
def opener(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Opener]:
    """A function that opens the backend's store (again) at the same place."""
    opened: list[Store] = []
    if request.param == "duckdb":
        url = f"duckdb://{(tmp_path / 'contract.duckdb').as_posix()}"
        dbname = ""
    else:
        import psycopg

        dbname = f"steerfeed_test_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
            admin.execute(f"CREATE DATABASE {dbname}".encode())
        url = ADMIN_URL.rsplit("/", 1)[0] + "/" + dbname

    def _open() -> Store:
        store = open_store(url)
        opened.append(store)
        return store

    yield _open
    for store in opened:
        store.close()
    if dbname:
        import psycopg

        with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {dbname} WITH (FORCE)".encode())


@pytest.fixture()
def store(opener: Opener) -> Store:
    return opener()


def _events(ids: list[str], user_id: int = 1, ts: datetime = datetime(2026, 1, 1)) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "event_id": ids,
            "user_id": [user_id] * len(ids),
            "item_id": [10] * len(ids),
            "event_type": ["like"] * len(ids),
            "ts": [ts] * len(ids),
        }
    )


# -- schema ----------------------------------------------------------------------------------
def test_migrations_apply_once_and_again_is_a_no_op(opener: Opener) -> None:
    s = opener()
    assert s.scalar("SELECT count(*) FROM schema_version") == len(MIGRATIONS)
    assert s.scalar("SELECT max(version) FROM schema_version") == max(m.version for m in MIGRATIONS)
    s.close()
    s2 = opener()  # opening again applies nothing
    assert s2.scalar("SELECT count(*) FROM schema_version") == len(MIGRATIONS)
    names = {t for t, _c, _d in s2.table_columns()}
    assert {"users", "clips", "events", "api_keys", "clip_vectors", "standing_rules"} <= names


def test_query_gives_duckdb_column_types(store: Store) -> None:
    store.add_clips(
        pl.DataFrame({"item_id": [1], "author_id": [2], "caption": ["c"], "topics": [["a", "b"]]})
    )
    df = store.query("SELECT * FROM clips")
    expected = {
        "item_id": pl.Int64,
        "caption": pl.String,
        "topics": pl.List(pl.String),
        "cameo_user_ids": pl.List(pl.Int64),
        "duration_s": pl.Float64,
        "created_at": pl.Datetime("us"),
        "maturity": pl.Int16,
        "is_generated": pl.Boolean,
        "city": pl.String,
    }
    assert {k: df.schema[k] for k in expected} == expected
    assert df["topics"].to_list() == [["a", "b"]] and df["cameo_user_ids"].to_list() == [[]]
    empty = store.query("SELECT item_id, topics FROM clips WHERE item_id < 0")
    assert empty.height == 0 and empty.schema["topics"] == pl.List(pl.String)
    assert store.query("SELECT count(*) AS n FROM clips")["n"].to_list() == [1]


# -- users, clips, graph ---------------------------------------------------------------------
def test_users_add_get_update_replace(store: Store) -> None:
    assert store.add_users(pl.DataFrame({"user_id": [1, 2], "is_teen": [False, True]})) == 2
    user = store.get_user(2)
    assert user["is_teen"] is True and user["settings"] == {} and user["timezone"] == "UTC"
    assert isinstance(user["created_at"], datetime)
    store.update_user_settings(2, {"lang": "fr"})
    assert store.get_user(2)["settings"] == {"lang": "fr"}
    with pytest.raises(UnknownEntityError):
        store.get_user(99)
    with pytest.raises(UnknownEntityError):
        store.update_user_settings(99, {})
    with pytest.raises(DuplicateEntityError):
        store.add_users(pl.DataFrame({"user_id": [1]}))
    store.add_users(pl.DataFrame({"user_id": [1], "timezone": ["Europe/Paris"]}), replace=True)
    assert store.get_user(1)["timezone"] == "Europe/Paris" and store.count("users") == 2


def test_clips_follows_blocks(store: Store) -> None:
    clips = pl.DataFrame(
        {
            "item_id": [10, 11],
            "author_id": [1, 2],
            "caption": ["a", "b"],
            "cameo_user_ids": [[3], []],
            "created_at": [datetime(2026, 1, 1), datetime(2026, 2, 1)],
        }
    )
    assert store.add_clips(clips) == 2
    assert store.add_clips(clips.with_columns(pl.lit("z").alias("caption")), replace=True) == 2
    assert store.query("SELECT caption FROM clips ORDER BY item_id")["caption"].to_list() == [
        "z",
        "z",
    ]
    follows = pl.DataFrame({"follower_id": [1, 1, 2], "followee_id": [2, 2, 1]})
    assert store.add_follows(follows) == 2  # the repeat is ignored
    assert store.add_follows(follows) == 0
    store.remove_follow(1, 2)
    assert store.count("follows") == 1
    blocks = pl.DataFrame({"user_id": [1, 1], "target_id": [3, 3], "kind": ["block", "mute"]})
    assert store.add_blocks(blocks) == 2 and store.add_blocks(blocks) == 0
    assert store.add_users(pl.DataFrame({"user_id": []}, schema={"user_id": pl.Int64})) == 0


def test_count_rejects_anything_but_an_identifier(store: Store) -> None:
    with pytest.raises(StorageError):
        store.count("users; DROP TABLE users")
    assert store.count("users") == 0


# -- events ----------------------------------------------------------------------------------
def test_events_are_idempotent_per_user(store: Store) -> None:
    assert store.append_new_events(_events(["e1", "e2"])) == [(1, "e1"), (1, "e2")]
    assert store.append_new_events(_events(["e2", "e3"])) == [(1, "e3")]
    other = _events(["e1", "e3"], user_id=5)
    assert store.append_new_events(other) == [(5, "e1"), (5, "e3")]  # another sender's e1
    assert store.append_events(other) == 0  # their retry is a repeat
    assert store.count("events") == 5


def test_a_retry_with_another_time_is_still_a_repeat(store: Store) -> None:
    # On PostgreSQL the partitioned table's key holds ts; the key table keeps this right.
    assert store.append_events(_events(["e1"], ts=datetime(2026, 1, 31, 23))) == 1
    assert store.append_events(_events(["e1"], ts=datetime(2026, 2, 1, 1))) == 0
    assert store.append_events(_events(["e1"], ts=datetime(2025, 6, 1))) == 0
    assert store.count("events") == 1


def test_repeats_inside_one_batch_keep_one(store: Store) -> None:
    df = pl.concat(
        [_events(["a"]), _events(["a"]).with_columns(pl.lit(99, dtype=pl.Int64).alias("item_id"))]
    )
    assert store.append_new_events(df) == [(1, "a")]
    # which one is not part of the contract (DuckDB keeps the last, PostgreSQL the first)
    assert store.query("SELECT item_id FROM events")["item_id"].to_list() in ([10], [99])


def test_events_across_months_and_years_all_land(store: Store) -> None:
    start = datetime(2025, 11, 15)
    df = pl.DataFrame(
        {
            "event_id": [f"m{i}" for i in range(6)],
            "user_id": [1, 2, 3, 1, 2, 3],
            "item_id": [10] * 6,
            "event_type": ["view"] * 6,
            "ts": [start + timedelta(days=30 * i) for i in range(6)],
            "watch_s": [1.5] * 6,
        }
    )
    assert store.append_events(df) == 6
    got = store.query(
        "SELECT event_id, ts, watch_s FROM events WHERE ts >= ? AND ts < ? ORDER BY ts",
        [datetime(2026, 1, 1), datetime(2026, 3, 1)],
    )
    assert got["event_id"].to_list() == ["m2", "m3"] and got["watch_s"].to_list() == [1.5, 1.5]
    if store.dialect == "postgres":
        parts = store.query(
            "SELECT DISTINCT tableoid::regclass::text AS part FROM events ORDER BY 1"
        )["part"].to_list()
        assert parts == [f"events_{(start + timedelta(days=30 * i)):%Y_%m}" for i in range(6)]
        assert store.scalar("SELECT count(*) FROM events_default") == 0


def test_a_month_in_the_default_partition_moves_to_its_own(store: Store) -> None:
    if store.dialect != "postgres":
        pytest.skip("partitions are PostgreSQL's")
    from storage.postgres_store import PostgresStore

    assert isinstance(store, PostgresStore)
    with store.write() as cur:  # written around the store (an analyst's INSERT)
        cur.execute(
            "INSERT INTO events (event_id, user_id, event_type, ts) VALUES ('x', 7, 'view', ?)",
            [datetime(2024, 3, 5)],
        )
    assert store.scalar("SELECT count(*) FROM events_default") == 1
    assert store.create_event_partition(datetime(2024, 3, 1)) == "events_2024_03"
    assert store.scalar("SELECT count(*) FROM events_2024_03") == 1
    assert store.scalar("SELECT count(*) FROM events_default") == 0


def test_event_filter_applies_before_the_append(store: Store) -> None:
    store.event_filter = lambda df: df.filter(pl.col("user_id") != 2)
    df = pl.concat([_events(["a"]), _events(["b"], user_id=2)])
    assert store.append_new_events(df) == [(1, "a")]
    assert store.count("events") == 1


def test_committed_events_survive_reopen(opener: Opener) -> None:
    s = opener()
    s.append_events(_events(["a"]))
    s.close()
    assert opener().count("events") == 1


# -- plumbing --------------------------------------------------------------------------------
def test_write_is_one_transaction(store: Store) -> None:
    with pytest.raises(RuntimeError), store.write() as cur:
        cur.execute("INSERT INTO users (user_id) VALUES (?)", [1])
        raise RuntimeError
    assert store.count("users") == 0
    with store.write() as cur:
        assert cur.execute("INSERT INTO users (user_id) VALUES (?), (?)", [1, 2]).fetchall() == [
            (2,)
        ]
        assert cur.execute(
            "UPDATE users SET timezone = ? WHERE user_id = ?", ["X", 1]
        ).fetchall() == [(1,)]
        assert cur.execute("SELECT count(*) FROM users").fetchone() == (2,)
    assert store.scalar("SELECT timezone FROM users WHERE user_id = ?", [1]) == "X"


def test_cursor_register_and_duckdb_insert_forms(store: Store) -> None:
    frame = pl.DataFrame({"user_id": [1, 2], "timezone": ["A", "B"]})
    with store.write() as cur:
        cur.register("incoming", frame)
        assert cur.execute("INSERT INTO users BY NAME SELECT * FROM incoming").fetchall() == [(2,)]
        cur.unregister("incoming")
        cur.execute("INSERT OR REPLACE INTO users (user_id, timezone) VALUES (?, ?)", [2, "C"])
        cur.execute("INSERT OR IGNORE INTO users (user_id, timezone) VALUES (?, ?)", [1, "D"])
    rows = store.query("SELECT user_id, timezone FROM users ORDER BY user_id").rows()
    assert rows == [(1, "A"), (2, "C")]
    cur = store.cursor()
    try:
        # '?' and '%' inside a literal stay as written
        assert cur.execute("SELECT 'a?b%' || ?", ["c"]).fetchone() == ("a?b%c",)
    finally:
        cur.close()


def test_query_batches_and_dollar_placeholders(store: Store) -> None:
    store.append_events(_events([f"e{i}" for i in range(25)]))
    batches = list(store.query_batches("SELECT event_id FROM events ORDER BY ts", batch_rows=10))
    assert sum(b.height for b in batches) == 25 and max(b.height for b in batches) <= 10
    assert batches[0].schema["event_id"] == pl.String
    n = store.scalar("SELECT count(*) FROM events WHERE user_id = $1 AND item_id = $2", [1, 10])
    assert n == 25


def test_api_keys_are_stored_hashed(store: Store) -> None:
    key = store.create_api_key("analyst")
    stored = store.query("SELECT key_hash FROM api_keys")["key_hash"].to_list()
    assert key not in stored and key.split("_", 2)[2] not in "".join(stored)
    found = store.lookup_api_key(key)
    assert found is not None and found[1:] == ("analyst", None)
    assert store.lookup_api_key(key + "x") is None and store.lookup_api_key("nope") is None
    user_key = store.create_api_key("user", user_id=7)
    assert store.lookup_api_key(user_key) == (user_key.split("_")[1], "user", 7)
    listed = store.list_api_keys()
    assert [(k["role"], k["user_id"], k["revoked"]) for k in listed] == [
        ("analyst", None, False),
        ("user", 7, False),
    ]
    assert isinstance(listed[0]["created_at"], datetime) and "key_hash" not in listed[0]
    assert store.revoke_api_key(key.split("_")[1]) is True
    assert store.revoke_api_key(key.split("_")[1]) is False
    with pytest.raises(UnknownEntityError):
        store.revoke_api_key("nope")
    assert store.lookup_api_key(key) is None
    with pytest.raises(ValueError, match="valid"):
        store.create_api_key("root")
    with pytest.raises(ValueError, match="user-id"):
        store.create_api_key("user")


def test_vectors_put_replace_get(store: Store) -> None:
    rng = np.random.default_rng(0)
    ids = rng.permutation(1000).astype(np.int64)
    mat = rng.standard_normal((ids.size, 8)).astype(np.float32)
    assert store.get_vectors("caption") is None
    store.put_vectors("caption", ids, mat)
    store.put_vectors("caption", ids[:1], np.zeros((1, 8), dtype=np.float32))  # replaces
    mat[0] = 0
    got = store.get_vectors("caption")
    assert got is not None
    order = np.argsort(ids)
    assert np.array_equal(got[0], ids[order]) and got[1].dtype == np.float32
    assert np.array_equal(got[1], mat[order])
    some = store.get_vectors("caption", ids=[int(ids[3]), int(ids[5]), 5000])
    assert some is not None and sorted(some[0].tolist()) == sorted([ids[3], ids[5]])
    store.add_clips(pl.DataFrame({"item_id": [int(ids[0])], "author_id": [1], "caption": ["c"]}))
    assert store.vector_ids("caption").tolist() == [int(ids[0])]  # only catalogue clips
    assert store.count("clip_vectors") == 1000


def test_file_operations_are_safe_on_both(store: Store) -> None:
    store.append_events(_events(["a"]))
    store.checkpoint()
    store.release_memory()
    assert store.rewrite_file() >= 0.0
    assert store.count("events") == 1


def test_erasure_removes_the_persons_rows(store: Store) -> None:
    store.add_users(pl.DataFrame({"user_id": [1, 2]}))
    store.add_clips(
        pl.DataFrame(
            {
                "item_id": [10, 11, 12],
                "author_id": [1, 2, 2],
                "caption": ["mine", "theirs", "cameo"],
                "cameo_user_ids": [[], [], [1]],
            }
        )
    )
    store.add_follows(pl.DataFrame({"follower_id": [1, 2], "followee_id": [2, 1]}))
    theirs = _events(["c"], user_id=2).with_columns(pl.lit(11, dtype=pl.Int64).alias("item_id"))
    store.append_events(pl.concat([_events(["a", "b"]), theirs]))
    key = store.create_api_key("user", user_id=1)
    out = erase_user_rows(store, 1, key=b"k" * 32)
    assert sorted(out.deleted_item_ids) == [10, 12]
    assert store.query("SELECT user_id FROM users")["user_id"].to_list() == [2]
    assert store.query("SELECT item_id FROM clips")["item_id"].to_list() == [11]
    assert store.count("follows") == 0
    assert store.query("SELECT user_id FROM events")["user_id"].to_list() == [2]
    assert store.lookup_api_key(key) is None
    if store.dialect == "postgres":
        assert store.scalar("SELECT count(*) FROM event_keys WHERE user_id = 1") == 0
    # the erased person's ids may be used again (a new person): nothing of theirs remains
    assert store.append_events(_events(["a"])) == 1
    with store.write() as cur:
        cur.execute(
            "INSERT INTO audit_log (audit_id, at_ts, role, action, target) VALUES (?, ?, ?, ?, ?)",
            ["a1", datetime(2026, 1, 1), "admin", "erase", "user 2 and 12"],
        )
    assert find_mentions(store, 2)["audit_log.target"] == 1
    assert erase_user_rows(store, 2, key=b"k" * 32).audit_rows_scrubbed == 1
    assert "audit_log.target" not in find_mentions(store, 2)


def test_a_job_lease_has_one_holder_until_it_expires(opener: Opener) -> None:
    from storage.leases import acquire, holders, release

    store = opener()
    t0 = datetime(2026, 12, 3, 12, 0)
    assert acquire(store, "train", "worker-a", 60, now=t0)
    assert not acquire(store, "train", "worker-b", 60, now=t0 + timedelta(seconds=30))
    assert acquire(store, "train", "worker-a", 60, now=t0 + timedelta(seconds=30))  # renewed
    assert acquire(store, "index", "worker-b", 60, now=t0)  # another job, another holder
    # worker-a stops renewing: once its lease expires worker-b takes the job.
    assert not acquire(store, "train", "worker-b", 60, now=t0 + timedelta(seconds=89))
    assert acquire(store, "train", "worker-b", 60, now=t0 + timedelta(seconds=91))
    assert holders(store)["train"][0] == "worker-b"
    assert release(store, "worker-b") == 2 and holders(store) == {}
    assert acquire(store, "train", "worker-a", 60, now=t0 + timedelta(seconds=92))


def test_workers_racing_for_a_lease_get_it_once(opener: Opener) -> None:
    import threading

    from storage.leases import acquire

    store = opener()
    other = opener()  # a second connection, as a second worker has
    start = threading.Barrier(8)
    won: list[str] = []
    errors: list[BaseException] = []

    def worker(i: int) -> None:
        s = store if i % 2 else other
        start.wait()
        try:
            if acquire(s, "collab", f"worker-{i}", 60):
                won.append(f"worker-{i}")
        except BaseException as exc:  # surfaced below: a thread's exception fails nothing
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert len(won) == 1, won


def test_short_write_commits_like_write(store: Store) -> None:
    with store.short_write() as cur:
        cur.execute("INSERT INTO users (user_id) VALUES (?)", [77])
    assert store.scalar("SELECT count(*) FROM users WHERE user_id = 77") == 1
