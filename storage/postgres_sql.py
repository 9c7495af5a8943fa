"""The small, explicit translation of the store's DuckDB SQL to PostgreSQL.

Callers write DuckDB SQL with ``?`` placeholders (``store.query``, ``store.write()``). On
PostgreSQL each statement goes through :func:`translate`, which rewrites exactly these, outside
string literals, quoted identifiers and comments:

1. ``?`` -> ``%s`` (psycopg's placeholder) and ``$n`` -> ``%(pn)s`` (bound from the
   parameter list by :func:`bind_params`); every ``%`` (literals included) -> ``%%``.
2. ``INSERT OR IGNORE INTO t ...`` -> ``INSERT INTO t ... ON CONFLICT DO NOTHING``.
3. ``INSERT OR REPLACE INTO t (cols) ...`` -> ``INSERT INTO t (cols) ... ON CONFLICT (<t's
   primary key>) DO UPDATE SET c = EXCLUDED.c`` for the inserted columns outside the key.
4. ``INSERT INTO t BY NAME SELECT * FROM f`` where ``f`` is a frame registered on the cursor
   -> ``INSERT INTO t (<f's columns>) SELECT <each cast to t's column type> FROM f``.
5. The type name ``DOUBLE`` (in casts) -> ``DOUBLE PRECISION``; ``len(list)`` ->
   ``cardinality(list)``.
6. ``list_contains(a, b)`` -> ``(b = ANY(a))`` and the two-argument
   ``regexp_matches(s, p)`` -> ``(s ~ p)`` (arguments without commas, at most one level of
   parentheses).

The ``ON CONFLICT`` clause goes before a ``RETURNING``. Nothing else is translated: DuckDB-only
constructs (``SEMI JOIN``, ``GROUP BY ALL``, ``.sql()`` relations, list literals ``[...]``,
``strftime``, ``date_diff``) fail on PostgreSQL with its own error; a caller that needs them
is written in SQL both dialects accept (``EXISTS``, explicit ``GROUP BY`` columns,
``extract(epoch FROM ...)``, ``array_agg``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from storage.errors import StorageError

# Strings, quoted identifiers and comments: masked before rewriting, restored after.
_OPAQUE = re.compile(r"'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"|--[^\n]*|/\*.*?\*/", re.DOTALL)
_MASK = re.compile(r"\x00(\d+)\x00")
_INSERT_OR = re.compile(r"\bINSERT\s+OR\s+(IGNORE|REPLACE)\s+INTO\b", re.IGNORECASE)
_INTO_TABLE = re.compile(r"\bINTO\s+([A-Za-z_][A-Za-z0-9_]*)\s*(\(([^()]*)\))?", re.IGNORECASE)
_BY_NAME = re.compile(
    r"\bINTO\s+([A-Za-z_][A-Za-z0-9_]*)\s+BY\s+NAME\s+SELECT\s+\*\s+FROM\s+"
    r"([A-Za-z_][A-Za-z0-9_]*)",
    re.IGNORECASE,
)
_DOLLAR = re.compile(r"\$(\d+)\b")
_LEN = re.compile(r"\blen\(", re.IGNORECASE)
_RETURNING = re.compile(r"\bRETURNING\b", re.IGNORECASE)
_DOUBLE = re.compile(r"\bDOUBLE\b(?!\s+PRECISION)", re.IGNORECASE)
# A function argument: no commas, at most one level of parentheses (``CAST(c AS VARCHAR)``).
_ARG = r"((?:[^(),]|\([^()]*\))+?)"
_LIST_CONTAINS = re.compile(rf"\blist_contains\(\s*{_ARG}\s*,\s*{_ARG}\s*\)", re.IGNORECASE)
_REGEXP_MATCHES = re.compile(rf"\bregexp_matches\(\s*{_ARG}\s*,\s*{_ARG}\s*\)", re.IGNORECASE)


@dataclass(frozen=True)
class TableInfo:
    """What the translation needs to know of a table: its columns (name -> PostgreSQL type)
    and its primary key."""

    columns: dict[str, str]
    primary_key: tuple[str, ...]


def translate(
    sql: str,
    *,
    registered: Mapping[str, Sequence[str]] | None = None,
    table_info: Callable[[str], TableInfo] | None = None,
) -> str:
    """Rewrite one DuckDB statement for PostgreSQL (the rules in the module docstring).

    ``registered`` maps the frames registered on the cursor to their columns;
    ``table_info`` describes a target table (needed for rules 3 and 4).
    """
    sql = sql.replace("%", "%%")
    masked: list[str] = []

    def _mask(m: re.Match[str]) -> str:
        masked.append(m.group(0))
        return f"\x00{len(masked) - 1}\x00"

    code = _OPAQUE.sub(_mask, sql)
    code = code.replace("?", "%s")
    code = _DOLLAR.sub(r"%(p\1)s", code)
    code = _DOUBLE.sub("DOUBLE PRECISION", code)
    code = _LEN.sub("cardinality(", code)
    code = _LIST_CONTAINS.sub(r"(\2 = ANY(\1))", code)
    code = _REGEXP_MATCHES.sub(r"(\1 ~ \2)", code)
    conflict = ""
    m = _INSERT_OR.search(code)
    mode = m.group(1).upper() if m else ""
    if m:
        code = code[: m.start()] + "INSERT INTO" + code[m.end() :]
    inserted: list[str] | None = None
    by_name = _BY_NAME.search(code)
    if by_name:
        table, frame = by_name.group(1), by_name.group(2)
        cols = (registered or {}).get(frame)
        if cols is None:
            msg = f"INSERT ... BY NAME needs a frame registered on the cursor; {frame!r} is not"
            raise StorageError(msg)
        if table_info is None:
            msg = "INSERT ... BY NAME needs the target table's columns"
            raise StorageError(msg)
        types = table_info(table).columns
        unknown = [c for c in cols if c not in types]
        if unknown:
            msg = f"{table}: no column(s) {', '.join(unknown)}"
            raise StorageError(msg)
        inserted = list(cols)
        col_list = ", ".join(f'"{c}"' for c in cols)
        select = ", ".join(f'"{c}"::{types[c]}' for c in cols)
        # identifiers from the catalogue and the registered frame, never values
        by_cols = f"INTO {table} ({col_list}) SELECT {select} FROM {frame}"  # noqa: S608
        code = code[: by_name.start()] + by_cols + code[by_name.end() :]
    if mode == "IGNORE":
        conflict = " ON CONFLICT DO NOTHING"
    elif mode == "REPLACE":
        into = _INTO_TABLE.search(code)
        if into is None or table_info is None:
            msg = "INSERT OR REPLACE needs a target table"
            raise StorageError(msg)
        table = into.group(1)
        if inserted is None:
            if into.group(3) is None:
                msg = f"INSERT OR REPLACE INTO {table} needs a column list on PostgreSQL"
                raise StorageError(msg)
            inserted = [c.strip().strip('"') for c in into.group(3).split(",")]
        key = table_info(table).primary_key
        if not key:
            msg = f"INSERT OR REPLACE INTO {table}: the table has no primary key"
            raise StorageError(msg)
        updates = [c for c in inserted if c not in key]
        if updates:
            sets = ", ".join(f'"{c}" = EXCLUDED."{c}"' for c in updates)
            conflict = f" ON CONFLICT ({', '.join(key)}) DO UPDATE SET {sets}"
        else:
            conflict = f" ON CONFLICT ({', '.join(key)}) DO NOTHING"
    if conflict:
        code = code.rstrip().rstrip(";")
        ret = _RETURNING.search(code)
        code = (
            code[: ret.start()] + conflict.lstrip() + " " + code[ret.start() :]
            if ret
            else code + conflict
        )
    return _MASK.sub(lambda mm: masked[int(mm.group(1))], code)


_NAMED = re.compile(r"%\(p(\d+)\)s")


def bind_params(pg_sql: str, params: Sequence[Any] | None) -> Sequence[Any] | dict[str, Any]:
    """The parameters for a translated statement: a dict when it used ``$n`` placeholders."""
    values = list(params or [])
    if _NAMED.search(pg_sql) is None:
        return values
    return {f"p{i + 1}": v for i, v in enumerate(values)}
