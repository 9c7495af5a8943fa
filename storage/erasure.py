"""Erase one user from the DuckDB store, generically.

The tables are not listed here: every base table is inspected through
``information_schema.columns`` and a column names a user when its name is user-like
(:func:`is_user_column`: ``user_id``, ``follower_id``, ``followee_id``, ``target_id``,
``parent_id``, ``child_id``, ``teen_id``, ``author_id``, anything ending in ``_user_id``, and
integer lists such as ``cameo_user_ids``). So tables added by later migrations are covered
without changes here.

Rows that name the user are deleted; clips the user authored or appears in (a cameo), and
clips remixing those (a remix's prompt quotes the original's caption), are deleted with every
row that points at them (``item_id``/``clip_id`` columns, e.g. their vectors). The audit log is
the one exception: it is a legal record, so its rows stay and the user's id in them is
replaced by :func:`pseudonym`, a keyed hash whose secret is not in the store.

Deleting rows does not remove their bytes from the DuckDB file; :func:`pipelines.erasure.erase_user`
ends with :meth:`storage.store.Store.rewrite_file` for that.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
from dataclasses import dataclass, field

from storage.store import Store

logger = logging.getLogger(__name__)

_USER_NAMES = frozenset(
    {
        "user_id",
        "follower_id",
        "followee_id",
        "target_id",
        "parent_id",
        "child_id",
        "teen_id",
        "author_id",
        "owner_id",
        "creator_id",
        "requester_id",
        "requested_by",
        "viewer_id",
        "subject_id",
        "member_id",
        "friend_id",
        "updated_by",
    }
)
# Columns that record who last touched someone else's row: set to NULL, the row stays.
_REFERENCE_ONLY = frozenset({"updated_by"})
_USER_PATTERN = re.compile(r"^(.+_)?user(_id|_ids|id|ids)$")
_ITEM_NAMES = frozenset({"item_id", "clip_id"})
_INT_TYPES = ("BIGINT", "INTEGER", "HUGEINT", "UBIGINT", "UINTEGER", "SMALLINT")
AUDIT_TABLE = "audit_log"


# Clips derived from another clip: deleted with it.
_DERIVED_FROM = "remix_of"


def pseudonym(user_id: int, key: bytes) -> str:
    """The stable stand-in for an erased user in the audit log: HMAC-SHA256 of the id under
    ``key`` (see :meth:`storage.settings.StorageSettings.resolved_pseudonym_key`), 96 bits.

    Without the key, trying every id does not find the user (an unkeyed hash of an id is
    reversed by enumeration in under a second); with it, the same user always maps to the same
    pseudonym, so audit entries about one erased person stay linked.
    """
    mac = hmac.new(key, f"steerfeed-user:{user_id}".encode(), hashlib.sha256).hexdigest()
    return "erased:" + mac[:24]


def is_user_column(name: str) -> bool:
    """Whether a column name says it holds user ids."""
    n = name.lower()
    return n in _USER_NAMES or bool(_USER_PATTERN.match(n))


@dataclass(frozen=True)
class Column:
    """One column of a base table."""

    table: str
    name: str
    data_type: str

    @property
    def is_int(self) -> bool:
        """A scalar integer column."""
        return self.data_type.upper() in _INT_TYPES

    @property
    def is_int_list(self) -> bool:
        """A list of integers (``BIGINT[]``)."""
        t = self.data_type.upper()
        return t.endswith("[]") and t[:-2] in _INT_TYPES

    @property
    def is_text(self) -> bool:
        """A text column."""
        return self.data_type.upper() == "VARCHAR"


def columns(store: Store) -> list[Column]:
    """Every column of every base table in the main schema."""
    return [Column(t, n, d) for t, n, d in store.table_columns()]


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _match(c: Column) -> str:
    return f"list_contains({_q(c.name)}, ?)" if c.is_int_list else f"{_q(c.name)} = ?"


@dataclass
class StoreErasure:
    """What was removed from the store."""

    user_id: int
    deleted_rows: dict[str, int] = field(default_factory=dict)
    deleted_item_ids: list[int] = field(default_factory=list)
    audit_rows_scrubbed: int = 0


def erase_user_rows(store: Store, user_id: int, *, key: bytes) -> StoreErasure:
    """Delete every row that names ``user_id`` (and the clips it authored or appears in, and
    their remixes) in one transaction; return the counts per table. ``key`` makes the audit
    log's pseudonym."""
    cols = columns(store)
    ucols = [c for c in cols if is_user_column(c.name) and (c.is_int or c.is_int_list)]
    out = StoreErasure(user_id)
    with store.write() as cur:
        items: set[int] = set()
        for c in ucols:
            if c.table == "clips":
                rows = cur.execute(
                    f"SELECT item_id FROM clips WHERE {_match(c)}",  # noqa: S608
                    [user_id],
                ).fetchall()
                items.update(int(r[0]) for r in rows)
        if items and any(c.table == "clips" and c.name == _DERIVED_FROM for c in cols):
            frontier = set(items)
            while frontier:  # remixes of remixes, to the end of the chain
                rows = cur.execute(
                    f"SELECT item_id FROM clips WHERE {_DERIVED_FROM} IN "  # noqa: S608
                    "(SELECT unnest(?::BIGINT[]))",
                    [sorted(frontier)],
                ).fetchall()
                frontier = {int(r[0]) for r in rows} - items
                items |= frontier
        out.deleted_item_ids = sorted(items)
        by_table: dict[str, list[Column]] = {}
        for c in ucols:
            if c.name.lower() in _REFERENCE_ONLY and c.is_int and c.table != AUDIT_TABLE:
                cur.execute(
                    f"UPDATE {_q(c.table)} SET {_q(c.name)} = NULL WHERE {_q(c.name)} = ?",  # noqa: S608
                    [user_id],
                )
            elif c.table != AUDIT_TABLE:
                by_table.setdefault(c.table, []).append(c)
        for table, tcols in sorted(by_table.items()):
            where = " OR ".join(_match(c) for c in tcols)
            n = cur.execute(
                f"DELETE FROM {_q(table)} WHERE {where}",  # noqa: S608
                [user_id] * len(tcols),
            ).fetchall()
            out.deleted_rows[table] = out.deleted_rows.get(table, 0) + int(n[0][0] if n else 0)
        if items:
            for c in cols:
                if c.name.lower() in _ITEM_NAMES and c.is_int and c.table != AUDIT_TABLE:
                    n = cur.execute(
                        f"DELETE FROM {_q(c.table)} WHERE {_q(c.name)} "  # noqa: S608
                        "IN (SELECT unnest(?::BIGINT[]))",
                        [sorted(items)],
                    ).fetchall()
                    k = int(n[0][0] if n else 0)
                    out.deleted_rows[c.table] = out.deleted_rows.get(c.table, 0) + k
        out.audit_rows_scrubbed = _scrub_audit(cur, cols, user_id, pseudonym(user_id, key))
    logger.info(
        "erased user from store: %d rows in %d tables, %d clips, %d audit rows scrubbed",
        sum(out.deleted_rows.values()),
        sum(1 for v in out.deleted_rows.values() if v),
        len(out.deleted_item_ids),
        out.audit_rows_scrubbed,
    )
    return out


def _scrub_audit(cur: object, cols: list[Column], user_id: int, alias: str) -> int:
    acols = [c for c in cols if c.table == AUDIT_TABLE]
    if not acols:
        return 0
    pattern = f"(^|[^0-9]){user_id}([^0-9]|$)"
    n = 0
    for c in acols:
        if c.is_int and is_user_column(c.name):
            r = cur.execute(  # type: ignore[attr-defined]
                f"UPDATE {AUDIT_TABLE} SET {_q(c.name)} = NULL WHERE {_q(c.name)} = ?",  # noqa: S608
                [user_id],
            ).fetchall()
            n += int(r[0][0] if r else 0)
        elif c.is_text:
            r = cur.execute(  # type: ignore[attr-defined]
                f"UPDATE {AUDIT_TABLE} SET {_q(c.name)} = regexp_replace({_q(c.name)}, ?, "  # noqa: S608
                f"'\\1{alias}\\2', 'g') WHERE regexp_matches({_q(c.name)}, ?)",
                [pattern, pattern],
            ).fetchall()
            n += int(r[0][0] if r else 0)
    return n


def find_mentions(store: Store, user_id: int) -> dict[str, int]:
    """Search every column of every table for ``user_id``: integers equal to it, integer lists
    holding it, text holding it as a whole number. Returns ``"table.column" -> rows``.

    Integer columns that hold other entities (``item_id``, ``clip_id``...) are searched too, so
    pick an id no other entity uses when checking an erasure.
    """
    found: dict[str, int] = {}
    pattern = f"(^|[^0-9]){user_id}([^0-9]|$)"
    for c in columns(store):
        params: list[object]
        if c.is_int:
            sql, params = f"{_q(c.name)} = ?", [user_id]
        elif c.is_int_list:
            sql, params = f"list_contains({_q(c.name)}, ?)", [user_id]
        else:
            sql, params = f"regexp_matches(CAST({_q(c.name)} AS VARCHAR), ?)", [pattern]
        n = int(store.scalar(f"SELECT count(*) FROM {_q(c.table)} WHERE {sql}", params) or 0)  # noqa: S608
        if n:
            found[f"{c.table}.{c.name}"] = n
    return found
