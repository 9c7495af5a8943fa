"""The embedded DuckDB store: clips, users, follows, blocks, the event log and API keys.

One process owns the file. Reads use per-call cursors (safe across threads); writes go through
one lock so an acknowledged write is committed before the caller returns.
"""

from __future__ import annotations

import hashlib
import json
import logging
import secrets
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import polars as pl

from storage.errors import DuplicateEntityError, UnknownEntityError
from storage.migrations import migrate

logger = logging.getLogger(__name__)

EVENT_TYPES: tuple[str, ...] = (
    "impression",
    "view",
    "like",
    "comment",
    "remix",
    "share",
    "follow",
    "skip",
    "see_less",
    "report",
    "listen",
)
ROLES: tuple[str, ...] = ("service", "user", "analyst", "admin", "parent")

USER_COLUMNS = ("user_id", "age_band", "is_teen", "timezone", "settings", "created_at")
CLIP_COLUMNS = (
    "item_id",
    "author_id",
    "caption",
    "topics",
    "hashtags",
    "duration_s",
    "created_at",
    "safety_label",
    "maturity",
    "is_generated",
    "remix_of",
    "cameo_user_ids",
    "prior_views",
    "prior_likes",
    "provenance",
)
EVENT_COLUMNS = (
    "event_id",
    "user_id",
    "item_id",
    "target_user_id",
    "event_type",
    "ts",
    "received_at",
    "session_id",
    "request_id",
    "position",
    "pipeline",
    "source",
    "features",
    "propensity",
    "experiments",
    "watch_s",
    "watch_frac",
    "weight",
)


def hash_key(key: str) -> str:
    """Return the stored hash of an API key (SHA-256; keys are random, so no salt is needed)."""
    return hashlib.sha256(key.encode()).hexdigest()


def time_window(
    since: datetime | None, until: datetime | None, column: str = "ts"
) -> tuple[list[str], list[Any]]:
    """SQL conditions and parameters for ``since <= column < until`` (either end optional)."""
    where: list[str] = []
    params: list[Any] = []
    if since is not None:
        where.append(f"{column} >= ?")
        params.append(since)
    if until is not None:
        where.append(f"{column} < ?")
        params.append(until)
    return where, params


def utcnow() -> datetime:
    """Naive UTC now, the form every TIMESTAMP column holds."""
    return datetime.now(UTC).replace(tzinfo=None)


class Store:
    """The DuckDB file and the operations the engine needs on it.

    Parameters
    ----------
    path
        The database file; its folder is created. ``":memory:"`` gives a throwaway store.
    read_only
        Open without taking the write lock on the file (analysts, reports).
    memory_limit
        DuckDB's memory limit (``"3GB"``, ``"25%"``); DuckDB's own default is 80% of RAM,
        which at 20M events let its buffer pool take gigabytes the serving state needs.
        Queries that need more spill to a temp folder beside the file.
    """

    def __init__(
        self, path: Path | str, *, read_only: bool = False, memory_limit: str | None = None
    ) -> None:
        self.path = Path(path) if path != ":memory:" else None
        if self.path is not None and not read_only:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        config: dict[str, str | bool | int | float | list[str]] = (
            {"memory_limit": memory_limit} if memory_limit else {}
        )
        try:
            self._con = duckdb.connect(str(path), read_only=read_only, config=config)
        except (duckdb.InvalidInputException, duckdb.ParserException) as exc:
            msg = f"invalid DuckDB memory limit {memory_limit!r} (use e.g. '3GB' or '25%'): {exc}"
            raise ValueError(msg) from exc
        self._write_lock = threading.RLock()
        self.read_only = read_only
        # What release_memory restores (as given: DuckDB's formatted value would round).
        self._memory_limit = memory_limit or str(
            self._con.execute("SELECT current_setting('memory_limit')").fetchall()[0][0]
        )
        if not read_only:
            migrate(self._con)

    # -- plumbing -------------------------------------------------------------------------------
    def cursor(self) -> duckdb.DuckDBPyConnection:
        """Return a new cursor on the shared database (one per thread or call)."""
        return self._con.cursor()

    @contextmanager
    def write(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """Run writes in one transaction under the write lock; commit before returning."""
        with self._write_lock:
            cur = self._con.cursor()
            cur.execute("BEGIN TRANSACTION")
            try:
                yield cur
                cur.execute("COMMIT")
            except BaseException:
                cur.execute("ROLLBACK")
                raise
            finally:
                cur.close()

    def query(self, sql: str, params: list[Any] | None = None) -> pl.DataFrame:
        """Run a read query and return a polars frame."""
        cur = self.cursor()
        try:
            return pl.from_arrow(cur.sql(sql, params=params or None).to_arrow_table())  # type: ignore[return-value]
        finally:
            cur.close()

    def scalar(self, sql: str, params: list[Any] | None = None) -> Any:
        """Run a query returning one value."""
        cur = self.cursor()
        try:
            row = cur.execute(sql, params or []).fetchone()
            return row[0] if row else None
        finally:
            cur.close()

    def release_memory(self) -> None:
        """Drop DuckDB's cached table blocks (they stay on disk).

        Start-up and batch jobs scan the event log and the vectors; DuckDB then keeps their
        blocks cached up to its memory limit (1.8 GB at 20M events), which serving does not
        need. Lowering the limit for a moment makes it evict them; the limit is then restored.
        """
        with self._write_lock:
            limit = self._memory_limit
            try:
                self._con.execute("SET memory_limit = '16MB'")
            except duckdb.Error:  # more than that is pinned right now: evict what it could
                logger.debug("DuckDB kept more than 16MB pinned while releasing memory")
            finally:
                self._con.execute(f"SET memory_limit = '{limit}'")

    def checkpoint(self) -> None:
        """Fold the write-ahead log into the database file."""
        with self._write_lock:
            self._con.execute("CHECKPOINT")

    def close(self) -> None:
        """Close the database."""
        with self._write_lock:
            self._con.close()

    # -- bulk inserts ---------------------------------------------------------------------------
    def _insert_frame(
        self, table: str, df: pl.DataFrame, *, or_ignore: bool = False, replace: bool = False
    ) -> int:
        rows = self._insert_rows(table, df, or_ignore=or_ignore, replace=replace)
        return int(rows[0][0]) if rows else 0

    def _insert_rows(
        self,
        table: str,
        df: pl.DataFrame,
        *,
        or_ignore: bool = False,
        replace: bool = False,
        returning: str = "",
    ) -> list[Any]:
        """Insert a frame by column name in one committed statement; return its result rows
        (the count, or the ``returning`` column of each inserted row)."""
        if df.height == 0:
            return []
        verb = "INSERT OR IGNORE" if or_ignore else ("INSERT OR REPLACE" if replace else "INSERT")
        tail = f" RETURNING {returning}" if returning else ""
        with self.write() as cur:
            cur.register("_incoming", df.to_arrow())
            try:
                return cur.execute(
                    f"{verb} INTO {table} BY NAME SELECT * FROM _incoming{tail}"
                ).fetchall()
            except duckdb.ConstraintException as exc:
                msg = f"{table}: {exc}"
                raise DuplicateEntityError(msg) from exc
            finally:
                # after a failed statement the transaction is aborted and refuses even this;
                # the cursor is closed (and the view with it) once write() rolls back
                with suppress(duckdb.TransactionException):
                    cur.unregister("_incoming")

    def add_users(self, df: pl.DataFrame, *, replace: bool = False) -> int:
        """Insert users (columns from ``USER_COLUMNS``; only ``user_id`` is required)."""
        return self._insert_frame("users", df, replace=replace)

    def add_clips(self, df: pl.DataFrame, *, replace: bool = False) -> int:
        """Insert clips (``CLIP_COLUMNS``; ``item_id, author_id, caption`` required)."""
        return self._insert_frame("clips", df, replace=replace)

    def add_follows(self, df: pl.DataFrame) -> int:
        """Insert directed follows ``follower_id -> followee_id``; repeats are ignored."""
        return self._insert_frame("follows", df, or_ignore=True)

    def remove_follow(self, follower_id: int, followee_id: int) -> None:
        """Remove one follow edge."""
        with self.write() as cur:
            cur.execute(
                "DELETE FROM follows WHERE follower_id = ? AND followee_id = ?",
                [follower_id, followee_id],
            )

    def add_blocks(self, df: pl.DataFrame) -> int:
        """Insert blocks or mutes (``user_id, target_id, kind`` with kind ``block`` or ``mute``)."""
        return self._insert_frame("blocks", df, or_ignore=True)

    def append_events(self, df: pl.DataFrame) -> int:
        """Append events idempotently by ``(user_id, event_id)``; return how many were new.

        The insert is committed before this returns, so an acknowledgement sent after it is
        durable.
        """
        return len(self.append_new_events(df))

    def append_new_events(self, df: pl.DataFrame) -> list[tuple[int, str]]:
        """Append events idempotently; return the ``(user_id, event_id)`` keys that were new.

        An event id is unique per user (migration 9): a retry by the same sender is a repeat,
        another user's event with the same id is a different event. The primary key decides
        what is new, so no lookup of the existing ids precedes the insert. A batch without
        repeats is tried as a plain ``INSERT`` first: it is ~5x cheaper than
        ``INSERT OR IGNORE`` on a table of millions (2 vs 10 ms for 500 events at 2.5M), and a
        retry that repeats stored events makes it fail whole (rolled back), after which
        ``INSERT OR IGNORE ... RETURNING`` keeps the new ones. Committed before this returns.
        """
        if df.height == 0:
            return []
        # (a polars n_unique costs ms here: its thread pool)
        keys = list(zip(df["user_id"].to_list(), df["event_id"].to_list(), strict=True))
        if len(set(keys)) == len(keys):
            try:
                self._insert_rows("events", df)
                return keys
            except DuplicateEntityError:
                logger.debug("event batch repeats stored events; inserting the new ones only")
        rows = self._insert_rows("events", df, or_ignore=True, returning="user_id, event_id")
        return [(int(r[0]), str(r[1])) for r in rows]

    # -- lookups --------------------------------------------------------------------------------
    def user_exists(self, user_id: int) -> bool:
        """Whether the store holds this user."""
        return bool(self.scalar("SELECT count(*) FROM users WHERE user_id = ?", [user_id]))

    def get_user(self, user_id: int) -> dict[str, Any]:
        """Return one user as a dict, or raise :class:`UnknownEntityError`."""
        df = self.query("SELECT * FROM users WHERE user_id = ?", [user_id])
        if df.height == 0:
            msg = f"unknown user {user_id}"
            raise UnknownEntityError(msg)
        row = df.row(0, named=True)
        row["settings"] = json.loads(row["settings"] or "{}")
        return row

    def update_user_settings(self, user_id: int, settings: dict[str, Any]) -> None:
        """Replace a user's settings JSON."""
        self.get_user(user_id)
        with self.write() as cur:
            cur.execute(
                "UPDATE users SET settings = ? WHERE user_id = ?", [json.dumps(settings), user_id]
            )

    def clip_exists(self, item_id: int) -> bool:
        """Whether the store holds this clip."""
        return bool(self.scalar("SELECT count(*) FROM clips WHERE item_id = ?", [item_id]))

    def count(self, table: str) -> int:
        """Row count of a table."""
        return int(self.scalar(f"SELECT count(*) FROM {table}"))

    # -- vectors ------------------------------------------------------------------------------
    def put_vectors(self, space: str, item_ids: Any, matrix: Any) -> int:
        """Insert or replace the ``space`` vectors of clips."""
        return self._insert_frame(
            "clip_vectors", _vector_frame(item_ids, space, matrix), replace=True
        )

    def get_vectors(self, space: str, ids: Any = None) -> tuple[Any, Any] | None:
        """Vectors of a space as ``(item_ids, float32 matrix)`` sorted by id, or ``None`` when
        there are none; all of them, or those of ``ids`` that have one.

        Read in Arrow batches straight into one preallocated matrix: going through Python
        lists made 384 float objects per clip (~12 GB at a million clips) for a 1.5 GB matrix.
        """
        import numpy as np

        where = "space = $1"
        params: list[Any] = [space]
        if ids is not None:
            where += " AND item_id IN (SELECT unnest($2::BIGINT[]))"
            params.append(np.asarray(ids, dtype=np.int64).tolist())
        cur = self.cursor()
        try:
            n, lo, hi = cur.execute(
                f"SELECT count(*), min(len(vector)), max(len(vector)) FROM clip_vectors "
                f"WHERE {where}",
                params,
            ).fetchall()[0]
            if not n:
                return None
            if lo != hi:
                msg = f"vectors of space {space!r} differ in length ({lo} to {hi})"
                raise ValueError(msg)
            out_ids = np.empty(n, dtype=np.int64)
            mat = np.empty((n, int(hi)), dtype=np.float32)
            reader = cur.sql(
                f"SELECT item_id, vector FROM clip_vectors WHERE {where} ORDER BY item_id",
                params=params,
            ).to_arrow_reader(100_000)
            pos = 0
            for batch in reader:
                vec = batch.column(1)
                offsets = vec.offsets.to_numpy()
                flat = vec.values.to_numpy(zero_copy_only=False)[offsets[0] : offsets[-1]]
                k = batch.num_rows
                mat[pos : pos + k] = flat.reshape(k, int(hi))
                out_ids[pos : pos + k] = batch.column(0).to_numpy()
                pos += k
        finally:
            cur.close()
        return out_ids[:pos], mat[:pos]

    def vector_ids(self, space: str) -> Any:
        """Sorted ids of the catalogue's clips that have a ``space`` vector (int64 array)."""
        import numpy as np

        cur = self.cursor()
        try:
            table = cur.sql(
                "SELECT v.item_id FROM clip_vectors v SEMI JOIN clips c ON c.item_id = v.item_id "
                "WHERE v.space = $1 ORDER BY 1",
                params=[space],
            ).to_arrow_table()
        finally:
            cur.close()
        return np.asarray(table.column(0).to_numpy(), dtype=np.int64)

    # -- API keys -------------------------------------------------------------------------------
    def create_api_key(self, role: str, *, user_id: int | None = None) -> str:
        """Create a key; only its hash is stored. Returns the key (shown once)."""
        if role not in ROLES:
            msg = f"unknown role {role!r}; valid: {', '.join(ROLES)}"
            raise ValueError(msg)
        if role in ("user", "parent") and user_id is None:
            msg = f"a {role!r} key needs --user-id"
            raise ValueError(msg)
        key_id = secrets.token_hex(6)
        key = f"sf_{key_id}_{secrets.token_urlsafe(24)}"
        with self.write() as cur:
            cur.execute(
                "INSERT INTO api_keys (key_id, key_hash, role, user_id) VALUES (?, ?, ?, ?)",
                [key_id, hash_key(key), role, user_id],
            )
        return key

    def lookup_api_key(self, key: str) -> tuple[str, str, int | None] | None:
        """Return ``(key_id, role, user_id)`` for a valid, unrevoked key, else ``None``."""
        parts = key.split("_")
        if len(parts) < 3 or parts[0] != "sf":
            return None
        cur = self.cursor()
        try:
            row = cur.execute(
                "SELECT key_id, key_hash, role, user_id FROM api_keys "
                "WHERE key_id = ? AND NOT revoked",
                [parts[1]],
            ).fetchone()
        finally:
            cur.close()
        if row is None or not secrets.compare_digest(row[1], hash_key(key)):
            return None
        return str(row[0]), str(row[2]), (int(row[3]) if row[3] is not None else None)


def _vector_frame(item_ids: Any, space: str, matrix: Any) -> pl.DataFrame:
    import numpy as np

    mat = np.asarray(matrix, dtype=np.float32)
    return pl.DataFrame(
        {
            "item_id": np.asarray(item_ids, dtype=np.int64),
            "space": [space] * len(mat),
            "vector": pl.Series(mat).cast(pl.List(pl.Float32)),
        }
    )
