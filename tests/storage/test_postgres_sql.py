"""The DuckDB -> PostgreSQL statement translation: each listed rule, and nothing else."""

from __future__ import annotations

import pytest

from storage.errors import StorageError
from storage.postgres_sql import TableInfo, translate

USERS = TableInfo({"user_id": "bigint", "timezone": "character varying"}, ("user_id",))


def _info(table: str) -> TableInfo:
    assert table == "users"
    return USERS


def test_placeholders_and_percent_outside_literals() -> None:
    assert translate("SELECT a FROM t WHERE b = ? AND c LIKE 'x?%'") == (
        "SELECT a FROM t WHERE b = %s AND c LIKE 'x?%%'"
    )
    assert translate('SELECT "odd?" -- why?\nFROM t') == 'SELECT "odd?" -- why?\nFROM t'


def test_insert_or_ignore_and_replace() -> None:
    assert translate("INSERT OR IGNORE INTO users (user_id) VALUES (?)") == (
        "INSERT INTO users (user_id) VALUES (%s) ON CONFLICT DO NOTHING"
    )
    out = translate(
        "INSERT OR REPLACE INTO users (user_id, timezone) VALUES (?, ?) RETURNING user_id",
        table_info=_info,
    )
    assert out == (
        "INSERT INTO users (user_id, timezone) VALUES (%s, %s) ON CONFLICT (user_id) "
        'DO UPDATE SET "timezone" = EXCLUDED."timezone" RETURNING user_id'
    )


def test_by_name_from_a_registered_frame() -> None:
    out = translate(
        "INSERT OR IGNORE INTO users BY NAME SELECT * FROM incoming",
        registered={"incoming": ["timezone", "user_id"]},
        table_info=_info,
    )
    assert out == (
        'INSERT INTO users ("timezone", "user_id") SELECT "timezone"::character varying, '
        '"user_id"::bigint FROM incoming ON CONFLICT DO NOTHING'
    )
    with pytest.raises(StorageError, match="registered"):
        translate("INSERT INTO users BY NAME SELECT * FROM other", table_info=_info)


def test_functions_and_types() -> None:
    assert translate("SELECT CAST(x AS DOUBLE), y::DOUBLE PRECISION") == (
        "SELECT CAST(x AS DOUBLE PRECISION), y::DOUBLE PRECISION"
    )
    assert translate("WHERE list_contains(ids, ?) OR regexp_matches(CAST(t AS VARCHAR), ?)") == (
        "WHERE (%s = ANY(ids)) OR (CAST(t AS VARCHAR) ~ %s)"
    )
