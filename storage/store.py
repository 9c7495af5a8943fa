"""The embedded DuckDB store: clips, users, follows, blocks, the event log and API keys.

One process owns the file. Reads use per-call cursors (safe across threads); writes go through
one lock so an acknowledged write is committed before the caller returns. A short write (a row
a person is waiting for, such as a mood) goes before bulk writes waiting for that lock (event
batches, impression flushes): see :meth:`Store.short_write`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, cast, get_args

import duckdb
import polars as pl

from storage.errors import DuplicateEntityError, StorageError, UnknownEntityError
from storage.migrations import migrate

logger = logging.getLogger(__name__)

#: The event types, defined once: the API's request model, the importers and the serving state
#: read them from here.
EventType = Literal[
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
]
EVENT_TYPES: tuple[str, ...] = get_args(EventType)
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
    "city",
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


_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")


def sql_identifier(name: str) -> str:
    """``name`` when it is a plain SQL identifier (a table or column named by the code), else a
    :class:`StorageError`: composed SQL never carries anything but identifiers and constants;
    values are always bound parameters."""
    if not _IDENTIFIER.fullmatch(name):
        msg = f"not a plain SQL identifier: {name!r}"
        raise StorageError(msg)
    return name


class StoreBusyError(StorageError):
    """Reads were still open when the database file was to be swapped (retry later)."""


class _GatedCursor:
    """A DuckDB cursor that counts as an open read until closed (see :meth:`Store.rewrite_file`)."""

    def __init__(self, cur: duckdb.DuckDBPyConnection, release: Callable[[], None]) -> None:
        self._cur = cur
        self._release: Callable[[], None] | None = release

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._cur, name)
        if not callable(attr):
            return attr

        # The closure holds this wrapper, so a chained call (``store.cursor().execute(...)
        # .fetchall()``) keeps it, and the cursor it closes on deletion, alive to the end.
        def call(*args: Any, **kwargs: Any) -> Any:
            out = attr(*args, **kwargs)
            return self if out is self._cur else out

        return call

    def close(self) -> None:
        """Close the cursor and end the read."""
        try:
            self._cur.close()
        finally:
            release, self._release = self._release, None
            if release is not None:
                release()

    def __enter__(self) -> _GatedCursor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:  # a cursor dropped without close() must not hold the gate
        if self._release is not None:
            with suppress(Exception):
                self.close()


class _WriteLock:
    """The store's write lock: reentrant, one holder at a time, and a short write waiting for
    it goes before every bulk write waiting for it (it still waits for the write in progress).

    With a plain lock, whichever waiter the OS wakes first wins, so under a stream of event
    batches a one-row write a person is waiting for could queue behind several of them. Short
    writes are few (moods), so bulk writes are not starved.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._owner: int | None = None
        self._depth = 0
        self._short_waiting = 0
        self._bulk_waiting = 0

    def acquire(self, *, short: bool = False) -> None:
        """Take the lock (again, when this thread holds it)."""
        me = threading.get_ident()
        with self._cond:
            if self._owner == me:
                self._depth += 1
                return
            if short:
                self._short_waiting += 1
            else:
                self._bulk_waiting += 1
            try:
                while self._owner is not None or (not short and self._short_waiting):
                    self._cond.wait()
            finally:
                if short:
                    self._short_waiting -= 1
                else:
                    self._bulk_waiting -= 1
            self._owner = me
            self._depth = 1

    def waiting(self) -> tuple[int, int]:
        """``(short, bulk)``: how many writes of each kind wait for the lock now."""
        with self._cond:
            return self._short_waiting, self._bulk_waiting

    def release(self) -> None:
        """Give the lock back (once per :meth:`acquire`)."""
        with self._cond:
            if self._owner != threading.get_ident():
                msg = "write lock released by a thread that does not hold it"
                raise RuntimeError(msg)
            self._depth -= 1
            if self._depth == 0:
                self._owner = None
                self._cond.notify_all()

    def __enter__(self) -> _WriteLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


class Store:
    """The DuckDB file and the operations the engine needs on it.

    This is also the store's public API: :class:`~storage.postgres_store.PostgresStore`
    subclasses it and replaces the plumbing (``cursor``, ``write``, ``query``, ``scalar``,
    bulk inserts, vectors), so every caller typed against ``Store`` takes either. Open one
    with :func:`storage.factory.open_store`.

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

    #: The SQL dialect behind the store ("duckdb" or "postgres").
    dialect = "duckdb"

    def __init__(
        self, path: Path | str, *, read_only: bool = False, memory_limit: str | None = None
    ) -> None:
        self.path: Path | None = Path(path) if path != ":memory:" else None
        if self.path is not None and not read_only:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        config: dict[str, str | bool | int | float | list[str]] = (
            {"memory_limit": memory_limit} if memory_limit else {}
        )
        self._config = config
        # Open reads (cursors) and whether the file is being swapped (rewrite_file).
        self._gate = threading.Condition()
        self._readers = 0
        self._swapping = False
        if self.path is not None and not read_only:
            self._finish_interrupted_rewrite()
        try:
            self._con = duckdb.connect(str(path), read_only=read_only, config=config)
        except (duckdb.InvalidInputException, duckdb.ParserException) as exc:
            msg = f"invalid DuckDB memory limit {memory_limit!r} (use e.g. '3GB' or '25%'): {exc}"
            raise ValueError(msg) from exc
        self._write_lock = _WriteLock()
        self.read_only = read_only
        # Applied to every event batch before it is appended (the engine drops events of users
        # being erased here, whichever path or queue they come through).
        self.event_filter: Callable[[pl.DataFrame], pl.DataFrame] | None = None
        # What release_memory restores (as given: DuckDB's formatted value would round).
        self._memory_limit = memory_limit or str(
            self._con.execute("SELECT current_setting('memory_limit')").fetchall()[0][0]
        )
        if not read_only:
            migrate(self._con)

    # -- plumbing -------------------------------------------------------------------------------
    def cursor(self) -> duckdb.DuckDBPyConnection:
        """Return a new cursor on the shared database (one per thread or call); close it when
        done (an open cursor holds off :meth:`rewrite_file`)."""
        with self._gate:
            while self._swapping:
                self._gate.wait()
            self._readers += 1
            try:
                cur = self._con.cursor()
            except BaseException:
                self._readers -= 1
                raise
        return cast(duckdb.DuckDBPyConnection, _GatedCursor(cur, self._end_read))

    def _end_read(self) -> None:
        with self._gate:
            self._readers -= 1
            self._gate.notify_all()

    @contextmanager
    def write(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """Run writes in one transaction under the write lock; commit before returning."""
        with self._transaction(short=False) as cur:
            yield cur

    @contextmanager
    def short_write(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """Like :meth:`write` (one transaction, committed before returning, so as durable), for
        a row or two a person is waiting for (a mood): it takes the write lock before any bulk
        write waiting for it (an event batch, an impressions flush), so it waits at most for
        the write in progress. Keep it short: bulk writes queue behind it."""
        with self._transaction(short=True) as cur:
            yield cur

    @contextmanager
    def _transaction(self, *, short: bool) -> Iterator[duckdb.DuckDBPyConnection]:
        self._write_lock.acquire(short=short)
        try:
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
        finally:
            self._write_lock.release()

    def query(self, sql: str, params: list[Any] | None = None) -> pl.DataFrame:
        """Run a read query and return a polars frame."""
        cur = self.cursor()
        try:
            return pl.from_arrow(cur.sql(sql, params=params or None).to_arrow_table())  # type: ignore[return-value]
        finally:
            cur.close()

    def query_batches(
        self, sql: str, params: list[Any] | None = None, *, batch_rows: int = 1_000_000
    ) -> Iterator[pl.DataFrame]:
        """Run a read query and yield its rows as polars frames of up to ``batch_rows`` (a
        large scan without holding it whole)."""
        cur = self.cursor()
        try:
            reader = cur.sql(sql, params=params or None).to_arrow_reader(batch_rows)
            for batch in reader:
                yield cast(pl.DataFrame, pl.from_arrow(batch))
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

    # -- rewriting the file ---------------------------------------------------------------------
    @property
    def _rewrite_path(self) -> Path:
        assert self.path is not None
        return self.path.with_name(self.path.name + ".rewrite")

    @property
    def _pending_marker(self) -> Path:
        assert self.path is not None
        return self.path.with_name(self.path.name + ".rewrite-pending")

    @property
    def rewrite_pending(self) -> bool:
        """Whether an erasure is waiting for the file to be rewritten (see
        :meth:`rewrite_file`)."""
        return self.path is not None and self._pending_marker.exists()

    def _finish_interrupted_rewrite(self) -> None:
        """At open: drop a half-written copy, and rewrite the file now when an earlier rewrite
        could not finish (nothing else has the file open yet)."""
        for stale in (self._rewrite_path, Path(f"{self._rewrite_path}.wal")):
            stale.unlink(missing_ok=True)
        if self._pending_marker.exists() and self.path is not None and self.path.exists():
            try:
                con = duckdb.connect(str(self.path), config=self._config)
                try:
                    self._copy_to_new_file(con)
                finally:
                    con.close()
                self._swap_in_new_file()
            except (duckdb.Error, OSError):  # e.g. a full disk: open the file as it is
                logger.exception("pending rewrite of the database file failed; it stays pending")
                self._rewrite_path.unlink(missing_ok=True)
                return
            logger.info("database file rewritten at open (an earlier rewrite was pending)")

    def _copy_to_new_file(self, con: duckdb.DuckDBPyConnection) -> None:
        tmp = self._rewrite_path
        for stale in (tmp, Path(f"{tmp}.wal")):
            stale.unlink(missing_ok=True)
        name = str(con.execute("SELECT current_database()").fetchall()[0][0])
        quoted = str(tmp).replace("'", "''")
        con.execute(f"ATTACH '{quoted}' AS __rewrite")
        try:
            con.execute(f'COPY FROM DATABASE "{name.replace(chr(34), chr(34) * 2)}" TO __rewrite')
        finally:
            con.execute("DETACH __rewrite")

    def _swap_in_new_file(self) -> None:
        assert self.path is not None
        os.replace(self._rewrite_path, self.path)
        fd = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        self._pending_marker.unlink(missing_ok=True)

    def rewrite_file(self, *, wait_s: float = 10.0) -> float:
        """Rewrite the database file so that the bytes of deleted rows are gone; return seconds.

        DuckDB keeps deleted rows in their blocks (a row group is not rewritten for a few
        deletes, and the space a rewritten segment leaves in a shared block is not cleared), and
        neither ``CHECKPOINT`` nor ``VACUUM`` removes them: measured with DuckDB 2.0.1, a deleted
        user's strings were still in the file after ``FORCE CHECKPOINT``. The file is copied
        with ``COPY FROM DATABASE`` (schema, data, sequences, indexes; only live rows) into a
        new file that then replaces it.

        Writes wait on the write lock during the copy (reads go on against the old file); the
        swap itself waits up to ``wait_s`` for open reads to close, holding new reads back
        meanwhile, and takes milliseconds. If reads are still open then, the copy is dropped,
        a marker says a rewrite is pending (done at the next rewrite or when the store next
        opens) and :class:`StoreBusyError` is raised. Cost: one copy of the database.
        """
        if self.path is None or self.read_only:
            return 0.0
        t0 = time.perf_counter()
        with self._write_lock:
            self._pending_marker.touch()
            self._copy_to_new_file(self._con)
            with self._gate:
                self._swapping = True
                deadline = time.monotonic() + wait_s
                while self._readers > 0 and time.monotonic() < deadline:
                    self._gate.wait(max(0.0, deadline - time.monotonic()))
                busy = self._readers
            try:
                if busy:
                    self._rewrite_path.unlink(missing_ok=True)
                    msg = (
                        f"{busy} read(s) of the database were still open after {wait_s:.0f} s; "
                        "the file will be rewritten at the next erasure or when it next opens"
                    )
                    raise StoreBusyError(msg)
                self._con.close()
                try:
                    self._swap_in_new_file()
                finally:
                    self._con = duckdb.connect(str(self.path), config=self._config)
            finally:
                with self._gate:
                    self._swapping = False
                    self._gate.notify_all()
        seconds = time.perf_counter() - t0
        logger.info("database file rewritten ms=%.0f", seconds * 1000)
        return seconds

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
        table = sql_identifier(table)
        tail = ""
        if returning:
            cols = (sql_identifier(c.strip()) for c in returning.split(","))
            tail = " RETURNING " + ", ".join(cols)
        with self.write() as cur:
            cur.register("_incoming", df.to_arrow())
            try:
                return cur.execute(
                    f"{verb} INTO {table} BY NAME SELECT * FROM _incoming{tail}"  # noqa: S608
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
        if self.event_filter is not None:
            df = self.event_filter(df)
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

    def table_columns(self) -> list[tuple[str, str, str]]:
        """``(table, column, type)`` of every base table, in column order, types as DuckDB
        spells them (``BIGINT``, ``BIGINT[]``, ``VARCHAR``)."""
        df = self.query(
            "SELECT c.table_name, c.column_name, c.data_type FROM information_schema.columns c "
            "JOIN information_schema.tables t ON t.table_name = c.table_name "
            "AND t.table_schema = c.table_schema "
            "WHERE c.table_schema = 'main' AND t.table_type = 'BASE TABLE' "
            "ORDER BY c.table_name, c.ordinal_position"
        )
        return [(str(t), str(n), str(d)) for t, n, d in df.iter_rows()]

    def count(self, table: str) -> int:
        """Row count of a table (a plain identifier; anything else is a :class:`StorageError`)."""
        return int(self.scalar(f"SELECT count(*) FROM {sql_identifier(table)}"))  # noqa: S608

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
                f"SELECT count(*), min(len(vector)), max(len(vector)) FROM clip_vectors "  # noqa: S608
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
                f"SELECT item_id, vector FROM clip_vectors WHERE {where} ORDER BY item_id",  # noqa: S608
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

    def list_api_keys(self) -> list[dict[str, Any]]:
        """Every key as ``key_id, role, user_id, created_at, revoked``, oldest first (never its
        hash)."""
        return self.query(
            "SELECT key_id, role, user_id, created_at, revoked FROM api_keys "
            "ORDER BY created_at, key_id"
        ).to_dicts()

    def revoke_api_key(self, key_id: str) -> bool:
        """Revoke a key: ``True`` when this call revoked it, ``False`` when it was already
        revoked; :class:`UnknownEntityError` for an unknown id. Lookups refuse it from the
        commit on (a server must also drop its cached lookups)."""
        with self.write() as cur:
            row = cur.execute("SELECT revoked FROM api_keys WHERE key_id = ?", [key_id]).fetchone()
            if row is None:
                msg = f"unknown key {key_id!r}; 'steerfeed keys list' shows the keys"
                raise UnknownEntityError(msg)
            if row[0]:
                return False
            cur.execute("UPDATE api_keys SET revoked = TRUE WHERE key_id = ?", [key_id])
        return True

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
