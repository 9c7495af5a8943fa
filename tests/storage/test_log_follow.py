"""Following the event log and the change feed by number (``storage/log_follow.py``).

The cursor's bookkeeping is tested on numbers alone; the tables (migration 17) on a real
PostgreSQL database, skipped with the reason when no server answers.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime

import polars as pl
import pytest

from storage.log_follow import (
    FollowCursor,
    changes_high_water,
    events_high_water,
    prune_changes,
    read_changes,
    read_events,
)
from storage.store import Store
from tests.storage.test_store_contract import _PG_SKIP, ADMIN_URL

Opener = Callable[[], Store]


def test_cursor_takes_new_numbers_once() -> None:
    c = FollowCursor(10)
    assert c.take([11, 12]) == [True, True]
    assert c.take([12, 13]) == [False, True]
    assert c.high == 13 and c.floor() == 13


def test_cursor_rereads_a_hole_until_it_fills() -> None:
    t = [0.0]
    c = FollowCursor(10, gap_timeout_s=5.0, clock=lambda: t[0])
    assert c.take([11, 13]) == [True, True]  # 12 is not visible yet
    assert c.floor() == 11  # the next read asks for 12 again
    t[0] = 1.0
    assert c.take([12, 13, 14]) == [True, False, True]
    assert c.holes == {} and c.floor() == 14


def test_cursor_gives_up_on_a_hole_after_the_timeout() -> None:
    t = [0.0]
    c = FollowCursor(0, gap_timeout_s=5.0, clock=lambda: t[0])
    c.take([2])
    assert c.floor() == 0
    t[0] = 6.0  # a rolled-back write: the number never shows up
    assert c.floor() == 2


def test_cursor_without_holes_for_an_ordered_table() -> None:
    c = FollowCursor(0)
    c.take([5])
    assert c.holes == {} and c.floor() == 5


@pytest.fixture()
def pg() -> Iterator[Opener]:
    """Opens stores on a fresh PostgreSQL database (dropped after the test)."""
    if _PG_SKIP is not None:
        pytest.skip(_PG_SKIP)
    import psycopg

    from storage.factory import open_store

    dbname = f"steerfeed_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {dbname}".encode())
    url = ADMIN_URL.rsplit("/", 1)[0] + "/" + dbname
    opened: list[Store] = []

    def _open() -> Store:
        opened.append(open_store(url))
        return opened[-1]

    yield _open
    for s in opened:
        s.close()
    with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {dbname} WITH (FORCE)".encode())


def _events(ids: list[str], origin_user: int = 1) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "event_id": ids,
            "user_id": [origin_user] * len(ids),
            "item_id": [10] * len(ids),
            "event_type": ["like"] * len(ids),
            "ts": [datetime(2026, 12, 1)] * len(ids),
        }
    )


def test_events_are_numbered_and_carry_the_writers_origin(pg: Opener) -> None:
    from storage.factory import open_store

    plain = pg()
    url = plain.url  # type: ignore[attr-defined]
    worker = open_store(url, origin=42)
    try:
        plain.append_events(_events(["a", "b"]))
        worker.append_events(_events(["c"]))
        rows = plain.query("SELECT event_id, seq, origin FROM events ORDER BY seq")
        assert rows["event_id"].to_list() == ["a", "b", "c"]
        assert rows["origin"].to_list() == [None, None, 42]
        c = FollowCursor(0)
        got, through = read_events(plain, c, limit=2)
        assert got["event_id"].to_list() == ["a", "b"] and "features" not in got.columns
        assert through == got["seq"][-1]  # a full batch: only as far as what was read
        assert read_events(plain, c, limit=2)[0]["event_id"].to_list() == ["a", "b"]
        c.advance(through)
        last, through = read_events(plain, c, limit=10)
        assert last["event_id"].to_list() == ["c"]
        c.advance(through)
        assert events_high_water(plain) == c.high
        # A worker's own rows are left out, and the cursor still moves past them.
        plain.append_events(_events(["d"]))
        worker.append_events(_events(["e"]))
        theirs, through = read_events(worker, c, limit=10, skip_origin=42)
        assert theirs["event_id"].to_list() == ["d"]
        c.advance(through)
        assert events_high_water(plain) == c.high
    finally:
        worker.close()


def test_appends_from_many_threads_become_visible_in_number_order(pg: Opener) -> None:
    """A reader that saw number n never sees a lower one later (the append lock)."""
    store = pg()
    cursor = FollowCursor(0)
    seen: list[int] = []
    stop = threading.Event()

    def follow() -> None:
        while not stop.is_set():
            got, through = read_events(store, cursor, limit=10_000)
            cursor.advance(through)
            seen.extend(got["seq"].to_list() if got.height else [])

    def append(w: int) -> None:
        for n in range(15):
            store.append_events(_events([f"{w}-{n}-{k}" for k in range(20)], origin_user=w))

    reader = threading.Thread(target=follow)
    reader.start()
    writers = [threading.Thread(target=append, args=(w,)) for w in range(4)]
    for t in writers:
        t.start()
    for t in writers:
        t.join()
    stop.set()
    reader.join()
    rest, through = read_events(store, cursor, limit=10_000)
    cursor.advance(through)
    seen.extend(rest["seq"].to_list() if rest.height else [])
    assert len(seen) == 4 * 15 * 20
    assert seen == sorted(seen) and len(set(seen)) == len(seen)


def test_the_change_feed_notes_each_key_a_statement_touched(pg: Opener) -> None:
    store: Store = pg()
    start = changes_high_water(store)
    store.add_users(pl.DataFrame({"user_id": [1, 2]}))
    store.add_follows(pl.DataFrame({"follower_id": [1], "followee_id": [2]}))
    store.update_user_settings(2, {"more_of": ["dance"]})
    store.remove_follow(1, 2)
    rows = read_changes(store, FollowCursor(start, gap_timeout_s=60), limit=100)
    got = list(rows.select("tbl", "op", "key", "detail").iter_rows())
    # One statement's keys come in any order; statements in commit order.
    assert sorted(got[:2]) == [("users", "I", "1", None), ("users", "I", "2", None)]
    assert got[2:] == [
        ("follows", "I", "1", "2"),
        ("users", "U", "2", None),
        ("follows", "D", "1", "2"),
    ]
    assert prune_changes(store, older_than_s=3600) == 0  # all are recent
    assert prune_changes(store, older_than_s=0) == rows.height
    assert changes_high_water(store) == 0  # nothing left (the numbers go on)


def test_a_failed_application_is_retried_then_skipped(pg: Opener) -> None:
    """The follower moves its cursor only over applied rows; rows that keep failing are
    skipped after MAX_TRIES so the worker goes on following."""
    from pipelines.serving.follower import MAX_TRIES, StoreFollower
    from pipelines.serving.settings import FollowSettings

    store = pg()
    applied: list[list[str]] = []
    fail = [1]  # the first pass fails once

    def apply_events(rows: pl.DataFrame) -> None:
        if fail[0] > 0:
            fail[0] -= 1
            raise RuntimeError("a store hiccup")
        applied.append(rows["event_id"].to_list())

    f = StoreFollower(
        store,
        origin=7,
        start=(0, changes_high_water(store)),
        apply_events=apply_events,
        apply_changes=lambda rows: None,
        settings=FollowSettings(),
    )
    store.append_events(_events(["a", "b"]))
    with pytest.raises(RuntimeError):
        f.poll()
    assert f.events.high == 0  # nothing taken
    assert f.poll().events == 2 and applied == [["a", "b"]]
    assert f.poll().events == 0  # and not again
    fail[0] = MAX_TRIES
    store.append_events(_events(["c"]))
    for _ in range(MAX_TRIES - 1):
        with pytest.raises(RuntimeError):
            f.poll()
    f.poll()  # the last try fails too: the row is skipped, logged
    store.append_events(_events(["d"]))
    f.poll()
    assert applied == [["a", "b"], ["d"]]
