"""Migrations allocated per package may land out of order; each is still applied once."""

from __future__ import annotations

import duckdb

from storage.migrations import Migration, migrate


def test_a_lower_version_added_later_is_still_applied() -> None:
    con = duckdb.connect(":memory:")
    one = Migration(1, "a", ("CREATE TABLE a (x INTEGER)",))
    three = Migration(3, "c", ("CREATE TABLE c (x INTEGER)",))
    two = Migration(2, "b", ("CREATE TABLE b (x INTEGER)",))
    assert migrate(con, (one, three)) == [1, 3]
    assert migrate(con, (one, three, two)) == [2]
    assert migrate(con, (one, three, two)) == []
    tables = {r[0] for r in con.execute("SHOW TABLES").fetchall()}
    assert {"a", "b", "c"} <= tables
